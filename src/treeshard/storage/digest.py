"""The digest record (``treeshard.sha256``) read and parsed, once for every reader.

The chunk reader checks every read against it, the verifier checks the
whole store against it, and the remote sources take object sizes (and the
cache its content digest) from it. Computing and sealing a record at save
time is :mod:`treeshard.integrity`'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError
from ..spec import DIGEST_KEY, MAX_DIGEST_BYTES, canonical_json, loads_json

DIGEST_FORMAT = 1
SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class DigestRecord:
    """A parsed ``treeshard.sha256``: the bytes as stored and what they say."""

    raw: bytes
    digest: str
    config: str | None
    files: dict[str, tuple[int, str]]
    arrays: dict[str, dict[str, Any]]


def _fail(message: str) -> IntegrityError:
    return IntegrityError(f"{DIGEST_KEY}: {message}")


def _hex(where: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= SHA256_HEX:
        raise _fail(f"{where}: not a sha256 hex digest")
    return value


def _size(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _fail(f"{where}: not a size")
    return value


def parse_digest(raw: bytes) -> DigestRecord:
    """Check the structure of the bytes of a digest record and that it matches its own ``digest``."""
    try:
        record = loads_json(raw)
    except ValueError as exc:
        raise _fail(f"not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("treeshard_digest") != DIGEST_FORMAT or record.get("algorithm") != "sha256":
        raise _fail(f"not a format-{DIGEST_FORMAT} sha256 digest record")
    files_raw = record.get("files")
    arrays_raw = record.get("arrays")
    if not isinstance(files_raw, dict) or not isinstance(arrays_raw, dict):
        raise _fail("'files' and 'arrays' must be objects")
    files = {}
    for key, entry in files_raw.items():
        if not isinstance(entry, dict):
            raise _fail(f"files.{key}: not an object")
        files[key] = (_size(f"files.{key}.size", entry.get("size")), _hex(f"files.{key}.sha256", entry.get("sha256")))
    for name, entry in arrays_raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("chunks"), dict):
            raise _fail(f"arrays.{name}: not an object with 'chunks'")
    config = record.get("config")
    digest = _hex("digest", record.get("digest"))
    if not _seals(raw, record, digest):
        raise _fail("the record does not match its own 'digest' (the record itself was edited)")
    return DigestRecord(raw, digest, None if config is None else _hex("config", config), files, arrays_raw)


def _seals(raw: bytes, record: dict[str, Any], digest: str) -> bool:
    """Whether ``digest`` is the sha256 of the record without it, as canonical JSON.

    A saved record is canonical JSON: without its ``"digest"`` member, its own text is what was
    hashed, and is hashed as it is (a large model's record is hundreds of KB: encoding it again
    took most of an open). That text cannot still hold the digest (no text hashes to a digest it
    contains), so the member removed is the record's own. Any other text is encoded again.
    """
    member = b',"digest":"' + digest.encode() + b'"'
    if raw.count(member) == 1 and hashlib.sha256(raw.replace(member, b"", 1)).hexdigest() == digest:
        return True
    body = {k: v for k, v in record.items() if k != "digest"}
    return hashlib.sha256(canonical_json(body)).hexdigest() == digest


def read_digest_bytes(source: Any) -> bytes | None:
    """The bytes of the store's digest record (size-limited); None if it has none."""
    size = source.size(DIGEST_KEY)
    if size is None:
        return None
    if size > MAX_DIGEST_BYTES:
        raise IntegrityError(f"{DIGEST_KEY}: {size} bytes exceeds the {MAX_DIGEST_BYTES}-byte limit")
    raw = source.get(DIGEST_KEY)
    if raw is None:
        raise IntegrityError(f"{DIGEST_KEY}: disappeared while being read")
    return raw


def stored_digest(source: Any) -> DigestRecord | None:
    """The store's parsed digest record (None if it has none), parsed once per open source:
    a source that parsed it already (a remote one takes sizes from it) hands it over."""
    parsed = getattr(source, "parsed_digest", None)
    if parsed is not None:
        return parsed()
    raw = read_digest_bytes(source)
    return None if raw is None else parse_digest(raw)
