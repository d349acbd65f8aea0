"""Models in object storage: ``s3://``, ``http(s)://``, ``memory://`` URLs (and a ``.zip`` at any of them).

Reads go through fsspec directly (its file system for the URL and
``storage_options``: credentials, endpoint, ...; no zarr import), writes
through zarr's own :class:`zarr.storage.FsspecStore`. Reading returns
a :class:`~treeshard.storage.sources.ByteSource` for the chunk reader, which
checks every size and checksum; nothing here trusts what it reads either:

- a directory URL maps key ``k`` to ``URL/k``. Opening reads the root
  ``zarr.json`` in one ranged request capped at the config size limit. Sizes
  of shard files come from the store's ``treeshard.sha256`` record (one
  request, on first need; a size that lies only makes a checksum fail), else
  from a ``HEAD``. Keys are checked so that a crafted store can never make
  the reader request anything outside its own prefix;
- a ``.zip`` URL is read with one suffix request (the last 64 KiB: the end
  record, the central directory and, for treeshard's zips, the root
  ``zarr.json``, written last), then each member by offset. Only stored
  (uncompressed) members are accepted, as for local zips.

Both ask the reader to coalesce (``coalesce_reads``): the chunks of one shard
that a read needs, adjacent or at most 64 KiB apart, come in one ranged request.

With ``cache_dir`` (or the ``TREESHARD_CACHE_DIR`` environment variable), a
remote store is cached on local disk under the store's content digest (the
``digest`` of its ``treeshard.sha256`` record, fetched on every open): a warm
container pays one small request per open, a changed model has another
digest and is never served stale, and every cached file is checked against
its sha256 before it is written to the cache.

Writing to a URL is :func:`treeshard.storage.targets.writing_url`'s: the
model is staged in memory, uploaded to a temporary sibling prefix, and only
then replaces the target (its root ``zarr.json`` deleted first, written last).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import (
    FormatError,
    IntegrityError,
    InvalidStoreError,
    MissingDependencyError,
    RemoteStoreError,
    StoreNotFoundError,
)
from ..spec import DIGEST_KEY, MAX_CONFIG_BYTES, MAX_DIGEST_BYTES, MAX_SIGNATURE_BYTES, ROOT_METADATA, SIGNATURE_KEY
from .digest import DigestRecord, parse_digest, stored_digest
from .urls import url_scheme
from .ziprules import LOCAL_HEADER_BYTES, check_member_count, check_stored_member, local_data_offset

ZIP_TAIL_BYTES = 64 * 1024 + 22  # the largest end-of-central-directory record (with its comment)
CACHE_ENV = "TREESHARD_CACHE_DIR"

#: Which extra brings the fsspec implementation of a scheme.
EXTRAS = {"s3": "s3", "s3a": "s3", "http": "http", "https": "http", "memory": "http"}
_SAFE_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


# --------------------------------------------------------------------------- URLs
def is_zip_url(url: str) -> bool:
    return url.split("?", 1)[0].rstrip("/").lower().endswith(".zip")


def split_url(url: str) -> tuple[str, str]:
    """``(parent URL, last name)`` of a URL such as ``s3://bucket/dir/model.zip``."""
    scheme_end = url.index("://") + 3
    trimmed = url.rstrip("/")
    cut = trimmed.rfind("/")
    if cut < scheme_end:
        raise FormatError(f"{url[:200]!r} names no object inside its bucket or host")
    return trimmed[:cut], trimmed[cut + 1 :]


def check_key(key: str) -> str:
    """Refuse a key that could address anything outside the store (``..``, absolute, queries).

    Keys come from the store's own (untrusted) metadata; a remote reader must
    not be steered to other objects on the same server.
    """
    if not _SAFE_KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise FormatError(f"store key {key[:200]!r} is not a plain relative path")
    return key


def _missing_extra(scheme: str, exc: ImportError) -> MissingDependencyError:
    extra = EXTRAS.get(scheme)
    hint = f"pip install treeshard[{extra}]" if extra else f"install the fsspec implementation of {scheme}://"
    return MissingDependencyError(f"{scheme}:// stores need packages that are not installed ({exc.name or exc}): {hint}")


