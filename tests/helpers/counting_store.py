"""Counting reads: a zarr store wrapper, and counters for treeshard's own directory and zip readers.

Tests use these to prove what a load reads: which keys, which byte ranges,
how many bytes. Nothing here changes what is read.

- :class:`CountingStore` wraps any zarr ``Store`` (``MemoryStore``, a
  ``LocalStore`` over a directory store, a ``ZipStore`` over a zip store) and
  logs every ``get`` (with its byte range), ``getsize``, ``exists`` and
  partial read that goes through it.
- :func:`count_path_reads` wraps the sources of bytes that
  ``treeshard.storage.sources`` has for directory and ``.zip`` paths (a pytest
  ``monkeypatch`` replaces their methods for the duration of a test), so the
  real path readers are counted too.
- :func:`node_chunk_extents` reads a sharded array's metadata and shard
  indexes from the unwrapped store, to say which byte ranges hold which nodes.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import WrapperStore

NODES_PREFIX = "nodes/"


@dataclass(frozen=True)
class Read:
    """One request: ``kind`` is "get", "getsize" or "exists"; ``byte_range`` is
    ``(start, stop)`` in the stored object, or None for the whole object."""

    kind: str
    key: str
    byte_range: tuple[int, int] | None
    nbytes: int  # bytes returned


class ReadLog:
    """A thread-safe list of :class:`Read` with summaries."""

    def __init__(self) -> None:
        self._reads: list[Read] = []
        self._lock = threading.Lock()

    def record(self, read: Read) -> None:
        with self._lock:
            self._reads.append(read)

    def clear(self) -> None:
        with self._lock:
            self._reads.clear()

    @property
    def reads(self) -> list[Read]:
        with self._lock:
            return list(self._reads)

    def gets(self) -> list[Read]:
        return [r for r in self.reads if r.kind == "get"]

    def touched(self, kind: str | None = "get") -> set[str]:
        """Keys touched by requests of ``kind`` (None: any request)."""
        return {r.key for r in self.reads if kind is None or r.kind == kind}

    def count(self, kind: str = "get") -> Counter:
        """Requests of ``kind`` per key."""
        return Counter(r.key for r in self.reads if r.kind == kind)

    def bytes_by_key(self) -> Counter:
        """Bytes returned by ``get`` per key."""
        out: Counter = Counter()
        for r in self.gets():
            out[r.key] += r.nbytes
        return out

    def bytes_read(self, prefix: str = "") -> int:
        """Bytes returned by ``get`` for keys starting with ``prefix``."""
        return sum(r.nbytes for r in self.gets() if r.key.startswith(prefix))

    def node_bytes(self) -> int:
        """Bytes of node columns read (``nodes/tree_ptr`` excluded)."""
        return sum(n for key, n in self.bytes_by_key().items() if is_node_column_key(key))

    def ranges(self, key: str) -> set[tuple[int, int] | None]:
        """The distinct byte ranges read from ``key`` (None: the whole object)."""
        return {r.byte_range for r in self.gets() if r.key == key}


def is_node_column_key(key: str) -> bool:
    """A key under ``nodes/<column>/`` other than ``nodes/tree_ptr`` (metadata included)."""
    return key.startswith(NODES_PREFIX) and not key.startswith(f"{NODES_PREFIX}tree_ptr/") and key.count("/") >= 2


# --------------------------------------------------------------------------- zarr stores
def _resolve(byte_range: ByteRequest | None, size: int | None) -> tuple[int, int] | None:
    if byte_range is None:
        return None
    if isinstance(byte_range, RangeByteRequest):
        return byte_range.start, byte_range.end
    if size is None:
        return (-1, -1)
    if isinstance(byte_range, OffsetByteRequest):
        return byte_range.offset, size
    if isinstance(byte_range, SuffixByteRequest):
        return size - byte_range.suffix, size
    raise TypeError(f"unknown byte range {byte_range!r}")


class CountingStore(WrapperStore):
    """A zarr store that logs every read made through it in :attr:`log`.

    >>> import zarr
    >>> store = CountingStore(zarr.storage.MemoryStore())
    >>> store.log.reads
    []
    """

    def __init__(self, store: Any, log: ReadLog | None = None) -> None:
        super().__init__(store)
        self.log = log if log is not None else ReadLog()

    def _with_store(self, store: Any) -> CountingStore:
        return type(self)(store, self.log)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        buffer = await self._store.get(key, prototype, byte_range)
        size = None
        if byte_range is not None and not isinstance(byte_range, RangeByteRequest) and buffer is not None:
            size = await self._store.getsize(key)
        self.log.record(Read("get", key, _resolve(byte_range, size), 0 if buffer is None else len(buffer)))
        return buffer

    async def get_partial_values(self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        buffers = await self._store.get_partial_values(prototype, key_ranges)
        for (key, byte_range), buffer in zip(key_ranges, buffers):
            size = None if byte_range is None or isinstance(byte_range, RangeByteRequest) else await self._store.getsize(key)
            self.log.record(Read("get", key, _resolve(byte_range, size), 0 if buffer is None else len(buffer)))
        return buffers

    async def _get_many(self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def getsize(self, key: str) -> int:
        self.log.record(Read("getsize", key, None, 0))
        return await self._store.getsize(key)

    async def exists(self, key: str) -> bool:
        self.log.record(Read("exists", key, None, 0))
        return await self._store.exists(key)

    def __repr__(self) -> str:
        return f"CountingStore({self._store!r})"


# --------------------------------------------------------------------------- directory and zip paths
def count_path_reads(monkeypatch: Any) -> ReadLog:
    """Log every read treeshard's own directory and ``.zip`` readers make, for one test.

    Replaces the methods of ``treeshard.storage.sources``' byte sources with
    counting wrappers through ``monkeypatch`` (undone when the test ends).
    """
    from treeshard.storage import sources

    log = ReadLog()
    for cls in (sources.DirectorySource, sources.ZipSource):
        get, size, get_range = cls.get, cls.size, cls.get_range

        def counted_get(self: Any, key: str, _get: Any = get) -> bytes | None:
            data = _get(self, key)
            log.record(Read("get", key, None, 0 if data is None else len(data)))
            return data

        def counted_size(self: Any, key: str, _size: Any = size) -> int | None:
            log.record(Read("getsize", key, None, 0))
            return _size(self, key)

        def counted_range(self: Any, key: str, offset: int, length: int, _get_range: Any = get_range) -> bytes | None:
            data = _get_range(self, key, offset, length)
            log.record(Read("get", key, (offset, offset + length), 0 if data is None else len(data)))
            return data

        monkeypatch.setattr(cls, "get", counted_get)
        monkeypatch.setattr(cls, "size", counted_size)
        monkeypatch.setattr(cls, "get_range", counted_range)
    return log


# --------------------------------------------------------------------------- where nodes are stored
@dataclass(frozen=True)
class ChunkExtent:
    """An inner chunk of a sharded array: its shard key, byte range in the shard, and rows."""

    key: str
    byte_range: tuple[int, int]
    rows: tuple[int, int]


def _raw(store: Any, key: str) -> bytes:
    buffer = sync(store.get(key, prototype=default_buffer_prototype()))
    assert buffer is not None, key
    return buffer.to_bytes()


def array_metadata(store: Any, path: str) -> dict[str, Any]:
    """An array's ``zarr.json`` (read from ``store`` directly: wrap nothing you count)."""
    return json.loads(_raw(store, f"{path}/zarr.json"))


