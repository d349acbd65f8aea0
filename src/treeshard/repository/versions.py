"""A version of a repository: its manifest, and the byte source that serves it as a store.

A version is stored as one JSON **manifest** (``versions/NNNNNNNNNN.json``),
written once and never changed, that lists the files of a normal treeshard
store. Small files (the root ``zarr.json``, ``treeshard.sha256``,
``treeshard.sig``, each array's ``zarr.json``) are held inline; a shard file
is the list of its inner chunks followed by its index (inline). Each chunk is
named by its sha256 and lives at an offset of a **pack**, ``objects/XX/SHA256``
(the chunks a save added, concatenated, named by the sha256 of the pack): a
later version that has the same chunk refers to the same place, and a read of
neighbouring chunks of one pack is one ranged request, as in a plain store. :class:`VersionSource` serves those files, byte for byte
the store ``treeshard.save`` would have written, to the ordinary reader,
which checks each chunk against the version's digest record as usual.

This module imports neither zarr nor sklearn: the :class:`~treeshard.Predictor`
reads a version through it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatError, IntegrityError, RefNotFoundError, UnsupportedFormatVersionError
from ..record import check_json_depth
from ..spec import DIGEST_KEY, MAX_CONFIG_BYTES, SIGNATURE_KEY, loads_json

MANIFEST_FORMAT = 1
#: The repository's marker (and its alias policies): a location without it is not a repository.
MARKER_KEY = "treeshard.repository.json"
#: The highest version number (ten digits in a manifest's key, ``v9999999999``).
MAX_VERSION = 10**10 - 1
#: Bytes of a manifest a reader accepts (the root metadata inline, base64, plus the chunk lists).
MAX_MANIFEST_BYTES = 2 * MAX_CONFIG_BYTES
#: Whole files up to this size are kept inline in the manifest; larger ones become objects.
INLINE_BYTES = 256 * 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*\Z")


def version_key(number: int) -> str:
    return f"versions/{number:010d}.json"


def object_key(sha256: str) -> str:
    return f"objects/{sha256[:2]}/{sha256}"


def version_id(number: int) -> str:
    return f"v{number}"


@dataclass
class FileEntry:
    """One file of the version's store: inline bytes, or chunk parts followed by an inline tail.

    A part is ``(chunk sha256, size, pack sha256, offset in the pack)``."""

    size: int
    data: bytes | None = None
    parts: list[tuple[str, int, str, int]] = field(default_factory=list)
    tail: bytes = b""
    _offsets: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        offset, self._offsets = 0, []
        for part in self.parts:
            self._offsets.append(offset)
            offset += part[1]


@dataclass
class Manifest:
    """A parsed, checked version manifest (``document`` keeps everything but the files)."""

    number: int
    document: dict[str, Any]
    files: dict[str, FileEntry]

    @property
    def objects(self) -> set[str]:
        """The packs the version uses."""
        return {part[2] for entry in self.files.values() for part in entry.parts}

    @property
    def chunks(self) -> dict[str, tuple[int, str, int]]:
        """``{chunk sha256: (size, pack, offset)}``: where each of its chunks is stored."""
        return {part[0]: part[1:] for entry in self.files.values() for part in entry.parts}


def split_files(files: dict[str, bytes | list[bytes]]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(manifest "files" object with parts ``[sha256, size]``, {sha256: chunk bytes})`` for the
    files of an encoded store (:func:`place_chunks` then says where each chunk is).

    A shard (a list of parts: its inner chunks, then the index and the index's
    crc32c, as :func:`treeshard.writer._assemble` lays it out) keeps its chunks as
    objects and its index inline; a whole file is inline unless it is large.
    """
    import hashlib

    entries: dict[str, Any] = {}
    objects: dict[str, bytes] = {}

    def as_object(data: bytes) -> list[Any]:
        sha = hashlib.sha256(data).hexdigest()
        objects[sha] = data
        return [sha, len(data)]

    for key, value in files.items():
        if isinstance(value, bytes):
            if len(value) <= INLINE_BYTES or key in (DIGEST_KEY, SIGNATURE_KEY, "zarr.json"):
                entries[key] = {"size": len(value), "data": _b64(value)}
            else:
                entries[key] = {"size": len(value), "parts": [as_object(value)], "tail": ""}
            continue
        chunks, tail = value[:-2], b"".join(value[-2:])
        entries[key] = {
            "size": sum(map(len, value)),
            "parts": [as_object(bytes(chunk)) for chunk in chunks],
            "tail": _b64(tail),
        }
    return entries, objects


