"""The chunk reader: arrays of treeshard's own stores read without importing zarr.

The serverless fast path (:class:`treeshard.Predictor`) pays for every import
in a fresh process, and zarr's import is heavy. The stores treeshard writes
use a tiny, fixed subset of zarr v3: consolidated metadata in the root
``zarr.json``, 1-D or 2-D arrays chunked along the first axis,
``sharding_indexed`` with a ``bytes`` + ``crc32c`` index, and inner chunks
encoded ``bytes`` -> ``blosc`` (optional) -> ``crc32c``. This module reads
exactly that subset from any :class:`~treeshard.storage.sources.ByteSource`,
checks every checksum (``google_crc32c``, which zarr itself depends on) and,
where the store has a digest record, the sha256 of every chunk it reads;
Blosc is decoded by :mod:`treeshard.blosc`.

Anything outside that subset raises :class:`UnsupportedLayout` (the caller
refuses the array). Everything a store could get wrong raises a
:class:`~treeshard.FormatError` subclass naming the array.

Where a request costs a round trip (remote sources: ``coalesce_reads``), the
chunks of one shard that a read needs come in one ranged request when they
are adjacent or at most ``COALESCE_GAP_BYTES`` apart; locally, each chunk is
one ``pread``, except in an eager load's whole-chunk reads (``fetch_chunks``:
a shard's run of adjacent chunks in one ``pread``, decoded by one compiled call).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ArrayError, ConfigError, IntegrityError, StoreNotFoundError, UnverifiedStoreWarning
from .spec import (
    DIGEST_KEY,
    MAX_ARRAY_BYTES,
    MAX_CHUNK_BYTES,
    MAX_CHUNKS_PER_SHARD,
    MAX_CONFIG_BYTES,
    MAX_SIGNATURE_BYTES,
    ROOT_METADATA,
    SIGNATURE_KEY,
    loads_json,
)
from .blosc import BloscDecoder, UnsupportedLayout, crc32c, native_functions
from .storage.router import open_source

if TYPE_CHECKING:
    from .integrity import ChunkDigests

_EMPTY = 2**64 - 1
_DTYPES = {
    "bool": "|b1",
    "int8": "|i1",
    "uint8": "|u1",
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
    "int64": "<i8",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
}


PARTIAL_CHUNKS_KEPT = 12  # the boundary chunk of each node column, for the next range read
#: Chunk reads of one shard at most this far apart become one request (sources
#: whose requests cost a round trip: ``coalesce_reads``); the gap's bytes are read and dropped.
COALESCE_GAP_BYTES = 64 * 1024
#: A coalesced request grows no larger: bigger reads stay several requests, fetched in parallel.
MAX_COALESCED_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ArrayLayout:
    """Where and how an array's chunks are stored (checked metadata, see ``array_layout``)."""

    path: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_rows: int  # rows per stored object (shard, or chunk when not sharded)
    chunk_rows: int  # rows per encoded chunk
    index_at_end: bool | None  # None: not sharded
    compressed: bool
    fill: Any
    key_prefix: str
    key_suffix: str


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """Threads that decode chunks (Blosc and crc32c release the GIL); a new pool in a forked
    child (the parent's threads do not exist there, and a task given to its pool never runs)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2)), thread_name_prefix="treeshard-decode"))
    return _POOL[1]


def read_root(source: Any) -> dict[str, Any]:
    """The parsed root ``zarr.json`` (size-limited)."""
    return parse_root(read_root_bytes(source))


def read_root_bytes(source: Any) -> bytes:
    """The bytes of the root ``zarr.json`` (size-limited)."""
    size = source.size(ROOT_METADATA)
    if size is None:
        raise StoreNotFoundError(f"not a treeshard store (no {ROOT_METADATA})")
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{ROOT_METADATA}: {size} bytes exceeds the {MAX_CONFIG_BYTES}-byte limit")
    raw = source.get(ROOT_METADATA)
    if raw is None:
        raise StoreNotFoundError(f"not a treeshard store (no {ROOT_METADATA})")
    return raw


def parse_root(raw: bytes) -> dict[str, Any]:
    """The root ``zarr.json`` parsed and checked to be an object."""
    try:
        root = loads_json(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"{ROOT_METADATA}: not valid JSON ({exc})") from None
    if not isinstance(root, dict):
        raise ConfigError(f"{ROOT_METADATA}: expected an object")
    return root


class ChunkReader:
    """Read arrays of a treeshard store without zarr.

    >>> import treeshard, zarr, tempfile, os
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> path = os.path.join(tempfile.mkdtemp(), "m.zip")
    >>> treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), path)
    >>> reader = ChunkReader(path)
    >>> reader.read_array("nodes/tree_ptr", np.dtype("<i8"), (2,)).tolist()
    [0, 3]
    >>> reader.close()
    """

    def __init__(self, store: Any, storage_options: Any = None, *, check_chunks: bool = True) -> None:
        self.source, self.location = open_source(store, storage_options)
        self.store_argument = (store, storage_options)  # what a pickled lazy model refers to (treeshard.distributed)
        self.check_chunks = check_chunks
        #: The load options another process reopening this store must apply too
        #: (``treeshard.distributed``): the checks this reader makes, the key it checked.
        self.load_options: dict[str, Any] = {} if check_chunks else {"check_chunks": False}
        try:
            raw_root = read_root_bytes(self.source)
            self.root = parse_root(raw_root)
            #: Checks every chunk read against the store's digest record (None: unchecked).
            self.digests: ChunkDigests | None = self._read_digests(raw_root) if check_chunks else None
            required = getattr(self.source, "required_signer", None)
            if required is not None:  # a repository alias's policy: signed, before any chunk is read
                self.check_signature(required)
        except BaseException:
            self.source.close()
            raise
        self._lease: _Lease | None = _Lease(self.source)
        consolidated = self.root.get("consolidated_metadata")
        metadata = consolidated.get("metadata") if isinstance(consolidated, dict) else None
        self._metadata: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
        self._crc = crc32c()
        self._blosc: BloscDecoder | None = None
        # Chunks decoded for a partial read, kept briefly: consecutive range
        # reads (batches of trees) share their boundary chunks.
        self._partial_chunks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._partial_lock = threading.Lock()
        # Partial chunks a read in flight is decoding: concurrent reads that need them wait.
        self._decoding: dict[tuple[str, int], _Pending] = {}
        self._shard_indexes: dict[str, np.ndarray] = {}
        self._index_locks: dict[str, threading.Lock] = {}
        self._shard_tables: dict[str, _ShardTable] = {}  # fetch_chunks' chunk places and digests, by shard

    def _read_digests(self, raw_root: bytes) -> ChunkDigests | None:
        """The store's digest record, read once per open, with the root ``zarr.json`` (the
        config and every array's metadata) checked against it; None (and a warning) if the
        store has no record."""
        from .integrity import ChunkDigests
        from .storage.digest import stored_digest

        record = stored_digest(self.source)
        if record is None:
            attributes = self.root.get("attributes")
            if isinstance(attributes, dict) and "treeshard" in attributes:  # else not a model: its config check fails
                warnings.warn(UnverifiedStoreWarning(self.location), stacklevel=_caller_outside_package())
            return None
        digests = ChunkDigests(record)
        digests.check_root(raw_root)
        return digests

    def check_signature(self, public_key: Any) -> None:
        """Raise :class:`~treeshard.SignatureError` unless ``public_key`` signed the digest record
        this reader checks every read against (one small read: ``treeshard.sig``). The root was
        checked against the record when the store was opened: every byte read is then signed."""
        from .errors import SignatureError
        from .integrity import check_signature_document

        if self.digests is None:
            why = "check_chunks=False" if not self.check_chunks else f"the store has no {DIGEST_KEY}"
            raise SignatureError(f"cannot check the signature: {why} (every read must be checked against the signed record)")
        size = self.source.size(SIGNATURE_KEY)
        if size is not None and size > MAX_SIGNATURE_BYTES:
            raise SignatureError(f"{SIGNATURE_KEY}: {size} bytes exceeds the {MAX_SIGNATURE_BYTES}-byte limit")
        check_signature_document(None if size is None else self.source.get(SIGNATURE_KEY), self.digests.record, public_key)
        from .integrity import public_key_pem

        self.load_options = {**self.load_options, "public_key": public_key_pem(public_key)}

    def share(self) -> ChunkReader:
        """Another reader of this open source and its parsed metadata (no request, no reopening).

        Each reader is closed on its own; the source closes with the last of them.
        """
        with self._partial_lock:
            if self._lease is None:
                raise ValueError(f"{self.location}: the store is closed")
            self._lease.acquire()
            other = copy.copy(self)
            other._shard_indexes = dict(self._shard_indexes)  # checked indexes of the same bytes
        other._blosc = None
        other._partial_chunks = OrderedDict()
        other._partial_lock = threading.Lock()
        other._decoding = {}
        other._index_locks = {}
        other._shard_tables = {}
        return other

    @property
    def attributes(self) -> dict[str, Any]:
        attributes = self.root.get("attributes", {})
        if not isinstance(attributes, dict):
            raise ConfigError(f"{ROOT_METADATA}: attributes must be an object")
        return attributes

    def has_array(self, path: str) -> bool:
        meta = self._metadata.get(path)
        if meta is not None:
            return isinstance(meta, dict) and meta.get("node_type") == "array"
        return self.source.size(f"{path}/{ROOT_METADATA}") is not None

    def _array_metadata(self, path: str) -> dict[str, Any]:
        meta = self._metadata.get(path)
        if meta is None:
            key = f"{path}/{ROOT_METADATA}"
            size = self.source.size(key)
            if size is None:
                raise ArrayError(f"{path}: missing")
            if size > MAX_CONFIG_BYTES:
                raise ArrayError(f"{path}: metadata of {size} bytes is too large")
            raw = self.source.get(key)
            if raw is not None and self.digests is not None:
                self.digests.check_object(path, key, raw)
            try:
                meta = loads_json(raw)
            except (ValueError, TypeError) as exc:
                raise ArrayError(f"{path}: unreadable metadata ({exc})") from None
        if not isinstance(meta, dict) or meta.get("node_type") != "array":
            raise ArrayError(f"{path}: not an array")
        return meta

    def read_array(self, path: str, dtype: np.dtype, shape: tuple[int, ...] | None) -> np.ndarray:
        """The whole array at ``path``, checked against ``dtype`` and ``shape`` before decoding.

        Raises :class:`UnsupportedLayout` if the array uses zarr features outside
        treeshard's own layout (the caller refuses it).
        """
        layout = self.array_layout(path, dtype, shape)
        return self.read_rows(layout, 0, layout.shape[0] if layout.shape else 1)

    def array_layout(self, path: str, dtype: np.dtype, shape: tuple[int, ...] | None) -> ArrayLayout:
        """Parse and check the metadata of the array at ``path`` (no chunk is read)."""
        meta = self._array_metadata(path)
        declared_dtype = meta.get("data_type")
        if not isinstance(declared_dtype, str) or declared_dtype not in _DTYPES:
            raise ArrayError(f"{path}: dtype {str(declared_dtype)[:40]}, expected {dtype}")
        if np.dtype(_DTYPES[declared_dtype]) != dtype:
            raise ArrayError(f"{path}: dtype {declared_dtype}, expected {dtype}")
        array_shape = _int_tuple(path, "shape", meta.get("shape"))
        if shape is not None and array_shape != shape:
            raise ArrayError(f"{path}: shape {array_shape}, expected {shape}")
        if math.prod(array_shape) * dtype.itemsize > MAX_ARRAY_BYTES:
            raise ArrayError(f"{path}: declared size {array_shape} is too large")
        if meta.get("storage_transformers") not in (None, []):
            raise UnsupportedLayout(f"{path}: storage transformers")
        grid = meta.get("chunk_grid")
        if not (isinstance(grid, dict) and grid.get("name") == "regular" and isinstance(grid.get("configuration"), dict)):
            raise UnsupportedLayout(f"{path}: chunk grid")
        outer = _int_tuple(path, "chunk_shape", grid["configuration"].get("chunk_shape"))
        separator = _key_separator(path, meta.get("chunk_key_encoding"))
        fill = _fill_value(path, meta.get("fill_value"), dtype)
        codecs = meta.get("codecs")
        if not isinstance(codecs, list) or not codecs:
            raise ArrayError(f"{path}: no codecs")
        index_at_end: bool | None = None
        if len(codecs) == 1 and isinstance(codecs[0], dict) and codecs[0].get("name") == "sharding_indexed":
            config = codecs[0].get("configuration")
            if not isinstance(config, dict):
                raise ArrayError(f"{path}: sharding codec without configuration")
            inner = _int_tuple(path, "inner chunk_shape", config.get("chunk_shape"))
            inner_codecs = _parse_chunk_codecs(path, config.get("codecs"), dtype)
            index_codecs = _parse_chunk_codecs(path, config.get("index_codecs"), np.dtype("<u8"))
            if index_codecs != (False, True):
                raise UnsupportedLayout(f"{path}: shard index codecs")
            location = config.get("index_location", "end")
            if location not in ("end", "start"):
                raise ArrayError(f"{path}: index_location {str(location)[:20]!r}")
            index_at_end = location == "end"
        else:
            inner_codecs = _parse_chunk_codecs(path, codecs, dtype)
            inner = outer
        ndim = len(array_shape)
        if len(outer) != ndim or len(inner) != ndim or min(outer + inner, default=1) < 1:
            raise ArrayError(f"{path}: chunk shape {outer}/{inner} does not fit shape {array_shape}")
        if outer[1:] != array_shape[1:] or inner[1:] != array_shape[1:] or (ndim and outer[0] % inner[0]):
            raise UnsupportedLayout(f"{path}: chunks split a trailing axis")
        chunk_bytes = math.prod(inner) * dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise ArrayError(f"{path}: chunks of {chunk_bytes} bytes exceed the {MAX_CHUNK_BYTES}-byte limit")
        if ndim and outer[0] // inner[0] > MAX_CHUNKS_PER_SHARD:
            raise ArrayError(f"{path}: {outer[0] // inner[0]} chunks per shard exceeds {MAX_CHUNKS_PER_SHARD}")
        return ArrayLayout(
            path=path,
            dtype=dtype,
            shape=array_shape,
            shard_rows=outer[0] if ndim else 1,
            chunk_rows=inner[0] if ndim else 1,
            index_at_end=index_at_end,
            compressed=inner_codecs[0],
            fill=fill,
            key_prefix=f"{path}/c{separator}" if ndim else f"{path}/c",
            key_suffix="".join(f"{separator}0" for _ in range(ndim - 1)),
        )

    def read_rows(self, layout: ArrayLayout, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of an array, reading and checking only the chunks that hold them.

        Chunks are decoded in parallel threads (Blosc releases the GIL), straight
        into the result when a chunk lies wholly inside the range.
        """
        return self.read_many([(layout, start, stop)])[0]

    def read_many(self, requests: list[tuple[ArrayLayout, int, int]], *, outs: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Several ``(layout, start, stop)`` row ranges, all their chunks fetched and decoded concurrently
        (into ``outs``, C-contiguous arrays of each range's rows, dtype and shape, when given: a
        caller's reused buffers)."""
        if self._lease is None:  # its source may still be open for another reader: refuse all the same
            raise ValueError(f"{self.location}: the store is closed")
        if outs is not None and len(outs) != len(requests):
            raise ValueError("read_many: one output array per request")
        plan = _ReadPlan()
        try:
            outs = [
                self._plan(layout, start, stop, plan, None if outs is None else outs[i]) for i, (layout, start, stop) in enumerate(requests)
            ]
            self._fetch_and_decode(plan.reads)
        finally:
            self._release(plan.owned)
        for pending, read, copy_rows in plan.waits:
            pending.done.wait()
            if pending.chunk is not None:
                copy_rows(pending.chunk)
            else:  # the read decoding it failed: fetch it here
                self._fetch_run([read])
        return outs

    def fetch_chunks(self, requests: list[tuple[ArrayLayout, int, int, np.ndarray]]) -> FetchedChunks:
        """An eager load's reads of whole chunks ``first:stop`` (chunk numbers) of each ``(layout,
        first, stop, out)``, to decode into ``out`` (C-contiguous, at least ``(stop - first) *
        chunk_rows`` rows; rows past the array's end are the last chunk's padding), first half
        (:meth:`decode_fetched` is the second): every shard's run of chunks the requests need,
        read (one request each), not decoded. A thread that holds the GIL anyway fetches:
        each read releases it, and a thread that waits for it after each read waits as
        often for a thread busy in Python."""
        if self._lease is None:
            raise ValueError(f"{self.location}: the store is closed")
        native = None if getattr(self.source, "coalesce_reads", False) else native_functions()
        runs: list[_ChunkRun] | None = [] if native is not None else None
        for layout, first, stop, out in requests if runs is not None else ():  # every shard index first, as read_many plans
            planned = self._chunk_runs(layout, first, stop, out)
            if planned is None:
                runs = None
                break
            runs.extend(planned)
        jobs: list[tuple] | None = None if runs is None else []
        for run in runs or ():
            raw = self.source.get_range(run.key, run.offset, run.size)
            if raw is None or len(raw) != run.size:
                jobs = None
                break
            address = run.out.ctypes.data + run.position
            jobs.append((raw, run.starts, run.lengths, run.digests, address, run.out.nbytes - run.position, run.chunk_bytes, run.layout.compressed))  # type: ignore[union-attr]
        return FetchedChunks(requests, jobs, native)

    def decode_fetched(self, fetched: FetchedChunks, *, copies: tuple | None = None, weighted: tuple | None = None) -> bool:
        """The second half of :meth:`fetch_chunks`: one compiled, GIL-free call makes
        :meth:`read_many`'s checks (sha256 against the digest record, crc32c, Blosc header) and
        decodes every run (:func:`treeshard._kernels.decode_batch`); in the same call, first the
        ``copies`` (a caller's blocks to copy, see :func:`~treeshard._kernels.copy_blocks`), then
        the check of ``weighted`` (``(weights, counts)`` once decoded, see
        :func:`~treeshard._kernels.weighted_counts_valid`): returns whether those are valid (True
        without them). Where the compiled path does not apply (a source that coalesces requests,
        a library not found, a chunk missing, short or failing a check), the rows are read by
        :meth:`read_many`, which raises the error naming the problem."""
        from ._kernels import copy_blocks, decode_batch, weighted_counts_valid

        if fetched.jobs is not None:
            run, _, valid = decode_batch(fetched.jobs, fetched.native, copies, weighted)
            if run < 0:
                return bool(valid)
        elif copies is not None:
            copy_blocks(*copies)
        checked = []
        for layout, first, stop, out in fetched.requests:
            start, end = first * layout.chunk_rows, min(stop * layout.chunk_rows, layout.shape[0])
            checked.append((layout, start, end, out[: end - start]))
        self.read_many([request[:3] for request in checked], outs=[request[3] for request in checked])
        return weighted is None or bool(weighted_counts_valid(*weighted))

    def check_stored(self, requests: list[tuple[ArrayLayout, int, int]]) -> None:
        """Raise the :class:`~treeshard.IntegrityError` :meth:`read_many` raises if a shard or chunk
        of chunks ``first:stop`` of each ``(layout, first, stop)`` is missing (the shard indexes
        are read, no chunk): what a caller checks before it allocates for what a store declares."""
        for layout, first, stop in requests:
            if layout.index_at_end is None or not layout.shape:
                continue  # unsharded: each chunk is an object, found missing when read
            per_shard = layout.shard_rows // layout.chunk_rows
            for shard in range(first // per_shard, -(-stop // per_shard)):
                key = f"{layout.key_prefix}{shard}{layout.key_suffix}"
                table = self._shard_table(layout, key, per_shard)
                if table is None:
                    raise _missing_shard(layout, key)
                lo, hi = max(first, shard * per_shard) - shard * per_shard, min(stop, (shard + 1) * per_shard) - shard * per_shard
                missing = np.flatnonzero(~table.stored[lo:hi])
                if missing.size:
                    first_row = (shard * per_shard + lo + int(missing[0])) * layout.chunk_rows
                    raise _missing_chunk(layout, key, first_row)

    def _chunk_runs(self, layout: ArrayLayout, first: int, stop: int, out: np.ndarray) -> list[_ChunkRun] | None:
        """The reads of :meth:`fetch_chunks` for chunks ``first:stop`` of one array, a run per shard
        (None: the checked path reads them)."""
        chunk_bytes = layout.chunk_rows * math.prod(layout.shape[1:]) * layout.dtype.itemsize
        if (
            layout.index_at_end is None
            or not layout.shape
            or out.dtype != layout.dtype
            or not out.flags.c_contiguous
            or out.nbytes < (stop - first) * chunk_bytes
        ):
            return None
        per_shard = layout.shard_rows // layout.chunk_rows
        runs = []
        for shard in range(first // per_shard, -(-stop // per_shard)):
            key = f"{layout.key_prefix}{shard}{layout.key_suffix}"
            table = self._shard_table(layout, key, per_shard)
            lo, hi = max(first, shard * per_shard) - shard * per_shard, min(stop, (shard + 1) * per_shard) - shard * per_shard
            if table is None or not table.usable[lo:hi].all() or not table.adjacent[lo : hi - 1].all():
                return None
            offsets, lengths = table.offsets[lo:hi], table.lengths[lo:hi]
            low = int(offsets[0])
            size = int(offsets[-1] + lengths[-1]) - low
            position = (shard * per_shard + lo - first) * chunk_bytes
            runs.append(_ChunkRun(layout, key, low, size, offsets - low, lengths, table.digests[lo:hi], out, position, chunk_bytes))
        return runs

    def _shard_table(self, layout: ArrayLayout, key: str, per_shard: int) -> _ShardTable | None:
        """Where each inner chunk of shard ``key`` lies and the sha256 recorded for it (read once);
        None if the shard is missing (the checked path names it)."""
        table = self._shard_tables.get(key)
        if table is not None:
            return table
        index = self._read_shard_index(layout, key, per_shard)
        if index is None:
            return None
        filled = index[:, 0] != _EMPTY
        offsets, lengths = index[:, 0].astype(np.int64), index[:, 1].astype(np.int64)
        digests = np.zeros((0, 32), dtype=np.uint8)
        usable = filled
        if self.digests is not None:
            recorded = self.digests.inner_digests(layout.path, key) or []
            entries = [recorded[i] if i < len(recorded) else None for i in range(per_shard)]
            usable = filled & np.array([entry is not None and entry[0] == length for entry, length in zip(entries, lengths.tolist())], dtype=bool)
            joined = b"".join(bytes(32) if entry is None else bytes.fromhex(entry[1]) for entry in entries)
            digests = np.frombuffer(joined, dtype=np.uint8).reshape(per_shard, 32)
        adjacent = offsets[1:] == offsets[:-1] + lengths[:-1]
        table = _ShardTable(offsets, lengths, digests, filled, usable, adjacent)
        self._shard_tables[key] = table
        return table

    def _plan(self, layout: ArrayLayout, start: int, stop: int, plan: _ReadPlan, out: np.ndarray | None = None) -> np.ndarray:
        """The output array for rows ``start:stop`` (``out`` if given); its chunk reads go to ``plan``
        (shard indexes are read and checked here; rows of recently decoded partial chunks are copied at once)."""
        rows = layout.shape[0] if layout.shape else 1
        start, stop = max(0, start), min(rows, stop)
        if out is not None and (out.shape != (max(0, stop - start), *layout.shape[1:]) or out.dtype != layout.dtype or not out.flags.c_contiguous):
            raise ValueError(f"{layout.path}: output {out.dtype}{list(out.shape)} does not hold rows {start}:{stop}")
        if stop <= start:
            return np.empty((0, *layout.shape[1:]), dtype=layout.dtype)
        chunks = []
        per_shard = layout.shard_rows // layout.chunk_rows
        for shard in range(start // layout.shard_rows, -(-stop // layout.shard_rows)):
            key = f"{layout.key_prefix}{shard}{layout.key_suffix}" if layout.shape else layout.key_prefix
            shard_first = shard * layout.shard_rows
            first_chunk = (max(start, shard_first) - shard_first) // layout.chunk_rows
            last_chunk = min(per_shard, -(-(min(stop, shard_first + layout.shard_rows) - shard_first) // layout.chunk_rows))
            if layout.index_at_end is None:
                chunks.append((key, None, shard_first))
                continue
            index = self._read_shard_index(layout, key, per_shard)
            if index is None:
                raise _missing_shard(layout, key)
            for c in range(first_chunk, last_chunk):
                first_row = shard_first + c * layout.chunk_rows
                if int(index[c, 0]) == _EMPTY and int(index[c, 1]) == _EMPTY:
                    raise _missing_chunk(layout, key, first_row)
                chunks.append((key, (int(index[c, 0]), int(index[c, 1])), first_row))
        # Allocate only once every chunk of the range is known to be stored, so that
        # a store cannot make the reader allocate what it does not hold.
        try:
            if out is None:
                out = np.empty((stop - start, *layout.shape[1:]), dtype=layout.dtype)
        except MemoryError:
            raise ArrayError(f"{layout.path}: rows {start}:{stop} do not fit in memory") from None
        flat = out.reshape(stop - start, -1)
        if self._blosc is None and layout.compressed:
            self._blosc = BloscDecoder(threads=1)
        for key, extent, first_row in chunks:
            where = {"flat": flat, "first": first_row, "start": start, "stop": stop}
            index = (first_row % layout.shard_rows) // layout.chunk_rows
            read = _ChunkRead(layout.path, key, extent, functools.partial(self._decode_chunk, layout, **where), index)
            if extent is not None:
                copy_rows = functools.partial(self._copy_rows, layout, **where)
                name = (layout.path, first_row)
                lo, hi = _rows_taken(layout, first_row, start, stop)
                kept = layout.compressed and not (lo == first_row and hi - lo == layout.chunk_rows)  # see _decode_chunk
                with self._partial_lock:
                    chunk = self._partial_chunks.get(name)
                    pending = self._decoding.get(name) if chunk is None else None
                    if pending is not None:
                        pending.waiters += 1
                    elif chunk is None and kept:
                        self._decoding[name] = mine = _Pending()
                        plan.owned.append((name, mine))
                if chunk is not None:
                    copy_rows(chunk)
                    self._used_partial(name)
                    continue
                if pending is not None:
                    plan.waits.append((pending, read, copy_rows))
                    continue
            plan.reads.append(read)
        return out

    def _release(self, owned: list[tuple[tuple[str, int], _Pending]]) -> None:
        """Wake the reads waiting for partial chunks this read owned (those it failed to decode: fetched by them)."""
        with self._partial_lock:
            for name, pending in owned:
                if self._decoding.get(name) is pending:
                    del self._decoding[name]
        for _, pending in owned:
            pending.done.set()

    def _fetch_and_decode(self, reads: list[_ChunkRead]) -> None:
        """Fetch and decode every chunk: one job per request (where the source asks for it, a
        coalesced run of one shard's chunks), the jobs in parallel; the first error in plan order
        is raised."""
        by_key: dict[str, list[_ChunkRead]] = {}
        for read in reads:
            by_key.setdefault(read.key, []).append(read)
        coalesce = getattr(self.source, "coalesce_reads", False)
        jobs = []
        for key_reads in by_key.values():
            sharded = key_reads[0].extent is not None  # else each key is one whole chunk
            runs = _coalesce(key_reads) if sharded and coalesce else [[read] for read in key_reads]
            jobs.extend(functools.partial(self._fetch_run, run) for run in runs)
        if len(jobs) == 1:
            jobs[0]()
        else:
            for future in [_pool().submit(job) for job in jobs]:
                future.result()

    def _fetch_run(self, run: list[_ChunkRead]) -> None:
        """Read the chunks of ``run`` in one request, then check and decode each."""
        first = run[0]
        if first.extent is None:
            raw = self.source.get(first.key)
            if raw is None:
                raise IntegrityError(f"{first.path}: chunk {first.key} is missing (treeshard stores every chunk)")
            if self.digests is not None:
                self.digests.check_object(first.path, first.key, raw)
            first.decode(np.frombuffer(raw, dtype=np.uint8))
            return
        low = min(read.extent[0] for read in run)  # type: ignore[index]
        high = max(read.extent[0] + read.extent[1] for read in run)  # type: ignore[index]
        raw = self.source.get_range(first.key, low, high - low)
        if raw is None or len(raw) != high - low:
            raise IntegrityError(f"{first.path}: shard {first.key} is truncated")
        data = np.frombuffer(raw, dtype=np.uint8)
        for read in sorted(run, key=lambda read: read.index):  # in plan order: the same first error as uncoalesced reads
            offset, length = read.extent  # type: ignore[misc]
            chunk = data[offset - low : offset - low + length]
            if self.digests is not None:  # bound to its place before it is decoded
                self.digests.check_chunk(read.path, read.key, read.index, chunk)
            read.decode(chunk)

    def _read_shard_index(self, layout: ArrayLayout, key: str, n_chunks: int) -> np.ndarray | None:
        """The checked index of a shard (read once: one request for the last bytes)."""
        with self._partial_lock:
            cached = self._shard_indexes.get(key)
            key_lock = self._index_locks.setdefault(key, threading.Lock()) if cached is None else None
        if key_lock is None:
            return cached
        with key_lock:  # concurrent reads of one shard (read-ahead batches) fetch its index once
            with self._partial_lock:
                cached = self._shard_indexes.get(key)
            return cached if cached is not None else self._fetch_shard_index(layout, key, n_chunks)

    def _fetch_shard_index(self, layout: ArrayLayout, key: str, n_chunks: int) -> np.ndarray | None:
        index_bytes = 16 * n_chunks + 4
        if layout.index_at_end:
            found = self.source.get_suffix(key, index_bytes)
            if found is None:
                return None
            raw, size = found
        else:
            size = self.source.size(key)
            raw = self.source.get_range(key, 0, index_bytes) if size is not None else None
            if raw is None:
                return None
        if len(raw) != index_bytes or (size is not None and size < index_bytes):
            raise IntegrityError(f"{layout.path}: shard {key} is truncated")
        if size is None:  # unknown (remote): chunk reads that come back short are caught later
            size = 2**62
        data = np.frombuffer(raw, dtype=np.uint8)
        if self._crc(data[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise IntegrityError(f"{layout.path}: shard index checksum mismatch in {key}")
        index = data[:-4].view("<u8").reshape(n_chunks, 2)
        filled = index[:, 0] != _EMPTY
        if np.any(filled & (index[:, 1] == _EMPTY)) or np.any(~filled & (index[:, 1] != _EMPTY)):
            raise IntegrityError(f"{layout.path}: shard index of {key} is malformed")
        body_start, body_end = (0, size - index_bytes) if layout.index_at_end else (index_bytes, size)
        offsets, lengths = index[filled, 0], index[filled, 1]
        if np.any(offsets < body_start) or np.any(lengths > body_end) or np.any(offsets > body_end - lengths):
            raise IntegrityError(f"{layout.path}: shard index of {key} points outside the shard")
        with self._partial_lock:
            self._shard_indexes[key] = index
        return index

    def _keep_partial(self, path: str, first: int, chunk: np.ndarray) -> None:
        with self._partial_lock:
            pending = self._decoding.pop((path, first), None)
            self._partial_chunks[(path, first)] = chunk
            if pending is not None and pending.waiters:
                self._partial_chunks.move_to_end((path, first), last=False)  # used already: evicted first
            while len(self._partial_chunks) > PARTIAL_CHUNKS_KEPT:
                self._partial_chunks.popitem(last=False)
        if pending is not None:
            pending.chunk = chunk
            pending.done.set()

    def _used_partial(self, name: tuple[str, int]) -> None:
        """Evict a kept chunk first once a second range has used it: consecutive ranges
        (batches of trees) share a boundary chunk with the next one only."""
        with self._partial_lock:
            if name in self._partial_chunks:
                self._partial_chunks.move_to_end(name, last=False)

    def _copy_rows(self, layout: ArrayLayout, chunk: np.ndarray, flat: np.ndarray, first: int, start: int, stop: int) -> None:
        """Rows of the decoded chunk ``first`` that ``start:stop`` takes, into ``flat``."""
        lo, hi = _rows_taken(layout, first, start, stop)
        flat[lo - start : hi - start] = chunk[lo - first : hi - first]

    def _decode_chunk(self, layout: ArrayLayout, data: np.ndarray | None, flat: np.ndarray, first: int, start: int, stop: int) -> None:
        """Decode the chunk holding rows ``first:first + chunk_rows`` into ``flat`` (rows ``start:stop``)."""
        lo, hi = _rows_taken(layout, first, start, stop)
        target = flat[lo - start : hi - start]
        if data is None:
            target[...] = layout.fill
            return
        if len(data) < 4:
            raise IntegrityError(f"{layout.path}: a chunk of {len(data)} bytes is truncated")
        body = data[:-4]
        if self._crc(body) != int.from_bytes(data[-4:].tobytes(), "little"):
            raise IntegrityError(f"{layout.path}: chunk checksum mismatch at row {first}")
        width = flat.shape[1]
        whole = lo == first and hi - lo == layout.chunk_rows
        if layout.compressed:
            if whole:
                self._blosc.decode_into(layout.path, body, target)
            else:
                scratch = np.empty((layout.chunk_rows, width), dtype=flat.dtype)
                self._blosc.decode_into(layout.path, body, scratch)
                target[...] = scratch[lo - first : hi - first]
                self._keep_partial(layout.path, first, scratch)
            return
        expected = layout.chunk_rows * width * flat.dtype.itemsize
        if len(body) != expected:
            raise IntegrityError(f"{layout.path}: an uncompressed chunk holds {len(body)} bytes, expected {expected}")
        target[...] = body.view(flat.dtype).reshape(layout.chunk_rows, width)[lo - first : hi - first]

    def close(self) -> None:
        with self._partial_lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()


class _Lease:
    """How many readers share one open source; the last to close it closes the source."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self._readers = 1
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._readers += 1

    def release(self) -> None:
        with self._lock:
            self._readers -= 1
            last = self._readers == 0
        if last:
            self.source.close()


def _caller_outside_package() -> int:
    """The ``stacklevel`` of a warning issued by this function's caller that names the
    first frame outside treeshard (the user's call, whichever public function it went through)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _rows_taken(layout: ArrayLayout, first: int, start: int, stop: int) -> tuple[int, int]:
    """Rows ``lo:hi`` of the chunk starting at row ``first`` that the range ``start:stop`` takes."""
    return max(first, start), min(first + layout.chunk_rows, stop, layout.shape[0] if layout.shape else 1)


class _Pending:
    """A partial chunk that one read is decoding (``chunk`` set when done; None if that read failed)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.chunk: np.ndarray | None = None
        self.waiters = 0


@dataclass(frozen=True)
class _ChunkRead:
    """One stored chunk (or unsharded object) to fetch, and where its decoded rows go."""

    path: str  # the array, for error messages
    key: str
    extent: tuple[int, int] | None  # (offset, length) in the shard; None: the whole object
    decode: Callable[[np.ndarray], None]
    index: int = 0  # of the chunk in its shard (the digest record's order)


def _missing_shard(layout: ArrayLayout, key: str) -> IntegrityError:
    return IntegrityError(f"{layout.path}: shard {key} is missing (treeshard stores every chunk)")


def _missing_chunk(layout: ArrayLayout, key: str, first_row: int) -> IntegrityError:
    return IntegrityError(f"{layout.path}: chunk at row {first_row} is missing from shard {key}")


@dataclass(frozen=True)
class FetchedChunks:
    """What :meth:`ChunkReader.fetch_chunks` read for its requests: the jobs of
    :func:`treeshard._kernels.decode_batch` (None: the checked path reads them)."""

    requests: list[tuple[ArrayLayout, int, int, np.ndarray]]
    jobs: list[tuple] | None
    native: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class _ChunkRun:
    """Chunks of one shard that :meth:`ChunkReader.fetch_chunks` reads in one request (decoded in one call)."""

    layout: ArrayLayout
    key: str
    offset: int  # of the request in the shard
    size: int
    starts: np.ndarray  # each chunk's offset in the request
    lengths: np.ndarray
    digests: np.ndarray  # (n, 32) recorded sha256, or (0, 32): no record
    out: np.ndarray
    position: int  # byte offset in out of the first chunk
    chunk_bytes: int


@dataclass(frozen=True)
class _ShardTable:
    """Each inner chunk of a shard: place, recorded sha256 ((0, 32): no record), whether it is
    stored, whether the fast path can read it (stored, with a recorded digest of its length)
    and whether the next chunk follows it directly."""

    offsets: np.ndarray
    lengths: np.ndarray
    digests: np.ndarray
    stored: np.ndarray
    usable: np.ndarray
    adjacent: np.ndarray


@dataclass
class _ReadPlan:
    """What one ``read_many`` fetches, waits for (chunks other reads are decoding) and owns."""

    reads: list[_ChunkRead] = field(default_factory=list)
    waits: list[tuple[_Pending, _ChunkRead, Callable[[np.ndarray], None]]] = field(default_factory=list)
    owned: list[tuple[tuple[str, int], _Pending]] = field(default_factory=list)


def _coalesce(reads: list[_ChunkRead]) -> list[list[_ChunkRead]]:
    """Chunk reads of one shard grouped into runs, each fetched by one request: in offset order,
    a chunk joins the run before it when at most ``COALESCE_GAP_BYTES`` lie between them and the
    run stays within ``MAX_COALESCED_BYTES``."""
    runs: list[list[_ChunkRead]] = []
    run_start = run_end = 0
    for read in sorted(reads, key=lambda r: r.extent[0]):  # type: ignore[index]
        offset, length = read.extent  # type: ignore[misc]
        end = max(run_end, offset + length)
        if runs and offset - run_end <= COALESCE_GAP_BYTES and end - run_start <= MAX_COALESCED_BYTES:
            runs[-1].append(read)
            run_end = end
        else:
            runs.append([read])
            run_start, run_end = offset, offset + length
    return runs


def _int_tuple(path: str, what: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ArrayError(f"{path}: {what} must be a list of non-negative integers")
    return tuple(value)


def _key_separator(path: str, encoding: Any) -> str:
    if not isinstance(encoding, dict) or encoding.get("name") != "default":
        raise UnsupportedLayout(f"{path}: chunk key encoding")
    configuration = encoding.get("configuration", {})
    separator = configuration.get("separator", "/") if isinstance(configuration, dict) else None
    if separator not in ("/", "."):
        raise ArrayError(f"{path}: chunk key separator {str(separator)[:10]!r}")
    return separator


def _fill_value(path: str, value: Any, dtype: np.dtype) -> Any:
    if dtype.kind == "f" and value in ("NaN", "Infinity", "-Infinity"):
        return {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}[value]
    if isinstance(value, bool) and dtype.kind == "b":
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return np.array(value).astype(dtype, casting="same_kind" if dtype.kind == "f" else "unsafe")
        except (OverflowError, ValueError, TypeError):
            pass
    raise ArrayError(f"{path}: fill_value {str(value)[:40]!r} does not fit {dtype}")


def _parse_chunk_codecs(path: str, codecs: Any, dtype: np.dtype) -> tuple[bool, bool]:
    """``(blosc, crc32c)`` for the codec chains treeshard writes; anything else is unsupported."""
    if not isinstance(codecs, list) or not codecs or not all(isinstance(c, dict) for c in codecs):
        raise ArrayError(f"{path}: malformed codec list")
    names = [c.get("name") for c in codecs]
    if names[0] != "bytes":
        raise UnsupportedLayout(f"{path}: codecs {names}")
    configuration = codecs[0].get("configuration") or {}
    if not isinstance(configuration, dict):
        raise ArrayError(f"{path}: malformed bytes codec configuration")
    endian = configuration.get("endian", "little")
    if dtype.itemsize > 1 and endian != "little":
        raise UnsupportedLayout(f"{path}: {endian} endian")
    if names[1:] == ["blosc", "crc32c"]:
        return True, True
    if names[1:] == ["crc32c"]:
        return False, True
    raise UnsupportedLayout(f"{path}: codecs {names}")
