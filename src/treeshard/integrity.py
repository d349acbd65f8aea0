"""Content digests and Ed25519 signatures: is this store exactly what was saved?

A save ends with :func:`record_digest`, which writes the key ``treeshard.sha256``
at the root of the store: a JSON record of the sha256 of every other stored
key (metadata documents, shard files), grouped by array so that a mismatch
names the array, the shard file and, inside a shard, the chunk. The record's
own ``digest`` is the sha256 of its canonical JSON (everything but ``digest``):
one value that stands for the whole model.

:func:`sign_store` adds ``treeshard.sig``: an Ed25519 signature (the
``cryptography`` package, ``pip install treeshard[sign]``) of the exact bytes
of ``treeshard.sha256``. :func:`verify_store` recomputes everything and raises
:class:`~treeshard.IntegrityError` (or :class:`~treeshard.SignatureError`
when a public key is given) listing what differs.

Everything read from a store here is untrusted: sizes are capped, JSON is
type-checked, and only the ``hashlib`` and ``cryptography`` primitives touch
the bytes.

>>> import treeshard, zarr
>>> from sklearn.tree import DecisionTreeRegressor
>>> store = zarr.storage.MemoryStore()
>>> treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), store)
>>> verify_store(store)  # raises if anything differs from what was saved
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import math
import os
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import FormatError, IntegrityError, InvalidStoreError, MissingDependencyError, SignatureError
from .spec import CONFIG_KEY, DIGEST_KEY, MAX_CONFIG_BYTES, MAX_SIGNATURE_BYTES, ROOT_METADATA, SIGNATURE_KEY, canonical_json, loads_json
from .storage.digest import DIGEST_FORMAT, SHA256_HEX, DigestRecord, stored_digest
from .storage.sources import ByteSource, ListableSource

SIGNATURE_CONTEXT = b"treeshard signature v1\n"  # domain separation: never a signature of anything else
_INSTALL_HINT = "signatures need the 'cryptography' package: pip install treeshard[sign]"
# What reading a damaged store may raise (a zip member with a bad CRC raises BadZipFile).
_READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError, EOFError, NotImplementedError, zipfile.BadZipFile)


# --------------------------------------------------------------------------- store access
@contextlib.contextmanager
def _source(store: Any) -> Iterator[ListableSource]:
    """``store`` as a listable byte source: an open source (a load's pinned one) is used as it
    is; a path or a zarr Store is opened through the router, and closed after."""
    if isinstance(store, ByteSource):
        if not isinstance(store, ListableSource):
            raise InvalidStoreError(_NOT_LISTABLE)
        yield store
        return
    from .storage.router import open_source
    from .storage.urls import is_repository_reference, is_url

    if is_url(store) and not is_repository_reference(store):  # "s3://bucket/repo@production": a listable version
        raise InvalidStoreError(_NOT_LISTABLE)
    source, _ = open_source(store)
    try:
        if not isinstance(source, ListableSource):
            raise InvalidStoreError(_NOT_LISTABLE)
        yield source
    finally:
        source.close()


_NOT_LISTABLE = "verifying needs a store whose files can be listed (a directory, a .zip or a zarr Store): `treeshard verify` a downloaded copy"


def _list_keys(source: ListableSource) -> list[str]:
    try:
        return source.keys()
    except _READ_ERRORS as exc:
        raise IntegrityError(f"cannot list the store's keys ({type(exc).__name__}: {exc})") from None


def _get(source: ByteSource, key: str) -> bytes | None:
    try:
        return source.get(key)
    except IntegrityError:
        raise
    except FileNotFoundError:
        return None
    except (FormatError, *_READ_ERRORS) as exc:
        raise IntegrityError(f"{key}: unreadable ({type(exc).__name__}: {exc})") from None


def _get_small(source: ByteSource, key: str, limit: int) -> bytes | None:
    try:
        size = source.size(key)
    except _READ_ERRORS as exc:
        raise IntegrityError(f"{key}: unreadable ({type(exc).__name__}: {exc})") from None
    if size is None:
        return None
    if size > limit:
        raise IntegrityError(f"{key}: {size} bytes exceeds the {limit}-byte limit")
    return _get(source, key)


def _sync(coroutine: Any) -> Any:
    from zarr.core.sync import sync

    return sync(coroutine)


def _set(store: Any, key: str, value: bytes) -> None:
    from zarr.core.buffer import default_buffer_prototype

    _sync(store.set(key, default_buffer_prototype().buffer.from_bytes(value)))


# --------------------------------------------------------------------------- the digest record
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_of(key: str, arrays: set[str]) -> tuple[str, str] | None:
    """``(array_path, chunk_key)`` if ``key`` is a chunk (shard) file of one of ``arrays``."""
    parts = key.split("/")
    for i in range(len(parts) - 1, 0, -1):
        prefix = "/".join(parts[:i])
        if prefix in arrays:
            return prefix, "/".join(parts[i:])
    return None


def _shard_layout(metadata: dict[str, Any]) -> int | None:
    """Number of inner chunks per shard of a sharded array written by treeshard, else None."""
    try:
        outer = metadata["chunk_grid"]["configuration"]["chunk_shape"]
        (sharding,) = metadata["codecs"]
        if sharding["name"] != "sharding_indexed":
            return None
        config = sharding["configuration"]
        if config.get("index_location", "end") != "end":
            return None
        inner = config["chunk_shape"]
        index_codecs = [c["name"] for c in config["index_codecs"]]
        if index_codecs != ["bytes", "crc32c"]:
            return None
        return math.prod(-(-int(o) // int(i)) for o, i in zip(outer, inner, strict=True))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _inner_chunks(shard: bytes, n_chunks: int) -> list[list[Any]] | None:
    """``[[offset, length, sha256], ...]`` of a shard's inner chunks (from its own index)."""
    index_bytes = 16 * n_chunks + 4
    if n_chunks <= 0 or len(shard) < index_bytes:
        return None
    index = shard[len(shard) - index_bytes : len(shard) - 4]
    out = []
    for i in range(n_chunks):
        offset, length = struct.unpack_from("<QQ", index, 16 * i)
        if offset == length == 2**64 - 1:
            out.append([None, None, None])  # empty chunk (fill value): nothing stored
        elif offset + length > len(shard):
            return None
        else:
            out.append([offset, length, _sha256(shard[offset : offset + length])])
    return out


def compute_digest(store: Any) -> dict[str, Any]:
    """The digest record of ``store`` as it is now (see the module docstring).

    Only meant for stores treeshard just wrote (it trusts their metadata to
    find shard indexes); :func:`verify_store` never parses stored indexes.
    """
    with _source(store) as source:
        return _compute_digest(source)


def _metadata_document(store: ListableSource, key: str) -> Any:
    """A metadata document parsed with the reader's depth limit (``FormatError`` naming ``key``)."""
    try:
        return loads_json(_get(store, key) or b"{}")
    except ValueError as exc:
        raise FormatError(f"{key}: not valid JSON ({exc})") from None


def _compute_digest(store: ListableSource) -> dict[str, Any]:
    keys = [k for k in _list_keys(store) if k not in (DIGEST_KEY, SIGNATURE_KEY)]
    metadata: dict[str, dict[str, Any]] = {}
    for key in keys:
        if key == ROOT_METADATA or key.endswith("/" + ROOT_METADATA):
            document = _metadata_document(store, key)
            if isinstance(document, dict) and document.get("node_type") == "array":
                metadata[key[: -len(ROOT_METADATA) - 1]] = document
    root = _metadata_document(store, ROOT_METADATA)
    if not isinstance(root, dict):
        raise FormatError(f"{ROOT_METADATA}: not a JSON object")
    config = root.get("attributes", {}).get(CONFIG_KEY)
    files: dict[str, Any] = {}
    arrays: dict[str, dict[str, Any]] = {name: {"chunks": {}} for name in metadata}
    for key in keys:
        data = _get(store, key)
        if data is None:
            continue
        files[key] = {"size": len(data), "sha256": _sha256(data)}
        owner = _array_of(key, set(metadata))
        if owner is not None and owner[1] != ROOT_METADATA:
            name, chunk = owner
            entry: dict[str, Any] = {"size": len(data), "sha256": files[key]["sha256"]}
            n_chunks = _shard_layout(metadata[name])
            inner = _inner_chunks(data, n_chunks) if n_chunks is not None else None
            if inner is not None:
                entry["inner"] = inner
            arrays[name]["chunks"][chunk] = entry
    return _sealed_record(config, files, arrays)


def _sealed_record(config: Any, files: dict[str, Any], arrays: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The digest record of ``files`` (``{key: {"size", "sha256"}}``) and ``arrays``
    (``{path: {"chunks": {chunk: entry}}}``): each array's digest over its metadata
    and chunks, then the record's own ``digest`` over everything."""
    return _sealed(config, files, arrays)[0]


def _sealed(config: Any, files: dict[str, Any], arrays: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], bytes]:
    """:func:`_sealed_record` and its ``canonical_json``, each part of the record encoded once."""
    for name, entry in arrays.items():
        chunk_digests = {chunk: c["sha256"] for chunk, c in entry["chunks"].items()}
        entry["sha256"] = _sha256(canonical_json({"metadata": files[f"{name}/{ROOT_METADATA}"]["sha256"], "chunks": chunk_digests}))
    body = {
        "treeshard_digest": DIGEST_FORMAT,
        "algorithm": "sha256",
        "config": _sha256(canonical_json(config)) if config is not None else None,
        "files": files,
        "arrays": arrays,
    }
    # canonical_json of an object is its sorted members joined: the body's members, encoded once,
    # make both the body the digest covers and the record (the body and its digest).
    members = {key: canonical_json(key) + b":" + canonical_json(value) for key, value in body.items()}
    digest = _sha256(b"{" + b",".join(members[key] for key in sorted(members)) + b"}")
    members["digest"] = canonical_json("digest") + b":" + canonical_json(digest)
    return {**body, "digest": digest}, b"{" + b",".join(members[key] for key in sorted(members)) + b"}"


def record_digest(store: Any) -> str:
    """Write ``treeshard.sha256`` into a freshly saved ``store``; return its ``digest``.

    The last step of a save (after metadata is consolidated). Any earlier
    signature no longer matches, so it is removed.
    """
    record = compute_digest(store)
    _set(store, DIGEST_KEY, canonical_json(record))
    _delete(store, SIGNATURE_KEY)
    return record["digest"]


def digest_of_files(
    files: dict[str, Any],
    *,
    config: Any,
    arrays: dict[str, dict[str, tuple[str, list[list[Any]]]]],
    file_sha256: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The record :func:`compute_digest` would compute for a store holding exactly ``files``,
    computed while writing: nothing is read back.

    ``files`` maps each key to its bytes, or to the list of its parts. ``config``
    is the config record as stored; ``arrays`` maps each array path to
    ``{chunk_key: (shard sha256, inner chunks [[offset, length, sha256], ...])}``
    (what :mod:`treeshard.writer` computed as it encoded); ``file_sha256`` the
    sha256 of any other files already known. The rest are hashed here.
    """
    return _files_record(files, config, arrays, file_sha256)[0]


def digest_file(
    files: dict[str, Any],
    *,
    config: Any,
    arrays: dict[str, dict[str, tuple[str, list[list[Any]]]]],
    file_sha256: dict[str, str] | None = None,
) -> bytes:
    """``canonical_json(digest_of_files(...))``, the bytes of ``treeshard.sha256``, encoded once."""
    return _files_record(files, config, arrays, file_sha256)[1]


def _files_record(files: dict[str, Any], config: Any, arrays: dict[str, Any], file_sha256: dict[str, str] | None) -> tuple[dict[str, Any], bytes]:
    known = dict(file_sha256 or {})
    for name, chunks in arrays.items():
        for chunk, (sha, _) in chunks.items():
            known[f"{name}/{chunk}"] = sha
    keys = sorted(k for k in files if k not in (DIGEST_KEY, SIGNATURE_KEY))

    def size(value: Any) -> int:
        return len(value) if isinstance(value, bytes) else sum(map(len, value))

    record_files = {k: {"size": size(files[k]), "sha256": known.get(k) or _sha256(b"".join(files[k]) if isinstance(files[k], list) else files[k])} for k in keys}
    record_arrays = {
        name: {"chunks": {chunk: {"size": size(files[f"{name}/{chunk}"]), "sha256": sha, "inner": inner} for chunk, (sha, inner) in chunks.items()}}
        for name, chunks in arrays.items()
    }
    return _sealed(config, record_files, record_arrays)


def _delete(store: Any, key: str) -> None:
    try:
        _sync(store.delete(key))
    except (FileNotFoundError, KeyError):
        pass


# --------------------------------------------------------------------------- reading a record
def read_digest(source: ByteSource) -> DigestRecord:
    """Read and check the structure of the stored digest record (not the store against it)."""
    try:
        record = stored_digest(source)
    except IntegrityError:
        raise
    except (FormatError, *_READ_ERRORS) as exc:
        raise IntegrityError(f"{DIGEST_KEY}: unreadable ({type(exc).__name__}: {exc})") from None
    if record is None:
        raise IntegrityError(f"no {DIGEST_KEY} in the store: it was saved without a content digest; re-save it to add one")
    return record


# --------------------------------------------------------------------------- checking chunks as they are read
class ChunkDigests:
    """What every object a read fetches must hash to, from a parsed digest record.

    Each chunk is checked where it is read (:class:`~treeshard.chunks.ChunkReader`),
    before it is decoded: a chunk file swapped with another, duplicated over
    another or moved to another array's place keeps valid crc32c checksums
    but not the sha256 recorded for its place. The record holds a sha256 per
    inner chunk of every shard, so a lazy read checks exactly the bytes it
    fetched and never reads a whole shard to check it.
    """

    def __init__(self, record: DigestRecord) -> None:
        self.record = record
        self._inner: dict[str, list[tuple[int, str] | None] | None] = {}

    def check_object(self, where: str, key: str, data: Any) -> None:
        """``data`` is the whole stored object ``key`` (a document or an unsharded chunk)."""
        entry = self.record.files.get(key)
        if entry is None:
            raise IntegrityError(f"{where}: {key} is not part of the saved model (not in {DIGEST_KEY})")
        size, expected = entry
        if len(data) != size or hashlib.sha256(data).hexdigest() != expected:
            raise IntegrityError(f"{where}: {key} does not match its sha256 in {DIGEST_KEY} (a swapped, duplicated, misplaced or changed file)")

    def check_root(self, data: bytes) -> None:
        """``data`` is the root ``zarr.json``: the config record and every array's metadata."""
        entry = self.record.files.get(ROOT_METADATA)
        if entry is None or len(data) != entry[0] or hashlib.sha256(data).hexdigest() != entry[1]:
            raise IntegrityError(f"{ROOT_METADATA}: the config or array metadata differ from what {DIGEST_KEY} recorded at save time")

    def check_chunk(self, path: str, key: str, index: int, data: Any) -> None:
        """``data`` is inner chunk ``index`` of the shard ``key`` of the array ``path``, as read."""
        digests = self.inner_digests(path, key)
        if digests is None:
            raise IntegrityError(f"{path}: shard {key} is not part of the saved model (no chunk digests for it in {DIGEST_KEY})")
        expected = digests[index] if 0 <= index < len(digests) else None
        if expected is None:
            raise IntegrityError(f"{path}: chunk {index} of shard {key} is not part of the saved model (not in {DIGEST_KEY})")
        length, sha = expected
        if len(data) != length or hashlib.sha256(data).hexdigest() != sha:
            raise IntegrityError(
                f"{path}: chunk {index} of shard {key} does not match its sha256 in {DIGEST_KEY} "
                "(a swapped, duplicated, misplaced or changed chunk)"
            )

    def inner_digests(self, path: str, key: str) -> list[tuple[int, str] | None] | None:
        """``[(length, sha256) or None (no chunk or a malformed entry), ...]`` of the shard ``key`` of
        the array ``path`` as recorded (None: no record of the shard), parsed once."""
        digests = self._inner.get(key, _UNSET)
        if digests is _UNSET:
            digests = self._inner[key] = self._parse_inner(path, key)
        return digests

    def _parse_inner(self, path: str, key: str) -> list[tuple[int, str] | None] | None:
        """:meth:`inner_digests` from the record (untrusted JSON)."""
        array = self.record.arrays.get(path)
        chunks = array.get("chunks") if isinstance(array, dict) else None
        prefix = f"{path}/"
        entry = chunks.get(key[len(prefix) :]) if isinstance(chunks, dict) and key.startswith(prefix) else None
        inner = entry.get("inner") if isinstance(entry, dict) else None
        if not isinstance(inner, list):
            return None
        out: list[tuple[int, str] | None] = []
        for item in inner:
            valid = isinstance(item, list) and len(item) == 3 and isinstance(item[1], int) and not isinstance(item[1], bool)
            valid = valid and isinstance(item[2], str) and len(item[2]) == 64 and set(item[2]) <= SHA256_HEX
            out.append((item[1], item[2]) if valid else None)
        return out


_UNSET: Any = object()


# --------------------------------------------------------------------------- verifying
def find_problems(store: Any, record: DigestRecord) -> list[str]:
    """Every difference between ``store`` and ``record``, one line each (empty: intact)."""
    problems: list[str] = []
    keys = [k for k in _list_keys(store) if k not in (DIGEST_KEY, SIGNATURE_KEY)]
    present = set(keys)
    for key in sorted(set(record.files) - present):
        problems.append(f"{_describe(key, record)}: missing")
    for key in sorted(present - set(record.files)):
        problems.append(f"{key}: not part of the saved model (added after saving)")
    for key in keys:
        if key not in record.files:
            continue
        size, expected = record.files[key]
        try:
            data = _get(store, key)
        except IntegrityError as exc:
            # The read error starts with the key, which _describe already names.
            problems.append(f"{_describe(key, record)}: {str(exc).removeprefix(f'{key}: ')}")
            continue
        if data is None:
            problems.append(f"{_describe(key, record)}: missing")
        elif len(data) != size:
            problems.append(f"{_describe(key, record)}: {len(data)} bytes, expected {size} (truncated or extended)")
        elif _sha256(data) != expected:
            problems.append(f"{_describe(key, record)}: content differs{_which_inner(key, data, record)}")
    if not problems and record.config is not None:
        root = _get_small(store, ROOT_METADATA, MAX_CONFIG_BYTES) or b"{}"
        try:
            config = loads_json(root).get("attributes", {}).get(CONFIG_KEY)
            ok = _sha256(canonical_json(config)) == record.config
        except (ValueError, AttributeError, TypeError):
            ok = False
        if not ok:
            problems.append(f"{ROOT_METADATA}: the config record differs from the saved one")
    return problems


def _describe(key: str, record: DigestRecord) -> str:
    owner = _array_of(key, set(record.arrays))
    if owner is None:
        return key
    name, chunk = owner
    if chunk == ROOT_METADATA:
        return f"array {name!r}, metadata ({key})"
    return f"array {name!r}, shard {chunk!r} ({key})"


def _which_inner(key: str, data: bytes, record: DigestRecord) -> str:
    owner = _array_of(key, set(record.arrays))
    if owner is None:
        return ""
    name, chunk = owner
    entry = record.arrays[name]["chunks"].get(chunk)
    inner = entry.get("inner") if isinstance(entry, dict) else None
    if not isinstance(inner, list):
        return ""
    bad = []
    for i, item in enumerate(inner):
        if not (isinstance(item, list) and len(item) == 3) or item[0] is None:
            continue
        offset, length, digest = item
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, length)):
            continue
        if _sha256(data[offset : offset + length]) != digest:
            bad.append(i)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        return f": inner chunk(s) {shown} of the shard"
    return ": the shard index (chunk offsets) or padding"