def place_chunks(entries: dict[str, Any], chunks: dict[str, bytes], known: dict[str, tuple[int, str, int]]) -> tuple[bytes, str]:
    """Give every part of ``entries`` its pack and offset: a chunk in ``known`` (``{sha: (size,
    pack, offset)}``, from earlier versions) stays where it is; the others are concatenated into
    a new pack. Returns ``(pack bytes, pack sha256)`` (empty bytes if every chunk is known)."""
    import hashlib

    new: dict[str, int] = {}
    pieces: list[bytes] = []
    offset = 0
    for entry in entries.values():
        for part in entry.get("parts", []):
            sha = part[0]
            if sha in known or sha in new:
                continue
            new[sha] = offset
            pieces.append(chunks[sha])
            offset += len(chunks[sha])
    pack = b"".join(pieces)
    pack_sha = hashlib.sha256(pack).hexdigest()
    for entry in entries.values():
        for part in entry.get("parts", []):
            sha = part[0]
            part[2:] = [pack_sha, new[sha]] if sha in new else [known[sha][1], known[sha][2]]
    return pack, pack_sha


def number_packs(entries: dict[str, Any]) -> list[str]:
    """Replace each part's pack by its number in the returned list (the manifest's ``packs``)."""
    packs = sorted({part[2] for entry in entries.values() for part in entry.get("parts", [])})
    numbers = {pack: i for i, pack in enumerate(packs)}
    for entry in entries.values():
        for part in entry.get("parts", []):
            part[2] = numbers[part[2]]
    return packs


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_manifest(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def parse_manifest(raw: bytes, number: int, where: str) -> Manifest:
    """Check a manifest's structure (it is read from storage: untrusted) and decode its files."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise FormatError(f"{where}: {len(raw):,} bytes exceeds the {MAX_MANIFEST_BYTES:,}-byte limit")
    try:
        document = loads_json(raw)
    except ValueError as exc:
        raise FormatError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("treeshard_version") != MANIFEST_FORMAT:
        check_newer(document, "treeshard_version", MANIFEST_FORMAT, where)
        raise FormatError(f"{where}: not a format-{MANIFEST_FORMAT} version manifest")
    if document.get("version") != number:
        raise FormatError(f"{where}: names version {str(document.get('version'))[:20]}, expected {number}")
    files_raw = document.pop("files", None)
    if not isinstance(files_raw, dict) or "zarr.json" not in files_raw:
        raise FormatError(f"{where}: 'files' must be an object holding the store's zarr.json")
    packs = document.pop("packs", None)
    if not isinstance(packs, list) or not all(isinstance(pack, str) and _SHA256_RE.match(pack) for pack in packs):
        raise FormatError(f"{where}: 'packs' must be a list of sha256 digests")
    check_json_depth(document, where, error=FormatError)  # the rest (metadata...); the files are checked field by field
    files = {}
    for key, entry in files_raw.items():
        files[key] = _parse_entry(key, entry, where, packs)
    return Manifest(number, document, files)


def _parse_entry(key: Any, entry: Any, where: str, packs: list[str]) -> FileEntry:
    at = f"{where}: files.{str(key)[:200]}"
    if not isinstance(key, str) or not _KEY_RE.match(key) or ".." in key.split("/"):
        raise FormatError(f"{at}: not a store key")
    if not isinstance(entry, dict) or not _is_size(entry.get("size")):
        raise FormatError(f"{at}: needs a 'size'")
    try:
        if "data" in entry:
            data = base64.b64decode(entry["data"], validate=True)
            if len(data) != entry["size"]:
                raise FormatError(f"{at}: {len(data)} bytes inline, size says {entry['size']}")
            return FileEntry(size=entry["size"], data=data)
        parts, tail = entry.get("parts"), base64.b64decode(entry.get("tail", ""), validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"{at}: bad base64 ({exc})") from None
    if not isinstance(parts, list):
        raise FormatError(f"{at}: needs 'data' or 'parts'")
    checked = []
    for part in parts:
        if not (
            isinstance(part, list)
            and len(part) == 4
            and isinstance(part[0], str)
            and _SHA256_RE.match(part[0])
            and _is_size(part[1])
            and _is_size(part[2])
            and part[2] < len(packs)
            and _is_size(part[3])
        ):
            raise FormatError(f"{at}: a part is not [chunk sha256, size, pack number, offset]")
        checked.append((part[0], part[1], packs[part[2]], part[3]))
    if sum(part[1] for part in checked) + len(tail) != entry["size"]:
        raise FormatError(f"{at}: parts and tail do not add up to its size")
    return FileEntry(size=entry["size"], parts=checked, tail=tail)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def check_newer(document: Any, field: str, supported: int, where: str) -> None:
    """:class:`~treeshard.errors.UnsupportedFormatVersionError` if ``document`` declares a newer format."""
    declared = document.get(field) if isinstance(document, dict) else None
    if isinstance(declared, int) and not isinstance(declared, bool) and declared > supported:
        raise UnsupportedFormatVersionError(
            f"{where}: format {declared} was written by a newer treeshard (this one reads format {supported}): upgrade treeshard"
        )


def not_a_repository(location: str) -> str:
    return f"{location}: not a treeshard repository (no {MARKER_KEY}; a repository is created by its first save): check the path"


def not_found(backend: Any, what: str) -> str:
    """The message for a reference that names nothing: ``what``, or that there is no repository
    at all (a mistyped path; checked only on this error path, so a load costs no extra read)."""
    return f"{backend.location}: {what}" if backend.exists(MARKER_KEY) else not_a_repository(backend.location)


def read_manifest(backend: Any, number: int) -> Manifest:
    raw = backend.read(version_key(number))
    if raw is None:
        raise RefNotFoundError(not_found(backend, f"no version {version_id(number)}"))
    return parse_manifest(raw, number, f"{backend.location}/{version_key(number)}")


# --------------------------------------------------------------------------- serving a version as a store
class VersionSource:
    """The byte source (``get``, ``size``, ``get_range``, ``get_suffix``) of one version, for
    :class:`treeshard._fastread.FastReader`: inline files cost no request, a chunk one object read."""

    def __init__(self, backend: Any, manifest: Manifest, *, required_signer: bytes | None = None) -> None:
        self.backend = backend
        self.manifest = manifest
        #: A public key (PEM) the version must be signed by: the reader checks it on open
        #: (an alias's policy), before any chunk is read.
        self.required_signer = required_signer
        # Remote: the reader asks for runs of neighbouring chunks at once; a run within a pack is one request.
        self.coalesce_reads = bool(backend.remote)

    def _pack(self, pack: str, offset: int, length: int, key: str) -> bytes:
        data = self.backend.read_range(object_key(pack), offset, length)
        if data is None or len(data) != length:
            raise IntegrityError(f"{key}: pack {pack[:16]} is missing from the repository {self.backend.location} (or is truncated)")
        return data

    def get(self, key: str) -> bytes | None:
        entry = self.manifest.files.get(key)
        if entry is None:
            return None
        return entry.data if entry.data is not None else self._read(key, entry, 0, entry.size)

    def size(self, key: str) -> int | None:
        entry = self.manifest.files.get(key)
        return None if entry is None else entry.size

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        entry = self.manifest.files.get(key)
        if entry is None:
            return None
        offset = max(0, min(offset, entry.size))
        length = max(0, min(length, entry.size - offset))
        if entry.data is not None:
            return entry.data[offset : offset + length]
        return self._read(key, entry, offset, length)

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int] | None:
        entry = self.manifest.files.get(key)
        if entry is None:
            return None
        start = max(0, entry.size - length)
        data = self.get_range(key, start, entry.size - start)
        return None if data is None else (data, entry.size)

    def _read(self, key: str, entry: FileEntry, offset: int, length: int) -> bytes:
        out, stop = [], offset + length
        objects_end = entry.size - len(entry.tail)
        first = max(0, bisect.bisect_right(entry._offsets, offset) - 1)
        run: list[Any] = []  # [pack, start in the pack, length]: consecutive bytes of one pack
        for i in range(first, len(entry.parts)):
            start = entry._offsets[i]
            if start >= stop:
                break
            _, size, pack, at = entry.parts[i]
            lo, hi = max(offset, start), min(stop, start + size)
            if hi <= lo:
                continue
            if run and run[0] == pack and run[1] + run[2] == at + lo - start:
                run[2] += hi - lo
            else:
                if run:
                    out.append(self._pack(run[0], run[1], run[2], key))
                run = [pack, at + lo - start, hi - lo]
        if run:
            out.append(self._pack(run[0], run[1], run[2], key))
        if stop > objects_end:
            out.append(entry.tail[max(0, offset - objects_end) : stop - objects_end])
        return b"".join(out)

    def keys(self) -> list[str]:
        """Every file of the version (a listable source: ``treeshard.verify`` reads it)."""
        return sorted(self.manifest.files)

    def close(self) -> None:
        pass


@dataclass(frozen=True, eq=False)
class VersionRef:
    """A resolved version of a repository, as a ``store`` argument for :func:`treeshard.load`,
    :func:`treeshard.open` and :class:`~treeshard.Predictor` (picklable: a lazily loaded
    forest sent to another process reopens it)."""

    repository: str
    version: int
    storage_options: dict[str, Any] | None = None
    public_key: bytes | None = None  # an alias's policy: the version must be signed by this key
    #: The manifest's bytes if resolving read them (``@latest``), for the first open only.
    prefetched: list[bytes] = field(default_factory=list, repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, tuple]:
        return VersionRef, (self.repository, self.version, self.storage_options, self.public_key)

    def __treeshard_source__(self) -> tuple[VersionSource, str]:
        from .backends import open_backend

        backend = open_backend(self.repository, self.storage_options)
        try:
            raw = self.prefetched.pop()
        except IndexError:
            manifest = read_manifest(backend, self.version)
        else:
            manifest = parse_manifest(raw, self.version, f"{backend.location}/{version_key(self.version)}")
        return VersionSource(backend, manifest, required_signer=self.public_key), f"{self.repository}@{version_id(self.version)}"

    def __treeshard_reference__(self) -> tuple[str, dict[str, Any] | None]:
        """``("REPOSITORY@vN", storage_options)``: what a pickled lazy model reopens."""
        import os

        from ..storage.urls import is_url

        location = self.repository if is_url(self.repository) else os.path.abspath(self.repository)
        return f"{location}@{version_id(self.version)}", self.storage_options

    def __repr__(self) -> str:
        return f"VersionRef({self.repository!r}, {version_id(self.version)})"