@contextlib.contextmanager
def _fsspec_opening(url: str, storage_options: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
    """``storage_options`` checked and copied; a missing package or protocol inside becomes
    :class:`MissingDependencyError` naming the extra to install."""
    scheme = url_scheme(url)
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise TypeError(f"storage_options must be a mapping, got {type(storage_options).__name__}")
    try:
        yield dict(storage_options or {})
    except ImportError as exc:
        raise _missing_extra(scheme, exc) from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise _missing_extra(scheme, ImportError(str(exc))) from None
        raise


def fsspec_store(url: str, storage_options: Mapping[str, Any] | None = None, *, read_only: bool = True) -> Any:
    """zarr's ``FsspecStore`` for ``url`` (a missing extra raises :class:`MissingDependencyError`)."""
    with _fsspec_opening(url, storage_options) as options:
        import fsspec  # noqa: F401
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(url, storage_options=options, read_only=read_only)


def fsspec_filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec file system, root path)`` for reading ``url`` (a missing extra raises :class:`MissingDependencyError`)."""
    with _fsspec_opening(url, storage_options) as options:
        from fsspec.core import url_to_fs

        return url_to_fs(url, **options)


def network_errors() -> tuple[type[BaseException], ...]:
    """What a remote read may raise besides a missing key (only classes already imported)."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    if "aiohttp" in sys.modules:
        errors.append(sys.modules["aiohttp"].ClientError)
    if "botocore.exceptions" in sys.modules:
        errors.extend([sys.modules["botocore.exceptions"].BotoCoreError, sys.modules["botocore.exceptions"].ClientError])
    return tuple(errors)