def verify_store(store: Any, *, public_key: Any = None) -> None:
    """Check that ``store`` holds exactly what was saved (and signed).

    ``store`` is a zarr Store, or a directory or ``.zip`` path (read without
    importing zarr).

    Raises :class:`~treeshard.IntegrityError` naming every array and chunk
    that differs from the digest recorded at save time, or that has no
    digest. With ``public_key`` (PEM bytes, a path to a PEM file or an
    ``Ed25519PublicKey``) the store must also carry a valid signature by that
    key, and every failure raises :class:`~treeshard.SignatureError`.
    """
    with _source(store) as files:
        try:
            record = read_digest(files)
        except IntegrityError as exc:
            if public_key is not None:
                raise SignatureError(f"cannot check the signature: {exc}") from None
            raise
        if public_key is not None:
            check_signature(files, record, public_key)
        problems = find_problems(files, record)
    if problems:
        error = SignatureError if public_key is not None else IntegrityError
        what = "signed content" if public_key is not None else "digest recorded at save time"
        lines = "\n  ".join(problems[:50]) + ("\n  ..." if len(problems) > 50 else "")
        raise error(f"store differs from the {what} ({len(problems)} problem(s)):\n  {lines}")


# --------------------------------------------------------------------------- signatures
def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingDependencyError(_INSTALL_HINT) from None
    return serialization, ed25519