def node_chunk_extents(store: Any, path: str) -> list[ChunkExtent]:
    """Every stored inner chunk of the 1-D or 2-D sharded array at ``path``, in row order."""
    meta = array_metadata(store, path)
    n_rows = meta["shape"][0]
    shard_rows = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
    (sharding,) = meta["codecs"]
    assert sharding["name"] == "sharding_indexed", sharding["name"]
    chunk_rows = sharding["configuration"]["chunk_shape"][0]
    assert sharding["configuration"].get("index_location", "end") == "end"
    per_shard = shard_rows // chunk_rows
    separator = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
    suffix = "".join(f"{separator}0" for _ in meta["shape"][1:])
    extents = []
    for shard in range(-(-n_rows // shard_rows)):
        key = f"{path}/c{separator}{shard}{suffix}"
        raw = _raw(store, key)
        index = np.frombuffer(raw[len(raw) - 16 * per_shard - 4 : -4], dtype="<u8").reshape(per_shard, 2)
        for c in range(per_shard):
            first = shard * shard_rows + c * chunk_rows
            if first >= n_rows:
                break
            offset, length = int(index[c, 0]), int(index[c, 1])
            extents.append(ChunkExtent(key, (offset, offset + length), (first, min(first + chunk_rows, n_rows))))
    return extents


def shard_index_range(store: Any, key: str, per_shard: int) -> tuple[int, int]:
    """The byte range of a shard's index (at its end)."""
    size = len(_raw(store, key))
    return size - 16 * per_shard - 4, size


# --------------------------------------------------------------------------- small chunks
def save_with_small_chunks(estimator: Any, store: Any, *, chunk_rows: int, chunks_per_shard: int, **kwargs: Any) -> None:
    """``treeshard.save`` with node columns cut into chunks of ``chunk_rows`` nodes,
    ``chunks_per_shard`` to a shard, so that small test models span many chunks
    and shards (any chunk geometry is valid format v1; readers take it from the
    array metadata)."""
    import pytest

    import treeshard
    from treeshard import codecs, saving

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(saving, "node_chunk_rows", lambda value_width: chunk_rows)
        patch.setattr(codecs, "CHUNKS_PER_SHARD", chunks_per_shard)
        treeshard.save(estimator, store, **kwargs)


def stored_tree_ptr(store: Any) -> np.ndarray:
    """The store's ``nodes/tree_ptr`` read with zarr itself (uncounted: pass the unwrapped store)."""
    import zarr

    return zarr.open_array(store, path="nodes/tree_ptr", mode="r")[:]