# --------------------------------------------------------------------------- reading
class _Remote:
    """Byte access through an fsspec file system (shared by the directory and zip sources).

    fsspec is called directly (``cat_file``, ``info``), not through zarr's
    ``FsspecStore``: reading a remote model imports no zarr, so the Predictor
    serves a URL with numpy and the fsspec backend alone.

    Servers differ in how they answer byte ranges; each is handled where it is seen:

    - a server that ignores ``Range`` (``python -m http.server``, many static servers,
      some proxies and CDNs) answers ``200`` with the whole object: a body longer than
      the range asked for can only be that (a ``206`` never holds more), so the range
      is cut from it, and the body is kept (up to ``WHOLE_BODY_CACHE_BYTES``) for the
      next ranges of the same object;
    - a server that refuses suffix ranges (``bytes=-N``) gets a size lookup (``HEAD``)
      and an explicit range instead, from then on.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None, location: str) -> None:
        import threading

        self.fs, self.root = fsspec_filesystem(url, storage_options)
        self.location = location
        self.requests = self.bytes = 0  # counted here, for tests and benchmarks
        self.ignores_ranges = False  # seen answering a range with the whole object
        self.refuses_suffix = False  # seen refusing a suffix range
        self._bodies: OrderedDict[str, bytes] = OrderedDict()  # whole objects sent instead of a range
        self._lock = threading.Lock()

    def _path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}"

    def fetch(self, key: str, start: int | None = None, stop: int | None = None, *, suffix: int | None = None) -> bytes | None:
        """Bytes ``start:stop`` of ``key`` (or its last ``suffix`` bytes, or all); None if missing."""
        if start is not None and stop is not None and stop <= start:
            return b""
        with self._lock:
            whole = self._bodies.get(key)
            if whole is not None:
                self._bodies.move_to_end(key)
        if whole is not None:
            return _cut(whole, start, stop, suffix)
        if suffix is not None and self.refuses_suffix:
            return self._suffix_by_size(key, suffix)
        first, last = (-suffix, None) if suffix is not None else (start, stop)
        self.requests += 1
        try:
            data = self.fs.cat_file(self._path(key), start=first, end=last)
        except _MISSING:
            return None
        except network_errors() as exc:
            status = getattr(exc, "status", None)
            if suffix is not None and status in _SUFFIX_REFUSALS:
                self.refuses_suffix = True
                return self._suffix_by_size(key, suffix)
            if first is not None and status in _SUFFIX_REFUSALS:
                raise RemoteStoreError(
                    f"{self.location}: the server refuses byte ranges (HTTP {status} for {_describe_range(start, stop, suffix)} of {key!r}); "
                    "treeshard needs a server that serves byte ranges or whole files"
                ) from None
            if isinstance(exc, OSError) and "not satisfiable" in str(exc):
                data = b""  # S3's answer to a range past the end of an object
            else:
                raise RemoteStoreError(f"{self.location}: reading {key!r} failed ({type(exc).__name__}: {exc})") from None
        data = bytes(data)
        self.bytes += len(data)
        asked = suffix if suffix is not None else (stop - start if start is not None and stop is not None else None)
        if asked is not None and len(data) > asked:
            # More than was asked: the server ignored Range and sent the whole object.
            self.ignores_ranges = True
            self._keep(key, data)
            return _cut(data, start, stop, suffix)
        return data

    def _keep(self, key: str, data: bytes) -> None:
        if len(data) > WHOLE_BODY_CACHE_BYTES:
            return
        with self._lock:
            self._bodies[key] = data
            self._bodies.move_to_end(key)
            total = sum(map(len, self._bodies.values()))
            while total > WHOLE_BODY_CACHE_BYTES:
                _, dropped = self._bodies.popitem(last=False)
                total -= len(dropped)

    def _suffix_by_size(self, key: str, suffix: int) -> bytes | None:
        """The last ``suffix`` bytes of ``key`` through its size and an explicit range."""
        size = self.getsize(key)
        if size is None:
            return None
        return self.fetch(key, max(0, size - suffix), size) if size else b""

    def getsize(self, key: str) -> int | None:
        self.requests += 1
        try:
            size = self.fs.info(self._path(key)).get("size")
        except _MISSING:
            return None
        except network_errors() as exc:
            raise RemoteStoreError(f"{self.location}: reading the size of {key!r} failed ({type(exc).__name__}: {exc})") from None
        if size is None:  # no Content-Length: fsspec reports no size
            raise RemoteStoreError(
                f"{self.location}: the server refuses suffix ranges (bytes=-N) and reports no size for {key!r}; "
                "treeshard needs byte ranges or a Content-Length"
            )
        return int(size)

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()


#: Whole objects kept from a server that ignores ``Range`` (per open store), so that the
#: next ranges of an object cost no request. Larger objects are fetched again per range.
WHOLE_BODY_CACHE_BYTES = 256 * 1024 * 1024
#: What a file system raises for a key that is not there (as zarr's ``FsspecStore`` reads it).
_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)
#: HTTP statuses of a server that does not serve a range it was asked for.
_SUFFIX_REFUSALS = frozenset({400, 405, 416, 501})


def _cut(data: bytes, start: int | None, stop: int | None, suffix: int | None) -> bytes:
    """The bytes a range asks for, out of a whole object."""
    if suffix is not None:
        return data[max(0, len(data) - suffix) :]
    return data[start or 0 : stop]


def _describe_range(start: int | None, stop: int | None, suffix: int | None) -> str:
    if suffix is not None:
        return f"bytes=-{suffix}"
    return f"bytes={start}-{'' if stop is None else stop - 1}"


class RemoteDirectorySource:
    """A store laid out as objects under a URL prefix: key ``k`` is ``URL/k``."""

    coalesce_reads = True  # every request is a round trip: adjacent chunks come in one

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.remote = _Remote(self.url, storage_options, self.url)
        self._whole: dict[str, bytes] = {}  # small metadata documents read whole
        self._record: DigestRecord | None = None
        self._record_read = False
        self.digest: str | None = None
        self._sizes: dict[str, int] = {}

    @property
    def requests(self) -> int:
        return self.remote.requests

    def _read_small(self, key: str, limit: int) -> bytes | None:
        """A whole small document in one request capped at ``limit + 1`` bytes (longer: returned cut)."""
        data = self._whole.get(key)
        if data is None:
            data = self.remote.fetch(key, 0, limit + 1)
            if data is not None:
                self._whole[key] = data
        return data

    def parsed_digest(self) -> DigestRecord | None:
        """The store's parsed ``treeshard.sha256`` (None if it has none), read once."""
        if not self._record_read:
            raw = self._read_small(DIGEST_KEY, MAX_DIGEST_BYTES)
            if raw is not None and len(raw) > MAX_DIGEST_BYTES:
                raise IntegrityError(f"{self.url}: {DIGEST_KEY} exceeds the {MAX_DIGEST_BYTES}-byte limit")
            if raw is not None:
                self._record = parse_digest(raw)
                self.digest = self._record.digest
            self._record_read = True
        return self._record

    def _recorded_files(self) -> dict[str, tuple[int, str]]:
        """The record's ``{key: (size, sha256)}`` (empty if the store has none)."""
        record = self.parsed_digest()
        return {} if record is None else record.files

    def get(self, key: str) -> bytes | None:
        check_key(key)
        if key in self._whole:
            return self._whole[key]
        return self.remote.fetch(key)

    def size(self, key: str) -> int | None:
        check_key(key)
        if key in self._sizes:
            return self._sizes[key]
        if key == DIGEST_KEY:  # read whole (once), as the manifest of sizes
            self._recorded_files()
            data = self._whole.get(DIGEST_KEY)
            return None if data is None else len(data)
        if key not in (ROOT_METADATA, SIGNATURE_KEY) and self._recorded_files():
            # The saved model's manifest lists every file (a key it does not list is not part
            # of the model): sizes and absent arrays cost no request.
            entry = self._recorded_files().get(key)
            return None if entry is None else entry[0]
        if key == ROOT_METADATA or key.endswith("/" + ROOT_METADATA) or key == SIGNATURE_KEY:
            data = self._read_small(key, MAX_CONFIG_BYTES if key != SIGNATURE_KEY else MAX_SIGNATURE_BYTES)
            size = None if data is None else len(data)  # over the limit: reported as limit + 1
        else:
            size = self.remote.getsize(key)
        if size is not None:
            self._sizes[key] = size
        return size

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int | None] | None:
        """``(last length bytes, size or None)`` in one request (a shard's index)."""
        check_key(key)
        size = self._sizes.get(key)
        if size is None and self._recorded_files():
            entry = self._recorded_files().get(key)
            size = None if entry is None else entry[0]
        if size is not None:
            data = self.remote.fetch(key, max(0, size - length), size)
        else:
            data = self.remote.fetch(key, suffix=length)
        return None if data is None else (data, size)

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        check_key(key)
        if key in self._whole:
            return self._whole[key][offset : offset + length]
        return self.remote.fetch(key, offset, offset + length)

    def close(self) -> None:
        self._whole.clear()
        self.remote.clear()