def _pem(key: Any) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        return key.encode("ascii", "replace")
    if isinstance(key, (str, os.PathLike)):
        try:
            return Path(key).read_bytes()
        except OSError as exc:
            raise SignatureError(f"cannot read key file {str(key)!r}: {exc}") from None
    raise SignatureError(f"a key must be PEM bytes, a path to a PEM file or a cryptography key, got {type(key).__name__}")


def load_public_key(key: Any) -> Any:
    """An ``Ed25519PublicKey`` from PEM bytes, a PEM file path or a key object."""
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    try:
        loaded = serialization.load_pem_public_key(_pem(key))
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"not a PEM public key: {exc}") from None
    if not isinstance(loaded, ed25519.Ed25519PublicKey):
        raise SignatureError(f"not an Ed25519 public key ({type(loaded).__name__})")
    return loaded


def load_private_key(key: Any, *, password: bytes | None = None) -> Any:
    """An ``Ed25519PrivateKey`` from PEM bytes, a PEM file path or a key object."""
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    try:
        loaded = serialization.load_pem_private_key(_pem(key), password=password)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"not a usable PEM private key: {exc}") from None
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"not an Ed25519 private key ({type(loaded).__name__})")
    return loaded


def public_key_pem(public_key: Any) -> bytes:
    """``public_key`` (PEM bytes, a path or a key object) as PEM bytes (what pickles)."""
    serialization, _ = _crypto()
    return load_public_key(public_key).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key: Any) -> str:
    """A short fingerprint of a public key: sha256 of its raw bytes, 16 hex digits."""
    serialization, _ = _crypto()
    raw = load_public_key(public_key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _sha256(raw)[:16]


def signature_record(record_bytes: bytes, private_key: Any) -> bytes:
    """The ``treeshard.sig`` document signing the exact bytes of a digest record."""
    private = load_private_key(private_key)
    signature = private.sign(SIGNATURE_CONTEXT + record_bytes)
    document = {
        "algorithm": "ed25519",
        "key_id": key_id(private.public_key()),
        "signed": DIGEST_KEY,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    return canonical_json(document)


def check_signature(store: Any, record: DigestRecord, public_key: Any) -> None:
    """Raise :class:`~treeshard.SignatureError` unless ``public_key`` signed ``record``."""
    check_signature_document(_get_small(store, SIGNATURE_KEY, MAX_SIGNATURE_BYTES), record, public_key)


def check_signature_document(raw: bytes | None, record: DigestRecord, public_key: Any) -> None:
    """Raise :class:`~treeshard.SignatureError` unless ``raw`` (the bytes of ``treeshard.sig``,
    None if absent) is ``public_key``'s signature of ``record``."""
    public = load_public_key(public_key)
    expected_id = key_id(public)
    if raw is None:
        raise SignatureError(f"store is not signed (no {SIGNATURE_KEY}); expected a signature by key {expected_id}")
    try:
        document = loads_json(raw)
        if not isinstance(document, dict) or document.get("algorithm") != "ed25519":
            raise ValueError("not an ed25519 signature record")
        signature = base64.b64decode(document["signature"], validate=True)
        signer = str(document.get("key_id", "?"))[:64]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(f"{SIGNATURE_KEY}: malformed ({exc})") from None
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(signature, SIGNATURE_CONTEXT + record.raw)
    except InvalidSignature:
        if signer != expected_id:
            raise SignatureError(f"store is signed by key {signer}, not by the expected key {expected_id}") from None
        raise SignatureError(f"invalid signature: {DIGEST_KEY} was modified after signing (key {expected_id})") from None


def sign_store(store: Any, private_key: Any) -> str:
    """Sign a saved store in place (any location :func:`treeshard.load` accepts).

    The digest is checked first (a store that is already corrupt is never
    signed). A ``.zip`` file is rewritten to a temporary sibling and moved
    into place atomically; a directory gets ``treeshard.sig`` through a
    temporary file and a rename. Returns the signing key's :func:`key_id`.
    """
    from .storage.ziprules import is_zip_path

    private = load_private_key(private_key)
    with _source(store) as files:
        record = read_digest(files)
        problems = find_problems(files, record)
        if problems:
            raise IntegrityError("refusing to sign a store that differs from its digest:\n  " + "\n  ".join(problems[:20]))
        document = signature_record(record.raw, private)
    if isinstance(store, (str, os.PathLike)):
        path = Path(store)
        if is_zip_path(path):
            _replace_zip_member(path, SIGNATURE_KEY, document)
        else:
            _write_file_atomically(path / SIGNATURE_KEY, document)
    else:
        _set(store, SIGNATURE_KEY, document)
    return key_id(private.public_key())


def _write_file_atomically(path: Path, data: bytes) -> None:
    from .storage.local import fsync_directory, temporary_sibling

    # Beside the store, not in it: a killed sign leaves nothing verify would flag,
    # and the next save to the store removes it.
    tmp = temporary_sibling(path.parent, "tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def _replace_zip_member(path: Path, name: str, data: bytes) -> None:
    from .storage.local import fsync_directory, temporary_sibling

    tmp = temporary_sibling(path, "tmp", suffix=".zip")
    try:
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as out:
            members = [m for m in source.infolist() if m.filename != name]
            # zarr.json stays last (see storage.local._pack_zip): the signature goes before it.
            members.sort(key=lambda m: m.filename == ROOT_METADATA)
            for member in members:
                if member.filename == ROOT_METADATA:
                    out.writestr(name, data)
                with source.open(member) as src, out.open(member, "w") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            if ROOT_METADATA not in source.namelist():
                out.writestr(name, data)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def generate_key_pair() -> tuple[bytes, bytes]:
    """``(private_pem, public_pem)`` of a new Ed25519 key (unencrypted PKCS8 / SubjectPublicKeyInfo)."""
    serialization, ed25519 = _crypto()
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def verify_path(store: Any, *, public_key: Any = None) -> str:
    """:func:`verify_store` on any location :func:`treeshard.load` accepts; a one-line summary."""
    with _source(store) as files:
        verify_store(files, public_key=public_key)
        record = read_digest(files)
    signed = f", signed by key {key_id(public_key)}" if public_key is not None else ""
    return f"{len(record.files)} files match sha256 digest {record.digest[:16]}{signed}"
