"""Byte sources: the one contract every place a store's bytes come from follows.

:class:`ByteSource` is what the chunk reader, the verifier and the cache ask of
a store: whole objects, byte ranges, the last bytes of an object (a shard's
index), sizes, and whether a request costs a round trip. The local sources
(a directory, a ``.zip`` file, any zarr ``Store``) live here; the URL sources
(remote directory, remote zip over ranges, cached) in :mod:`treeshard.storage.remote`.
:func:`treeshard.storage.router.open_source` picks one for a store argument.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

from ..errors import FormatError, IntegrityError
from .ziprules import LOCAL_HEADER_BYTES, local_data_offset


@runtime_checkable
class ByteSource(Protocol):
    """Read access to the objects (keys) of one opened store.

    Every method returns None for a key the store does not hold, and raises a
    :class:`~treeshard.TreeshardError` subclass for anything else. A source that
    parses the store's digest record for its own needs (the remote ones take
    sizes from it) also offers ``parsed_digest()``, so that it is parsed once
    per open (:func:`treeshard.storage.digest.stored_digest`).
    """

    #: Whether the chunk reader should merge nearby ranges of a shard into one
    #: request (each request costs a round trip).
    coalesce_reads: bool

    def get(self, key: str) -> bytes | None:
        """The whole object."""

    def size(self, key: str) -> int | None:
        """The object's size in bytes."""

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        """``length`` bytes from ``offset`` (fewer at the object's end)."""

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int | None] | None:
        """``(last length bytes, object size or None if a request would be needed to know it)``."""

    def close(self) -> None:
        """Release what the source holds open (idempotent)."""


@runtime_checkable
class ListableSource(ByteSource, Protocol):
    """A byte source that can also list its keys (local ones and zarr Stores: what the verifier needs)."""

    def keys(self) -> list[str]:
        """Every key the store holds, sorted."""



class DirectorySource:
    """Files of a store directory, opened relative to a descriptor of the directory.

    Holding the directory open pins the store that was opened: when a save
    replaces the model (the new directory is renamed into place), reads keep
    going to the old directory, and fail once it has been deleted, instead of
    silently mixing the trees of two models.
    """

    coalesce_reads = False  # a read is a pread: one request per chunk keeps reads exact

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dir_fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def _check_not_replaced(self) -> None:
        """A missing file is missing from the store, unless the directory itself is gone."""
        if not os.path.exists(f"/proc/self/fd/{self._dir_fd}") or os.stat(self._dir_fd).st_nlink == 0:
            raise FormatError(f"{self.path}: the store was replaced or deleted after it was opened; load it again") from None

    def _open(self, key: str) -> Any:
        try:
            fd = os.open(key, os.O_RDONLY, dir_fd=self._dir_fd)
        except FileNotFoundError:
            self._check_not_replaced()
            return None
        except IsADirectoryError:
            raise FormatError(f"{key}: is a directory, expected a file") from None
        return os.fdopen(fd, "rb")

    def get(self, key: str) -> bytes | None:
        handle = self._open(key)
        if handle is None:
            return None
        with handle:
            try:
                return handle.read()
            except IsADirectoryError:
                raise FormatError(f"{key}: is a directory, expected a file") from None

    def size(self, key: str) -> int | None:
        try:
            return os.stat(key, dir_fd=self._dir_fd).st_size
        except FileNotFoundError:
            self._check_not_replaced()
            return None

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        handle = self._open(key)
        if handle is None:
            return None
        with handle:
            try:
                return os.pread(handle.fileno(), length, offset)
            except IsADirectoryError:
                raise FormatError(f"{key}: is a directory, expected a file") from None

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int | None] | None:
        """``(last length bytes, object size)``."""
        size = self.size(key)
        if size is None:
            return None
        offset = max(0, size - length)
        data = self.get_range(key, offset, size - offset)
        return None if data is None else (data, size)

    def keys(self) -> list[str]:
        """Every file of the opened directory (walked from its descriptor: the pinned store)."""
        found = []
        for root, _dirs, files, _fd in os.fwalk(".", dir_fd=self._dir_fd):
            found.extend(os.path.normpath(os.path.join(root, name)).replace(os.sep, "/") for name in files)
        return sorted(found)

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1