class RemoteZipSource:
    """A ``.zip`` store at a URL, read by byte ranges (never downloaded whole)."""

    coalesce_reads = True

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        parent, self.name = split_url(url)
        self.remote = _Remote(parent, storage_options, url)
        tail = self.remote.fetch(self.name, suffix=ZIP_TAIL_BYTES)
        if tail is None:
            raise StoreNotFoundError(f"no treeshard store at {url!r}")
        self.file_size, cd_offset, cd_size, entries = self._end_record(tail)
        self._tail, self._tail_start = tail, self.file_size - len(tail)
        if cd_offset >= self._tail_start:
            directory = tail[cd_offset - self._tail_start : cd_offset - self._tail_start + cd_size]
        else:
            directory = self._read(cd_offset, cd_offset + cd_size)
        if len(directory) != cd_size:
            raise FormatError(f"{url!r}: truncated zip central directory")
        self.members = self._parse_directory(directory, entries, cd_offset)

    @property
    def requests(self) -> int:
        return self.remote.requests

    def _read(self, start: int, stop: int) -> bytes:
        if start >= self._tail_start:
            return self._tail[start - self._tail_start : stop - self._tail_start]
        data = self.remote.fetch(self.name, start, stop)
        if data is None:
            raise StoreNotFoundError(f"{self.url!r} disappeared while being read")
        return data

    def _end_record(self, tail: bytes) -> tuple[int, int, int, int]:
        """``(file size, central directory offset, its size, entries)`` from the end of the file."""
        import struct

        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            raise FormatError(f"{self.url!r} is not a zip file (no end of central directory)")
        (_, _, _, _, entries, cd_size, cd_offset, comment) = struct.unpack_from("<4sHHHHIIH", tail, at)
        if at + 22 + comment != len(tail):
            raise FormatError(f"{self.url!r}: data after the zip end record")
        if 0xFFFF in (entries,) or 0xFFFFFFFF in (cd_size, cd_offset):
            locator = at - 20
            if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
                raise FormatError(f"{self.url!r}: zip64 end record locator missing")
            (record_offset,) = struct.unpack_from("<Q", tail, locator + 8)
            size = self.remote.getsize(self.name)
            if size is None:
                raise StoreNotFoundError(f"no treeshard store at {self.url!r}")
            start = size - len(tail)
            if not start <= record_offset <= size - 56:
                raise FormatError(f"{self.url!r}: zip64 end record out of range")
            record = tail[record_offset - start : record_offset - start + 56] if record_offset >= start else self.remote.fetch(self.name, record_offset, record_offset + 56) or b""
            if len(record) != 56 or record[:4] != b"PK\x06\x06":
                raise FormatError(f"{self.url!r}: bad zip64 end record")
            entries, cd_size, cd_offset = struct.unpack_from("<QQQ", record, 32)
            end = record_offset
        else:
            size = cd_offset + cd_size + (len(tail) - at)  # the end record follows the directory
            end = cd_offset + cd_size
        whole_file = len(tail) < ZIP_TAIL_BYTES  # a short answer to a suffix request is the whole file
        if size < len(tail) or (whole_file and size != len(tail)):
            raise FormatError(f"{self.url!r}: inconsistent zip end record")
        if cd_offset + cd_size > end:
            raise FormatError(f"{self.url!r}: zip central directory out of range")
        return size, cd_offset, cd_size, entries

    def _parse_directory(self, directory: bytes, entries: int, cd_offset: int) -> dict[str, tuple[int, int]]:
        """``{name: (data offset, size)}`` of stored members (others are refused, as for local zips)."""
        import io
        import zipfile

        check_member_count(repr(self.url), entries)
        # Let zipfile parse the central directory (zip64 extras included) from a
        # small image: the directory followed by a fresh end record.
        import struct

        image = directory + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, min(entries, 0xFFFF), min(entries, 0xFFFF), len(directory), 0, 0)
        try:
            infos = zipfile.ZipFile(io.BytesIO(image)).infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
            raise FormatError(f"{self.url!r}: unreadable zip central directory ({exc})") from None
        infos.sort(key=lambda info: info.header_offset)
        members: dict[str, tuple[int, int]] = {}
        for k, info in enumerate(infos):
            check_stored_member(repr(self.url), info)
            # A stored member's data ends where the next local header (or the directory) starts.
            next_offset = infos[k + 1].header_offset if k + 1 < len(infos) else cd_offset
            start = next_offset - info.compress_size
            if info.flag_bits & 0x08:  # a data descriptor follows: read the local header instead
                header = self._read(info.header_offset, info.header_offset + LOCAL_HEADER_BYTES)
                start = local_data_offset(repr(self.url), info, header)
            if start < info.header_offset + LOCAL_HEADER_BYTES + len(info.orig_filename.encode()) or start + info.file_size > cd_offset:
                raise FormatError(f"{self.url!r}: member {info.filename[:200]!r} overlaps another")
            members[info.filename] = (start, info.file_size)
        return members

    def get(self, key: str) -> bytes | None:
        member = self.members.get(key)
        if member is None:
            return None
        return self._read(member[0], member[0] + member[1])

    def size(self, key: str) -> int | None:
        member = self.members.get(key)
        return None if member is None else member[1]

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int | None] | None:
        member = self.members.get(key)
        if member is None:
            return None
        offset = max(0, member[1] - length)
        return self.get_range(key, offset, member[1] - offset) or b"", member[1]

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        member = self.members.get(key)
        if member is None:
            return None
        start, size = member
        offset = max(0, min(offset, size))
        length = max(0, min(length, size - offset))
        return self._read(start + offset, start + offset + length)

    def close(self) -> None:
        self._tail = b""
        self.remote.clear()


class CachedSource:
    """A remote source whose files are kept in ``cache_dir/<content digest>/``.

    The digest record is fetched from the remote store on every open (one
    small request), so a replaced model is never served from the cache. Files
    are fetched whole on first use, checked against the record's sha256 and
    size, and written atomically; keys the record does not list are read from
    the remote store uncached.
    """

    coalesce_reads = True  # as its remote store (cached files: fewer opens)

    def __init__(self, inner: Any, cache_dir: str | os.PathLike) -> None:
        self.inner = inner
        size = inner.size(DIGEST_KEY)
        if size is None:
            raise IntegrityError(f"{inner.url}: no {DIGEST_KEY} in the store; a cache needs the content digest (re-save the model)")
        if size > MAX_DIGEST_BYTES:
            raise IntegrityError(f"{inner.url}: {DIGEST_KEY} exceeds the {MAX_DIGEST_BYTES}-byte limit")
        record = stored_digest(inner)  # parsed once: a remote directory parsed it for its sizes
        if record is None:
            raise IntegrityError(f"{inner.url}: {DIGEST_KEY} disappeared while being read")
        self.record = record
        self.digest, self.files = self.record.digest, self.record.files
        self.root = Path(cache_dir) / self.digest
        self.hits = self.misses = 0

    @property
    def requests(self) -> int:
        return self.inner.requests

    def _path(self, key: str) -> Path | None:
        if key not in self.files:
            return None
        return self.root / check_key(key)

    def _ensure(self, key: str) -> Path | None:
        path = self._path(key)
        if path is None:
            return None
        if path.is_file():
            self.hits += 1
            return path
        self.misses += 1
        data = self.inner.get(key)
        if data is None:
            raise IntegrityError(f"{self.inner.url}: {key!r} is listed in {DIGEST_KEY} but missing")
        size, sha = self.files[key]
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            raise IntegrityError(f"{self.inner.url}: {key!r} does not match {DIGEST_KEY} (changed or corrupt)")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:  # a cache directory that cannot be written (missing parent, read-only disk, a file)
            raise RemoteStoreError(
                f"{self.inner.url}: cannot write the cache under {str(self.root.parent)!r} ({type(exc).__name__}: {exc.strerror or exc}): "
                f"set {CACHE_ENV} to a writable directory (on AWS Lambda, one under /tmp) or unset it"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return path

    def get(self, key: str) -> bytes | None:
        path = self._ensure(key)
        return self.inner.get(key) if path is None else path.read_bytes()

    def size(self, key: str) -> int | None:
        entry = self.files.get(key)
        return entry[0] if entry is not None else self.inner.size(key)

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int | None] | None:
        path = self._ensure(key)
        if path is None:
            return self.inner.get_suffix(key, length)
        size = self.files[key][0]
        offset = max(0, size - length)
        return self.get_range(key, offset, size - offset) or b"", size

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        path = self._ensure(key)
        if path is None:
            return self.inner.get_range(key, offset, length)
        with open(path, "rb") as handle:
            return os.pread(handle.fileno(), length, offset)

    def parsed_digest(self) -> DigestRecord:
        return self.record

    def close(self) -> None:
        self.inner.close()