class ZipSource:
    coalesce_reads = False

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise FormatError(f"{str(path)!r} is not a readable zip file ({exc})") from None
        self.members = {info.filename: info for info in self.archive.infolist()}
        self._fd = os.open(path, os.O_RDONLY)
        self._file_size = os.fstat(self._fd).st_size
        self._data_offsets: dict[str, int] = {}

    def get(self, key: str) -> bytes | None:
        if key not in self.members:
            return None
        try:
            return self.archive.read(key)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
            # zipfile's CRC message names the member again ("Bad CRC-32 for file 'key'").
            raise IntegrityError(f"{key}: unreadable zip member ({str(exc).replace(f' for file {key!r}', '')})") from None

    def size(self, key: str) -> int | None:
        info = self.members.get(key)
        return None if info is None else info.file_size

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        """Bytes of a member without reading the rest of it (stored members: one pread)."""
        info = self.members.get(key)
        if info is None:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            data = self.get(key)
            return None if data is None else data[offset : offset + length]
        start = self._data_offsets.get(key)
        if start is None:
            start = self._data_offsets[key] = self._data_offset(info)
        length = max(0, min(length, info.file_size - offset))
        return os.pread(self._fd, length, start + offset)

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int | None] | None:
        """``(last length bytes, member size)``."""
        info = self.members.get(key)
        if info is None:
            return None
        offset = max(0, info.file_size - length)
        data = self.get_range(key, offset, info.file_size - offset)
        return None if data is None else (data, info.file_size)

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        header = os.pread(self._fd, LOCAL_HEADER_BYTES, info.header_offset)
        start = local_data_offset(repr(str(self.path)), info, header)
        if start + info.file_size > self._file_size:
            raise IntegrityError(f"{info.filename}: zip member extends past the end of the file")
        return start

    def keys(self) -> list[str]:
        return sorted(name for name, info in self.members.items() if not info.is_dir())

    def close(self) -> None:
        self.archive.close()
        os.close(self._fd)


class ZarrStoreSource:
    """Any zarr ``Store`` object (memory, fsspec, ...): only used when one is passed in."""

    def __init__(self, store: Any) -> None:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        self.store, self._sync, self._prototype = store, sync, default_buffer_prototype()
        self._inline = completes_at_once(store)
        self._run(store._ensure_open)  # zarr opens stores lazily (a ZipStore must be opened first)
        self.coalesce_reads = not is_local_store(store)

    def _run(self, request: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        if self._inline:
            done, result = run_at_once(request)
            if done:
                return result
            self._inline = False
        return self._sync(request())

    def get(self, key: str) -> bytes | None:
        try:
            buffer = self._run(lambda: self.store.get(key, prototype=self._prototype))
        except FileNotFoundError:
            return None
        return None if buffer is None else buffer.to_bytes()

    def size(self, key: str) -> int | None:
        try:
            return int(self._run(lambda: self.store.getsize(key)))
        except FileNotFoundError:
            return None

    def get_range(self, key: str, offset: int, length: int) -> bytes | None:
        from zarr.abc.store import RangeByteRequest

        request = RangeByteRequest(offset, offset + length)
        try:
            buffer = self._run(lambda: self.store.get(key, prototype=self._prototype, byte_range=request))
        except FileNotFoundError:
            return None
        return None if buffer is None else buffer.to_bytes()

    def get_suffix(self, key: str, length: int) -> tuple[bytes, int | None] | None:
        """``(last length bytes, None)``: one request; the object's size is not asked for
        (a ``getsize`` can cost a whole read on some stores)."""
        from zarr.abc.store import SuffixByteRequest

        request = SuffixByteRequest(length)
        try:
            buffer = self._run(lambda: self.store.get(key, prototype=self._prototype, byte_range=request))
        except FileNotFoundError:
            return None
        return None if buffer is None else (buffer.to_bytes(), None)

    def keys(self) -> list[str]:
        from zarr.storage import LocalStore

        if isinstance(self.store, LocalStore):
            # LocalStore.list() strips its root with str.replace, which mangles keys
            # that contain the root's name (zarr 3.1); list the files ourselves.
            root = Path(self.store.root)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

        async def keys() -> list[str]:
            return [key async for key in self.store.list()]

        return sorted(self._sync(keys()))

    def close(self) -> None:
        pass


def completes_at_once(store: Any) -> bool:
    """Whether the store's requests are plain dictionary operations (zarr's own ``MemoryStore``,
    not a subclass: one could do real I/O)."""
    from zarr.storage import MemoryStore

    return type(store) is MemoryStore


def run_at_once(request: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[bool, Any]:
    """``(True, result)`` of the coroutine ``request()`` if it finishes without waiting for
    anything, run in the caller's thread; else ``(False, None)``, and the caller runs
    ``request()`` again through zarr's event loop. A memory store's requests finish at once:
    a hop to zarr's event-loop thread costs more than reading a small chunk. Only for
    requests that can be run twice (reads, or writes that the second run redoes whole)."""
    coroutine = request()
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return True, finished.value
    except RuntimeError:  # it needed a running event loop; a real error is raised again by the second run
        return False, None
    coroutine.close()
    return False, None


def is_local_store(store: Any) -> bool:
    """Whether a zarr store reads memory or local files (else each request may cost a round trip)."""
    from zarr.storage import FsspecStore, LocalStore, MemoryStore, WrapperStore, ZipStore

    while isinstance(store, WrapperStore):
        store = store._store
    if isinstance(store, FsspecStore):
        protocol = store.fs.protocol
        return ({protocol} if isinstance(protocol, str) else set(protocol)) <= {"file", "local", "memory"}
    return isinstance(store, (LocalStore, MemoryStore, ZipStore))