def open_url_for_reading(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """A byte source (``get``, ``get_range``, ``size``, ``close``) for the store at ``url``.

    ``cache_dir`` defaults to the ``TREESHARD_CACHE_DIR`` environment variable (no cache if unset).
    """
    if url_scheme(url) in ("http", "https") and "#" in url:
        # Never sent to the server: "model.zip#v2" would be read as a directory whose every
        # key (".../zarr.json") the fragment swallows, answered with the zip's bytes.
        raise InvalidStoreError(f"{url[:200]!r}: an http(s) URL's '#fragment' is not sent to the server; remove it")
    source = RemoteZipSource(url, storage_options) if is_zip_url(url) else RemoteDirectorySource(url, storage_options)
    cache_dir = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or None
    if cache_dir is not None and source.size(DIGEST_KEY) is not None:
        return CachedSource(source, cache_dir)  # a warm open: one request (the digest record)
    if source.size(ROOT_METADATA) is None:
        source.close()
        from .local import PICKLE_SUFFIXES

        hint = ""
        if url.rstrip("/").lower().endswith(PICKLE_SUFFIXES):
            hint = (
                ": by its name a joblib or pickle file. Loading a pickle runs whatever code it holds: if you made it "
                "or fully trust it, download it and convert it once with `treeshard convert FILE model.zip --trust-pickle`"
            )
        raise StoreNotFoundError(f"{url!r} is not a treeshard store (no {ROOT_METADATA}){hint}")
    return CachedSource(source, cache_dir) if cache_dir is not None else source
