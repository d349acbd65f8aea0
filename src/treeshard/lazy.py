"""Trees on demand: read, check and build sklearn trees a batch at a time.

:class:`TreeSource` turns a store's node columns into sklearn ``Tree``
objects. Consecutive trees are streamed in batches whose reads end on chunk
boundaries (a tree cut by a boundary is carried into the next batch), so
every chunk is decoded once; a background thread reads, decodes and
validates the next batch while the caller builds and uses the current one.

:class:`StoredEstimators` is a sequence of sub-estimators read from a store,
what every load goes through: the ``estimators_`` list of a lazily loaded
forest (``len()`` needs no read, ``[i]`` builds one tree, kept in an LRU
cache, and iteration streams the trees), or, materialized, the trees of an
eager load.
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .columns import NODE_COLUMNS, NodeColumns, check_weighted_counts, decode_values_into
from .compat import leaf_counts_for
from .errors import ArrayError
from .reader import StoreReader
from .validate import check_trees_into

if TYPE_CHECKING:
    from .chunks import FetchedChunks

Factory = Callable[[Any, int], Any]  # (sklearn Tree, global tree index) -> sub-estimator
TREE_OVERHEAD_BYTES = 2048  # Python objects around each tree's arrays
DEFAULT_BATCH_BYTES = 32 * 1024 * 1024


@dataclass
class ReadTrees:
    """Node columns of consecutive trees, read and decompressed (values as stored)."""

    first: int  # global id of the first tree
    columns: NodeColumns


@dataclass(frozen=True)
class ChunkBatch:
    """Trees ``first:stop`` of an eager load, and the chunks decoded for them.

    The batch's buffer holds node rows from ``origin`` on: ``carry`` rows (``origin:origin +
    carry``, the head of a tree cut by the previous batch's last chunk) copied from the
    previous batch's buffer, then chunks ``chunk_first:chunk_stop`` decoded whole.
    """

    first: int
    stop: int
    chunk_first: int
    chunk_stop: int
    origin: int
    carry: int


@dataclass(frozen=True)
class PreparedBatch:
    """A batch's read, prepared by the caller (:meth:`TreeSource.prepare_batch`): its chunks'
    bytes, the rows it carries, the columns it will hold (not yet decoded)."""

    read: ReadTrees
    fetched: FetchedChunks
    copies: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (targets, sources, sizes)
    weighted: tuple[np.ndarray, np.ndarray] | None  # (weights, counts) to check once decoded


@dataclass
class BuiltTrees:
    """sklearn trees allocated for a batch, with views of their own node and value arrays."""

    first: int  # global id of the first tree
    trees: list[Any]
    nodes: list[np.ndarray]  # each tree's NODE_DTYPE records
    values: list[np.ndarray]  # each tree's values as (n_nodes, value_width)

    def items(self) -> Iterator[tuple[int, Any]]:
        return enumerate(self.trees, start=self.first)


class TreeSource:
    """Builds validated sklearn trees from a store's node columns."""

    def __init__(self, reader: StoreReader) -> None:
        from sklearn.tree._tree import NODE_DTYPE

        self.reader = reader
        self.layout = reader.config.trees
        self.tree_ptr = reader.tree_ptr
        self.node_counts = np.diff(self.tree_ptr)
        self.node_dtype = NODE_DTYPE
        # sklearn < 1.4 keeps classifier leaf values as weighted class counts.
        self.as_counts = leaf_counts_for(reader.config.estimator)
        # What one node costs once built: sklearn's node record and its values.
        self.node_bytes = NODE_DTYPE.itemsize + 8 * self.layout.value_width
        # What one node costs while being built, beside the tree it is built into: its stored columns.
        stored_value = (4 if self.layout.value_encoding == "weighted_counts" else 8) * self.layout.value_width
        self.build_node_bytes = sum(dt.itemsize for name, dt in NODE_COLUMNS.items() if name != "value") + stored_value
        self._zeros: tuple[np.ndarray, np.ndarray] | None = None

    def tree_bytes(self, indices: np.ndarray) -> np.ndarray:
        """In-memory size of the built trees at ``indices``."""
        return self.node_counts[indices] * self.node_bytes + TREE_OVERHEAD_BYTES

    # -- reading
    def _zero_state(self, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
        """Read-only zeroed node records and values for ``Tree.__setstate__`` of a tree of up to
        ``n_nodes`` nodes. Anonymous pages never written read as the kernel's shared zero page:
        sklearn's copy reads them from cache and they add nothing to the resident memory."""
        zeros = self._zeros
        if zeros is None or zeros[0].shape[0] < n_nodes:
            node_bytes = self.node_dtype.itemsize * n_nodes
            value_bytes = 8 * self.layout.value_width * n_nodes
            try:
                pages = mmap.mmap(-1, max(1, node_bytes + value_bytes))
            except (OSError, OverflowError):
                raise ArrayError(f"nodes: a tree of {n_nodes} nodes does not fit in memory") from None
            nodes = np.frombuffer(pages, dtype=self.node_dtype, count=n_nodes)
            values = np.frombuffer(pages, dtype=np.float64, count=n_nodes * self.layout.value_width, offset=node_bytes)
            values = values.reshape(n_nodes, self.layout.n_outputs, max(self.layout.n_classes))
            nodes.flags.writeable = values.flags.writeable = False
            self._zeros = zeros = (nodes, values)
        return zeros

    def batches(self, indices: np.ndarray, *, batch_nodes: int) -> list[tuple[int, int]]:
        """Split ``indices`` into ``(first, stop)`` runs of consecutive trees of about
        ``batch_nodes`` nodes, cut at the first tree boundary after a chunk boundary
        (the chunk a cut falls in is decoded once, and kept for the next batch)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return []
        ptr = self.tree_ptr
        rows = max(1, self.reader.chunk_rows)
        out = []
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        for run in np.split(indices, breaks):
            first, stop = int(run[0]), int(run[-1]) + 1
            while first < stop:
                target = int(ptr[first]) + batch_nodes
                target = -(-target // rows) * rows
                cut = int(np.searchsorted(ptr, target, side="left"))
                cut = min(stop, max(first + 1, cut))
                out.append((first, cut))
                first = cut
        return out

    def chunk_batches(self, indices: np.ndarray, *, batch_nodes: int) -> list[ChunkBatch]:
        """Split ``indices`` into batches that decode whole chunks (``batch_nodes`` rounded up
        to whole chunks, the first batch one chunk; at least one tree each): a batch takes the
        trees that end in its chunks, and a tree cut by its last chunk is carried into the next
        batch's buffer (every chunk is decoded once, whole, straight into a buffer)."""
        indices = np.asarray(indices, dtype=np.int64)
        ptr = self.tree_ptr
        rows = max(1, self.reader.chunk_rows)
        per_batch = max(1, -(-batch_nodes // rows))
        out: list[ChunkBatch] = []
        for run in np.split(indices, np.flatnonzero(np.diff(indices) != 1) + 1) if indices.size else []:
            first, end = int(run[0]), int(run[-1]) + 1
            chunk, last_chunk = int(ptr[first]) // rows, -(-int(ptr[end]) // rows)
            origin = chunk * rows
            while first < end:
                # The load's first batch is one chunk: the caller starts building trees sooner.
                chunk_stop = min(last_chunk, chunk + (per_batch if out else 1))
                while True:
                    end_row = min(chunk_stop * rows, int(ptr[end]))
                    stop = min(end, int(np.searchsorted(ptr, end_row, side="right")) - 1)
                    if stop > first:
                        break
                    chunk_stop = min(last_chunk, chunk_stop + per_batch)  # a tree longer than a batch
                origin = min(origin, int(ptr[first]))
                out.append(ChunkBatch(first, stop, chunk, chunk_stop, origin, chunk * rows - origin))
                first, chunk, origin = stop, chunk_stop, int(ptr[stop])
        return out

    def prepare_batch(
        self, batch: ChunkBatch, out: dict[str, np.ndarray], previous: tuple[ChunkBatch, dict[str, np.ndarray]] | None
    ) -> PreparedBatch:
        """Everything of ``batch``'s read that needs the GIL: its chunks' bytes read (see
        :meth:`~treeshard.chunks.ChunkReader.fetch_chunks`), the rows it carries from
        ``previous`` (the batch before it and its buffer) and the columns it will hold in ``out``
        (see :meth:`column_buffers`); :meth:`read_batch` does the rest in one GIL-free call.
        The caller's share: its thread holds the GIL anyway."""
        n_rows = (batch.chunk_stop - batch.chunk_first) * self.reader.chunk_rows
        window = {name: array[batch.carry : batch.carry + n_rows] for name, array in out.items()}
        fetched = self.reader.fetch_node_chunks(batch.chunk_first, batch.chunk_stop, window)
        copies = None
        if batch.carry:
            before, buffer = previous  # type: ignore[misc]
            at = batch.origin - before.origin
            copies = (
                np.array([array.ctypes.data for array in out.values()], dtype=np.uint64),
                np.array([buffer[name][at:].ctypes.data for name in out], dtype=np.uint64),
                np.array([array[: batch.carry].nbytes for array in out.values()], dtype=np.int64),
            )
        ptr = self.tree_ptr
        start, stop = int(ptr[batch.first]), int(ptr[batch.stop])
        columns = NodeColumns(
            tree_ptr=ptr[batch.first : batch.stop + 1] - start,
            **{name: array[start - batch.origin : stop - batch.origin] for name, array in out.items()},
        )
        weighted = (columns.weighted_n_node_samples, columns.value) if self.layout.value_encoding == "weighted_counts" else None
        return PreparedBatch(ReadTrees(batch.first, columns), fetched, copies, weighted)

    def read_batch(
        self,
        batch: ChunkBatch,
        out: dict[str, np.ndarray],
        previous: tuple[ChunkBatch, dict[str, np.ndarray]] | None,
        prepared: PreparedBatch | None = None,
    ) -> ReadTrees:
        """Decode ``batch``'s chunks into ``out`` (see :meth:`column_buffers`) after the rows it
        carries from ``previous`` (the batch before it and its buffer), and check its weighted
        counts, in one GIL-free call (``prepared`` by :meth:`prepare_batch`, else here): a
        reader thread's share. The caller's thread holds the GIL while it builds trees: each
        time a thread needs it back, it waits for it."""
        prepared = prepared if prepared is not None else self.prepare_batch(batch, out, previous)
        if not self.reader.decode_node_chunks(prepared.fetched, copies=prepared.copies, weighted=prepared.weighted):
            check_weighted_counts(prepared.read.columns.value, prepared.read.columns.weighted_n_node_samples)  # names the problem
        return prepared.read

    def prepare_range(self, first: int, stop: int, out: dict[str, np.ndarray] | None = None) -> ReadTrees:
        """Read and decompress the node columns of trees ``first:stop`` (into ``out``, see
        :meth:`column_buffers`, if given): a read-ahead thread's share."""
        if out is not None:
            rows = int(self.tree_ptr[stop] - self.tree_ptr[first])
            out = {name: array[:rows] for name, array in out.items()}
        return ReadTrees(first, self.reader.read_stored_nodes(first, stop, out=out))

    def column_buffers(self, n_nodes: int) -> dict[str, np.ndarray]:
        """Arrays that the stored node columns of up to ``n_nodes`` nodes decode into, reused
        from batch to batch (their pages are faulted in once per load, not once per batch)."""
        layout = self.layout
        shapes = {name: (n_nodes,) for name in NODE_COLUMNS}
        shapes["value"] = (n_nodes, layout.value_width)
        dtypes = {**NODE_COLUMNS, "value": self.reader.node_array("value").dtype}
        sizes = [-(-int(np.prod(shapes[name])) * dtypes[name].itemsize // 64) * 64 for name in NODE_COLUMNS]  # 64-byte aligned
        try:
            # One block: numpy asks for huge pages for blocks of 4 MB or more (far fewer faults).
            block = np.empty(sum(sizes), dtype=np.uint8)
        except MemoryError:
            raise ArrayError(f"nodes: a batch of {n_nodes} nodes does not fit in memory") from None
        out, offset = {}, 0
        for name, size in zip(NODE_COLUMNS, sizes, strict=True):
            out[name] = block[offset : offset + size].view(dtypes[name])[: int(np.prod(shapes[name]))].reshape(shapes[name])
            offset += size
        return out

    def allocate(self, first: int, stop: int) -> BuiltTrees:
        """sklearn ``Tree`` objects for trees ``first:stop``, sized by ``__setstate__`` from
        zeros (sklearn's copy, in the caller's thread: it holds the GIL), not yet filled."""
        from sklearn.tree._tree import Tree

        layout = self.layout
        n_classes = np.asarray(layout.n_classes, dtype=np.intp)
        counts = self.node_counts[first:stop].tolist()
        zero_nodes, zero_values = self._zero_state(max(counts))
        built = BuiltTrees(first, [], [], [])
        for count in counts:
            tree = Tree(layout.n_features, n_classes, layout.n_outputs)
            tree.__setstate__({"max_depth": 0, "node_count": count, "nodes": zero_nodes[:count], "values": zero_values[:count]})
            state = tree.__getstate__()  # views of the tree's own arrays
            values = state["values"].view()
            values.shape = (count, layout.value_width)  # raises rather than copy
            built.trees.append(tree)
            built.nodes.append(state["nodes"])
            built.values.append(values)
        return built

    def fill(self, read: ReadTrees, built: BuiltTrees) -> None:
        """Check the trees ``read`` and write them into ``built`` (the same trees): values,
        then node records and depths (:func:`~treeshard.validate.check_trees_into`). Numpy's
        division and the kernel release the GIL: a worker thread fills while the caller allocates."""
        from ._kernels import buffer_addresses, copy_rows_into, divide_counts_into

        layout = self.layout
        columns = read.columns
        stored, weights = columns.value, columns.weighted_n_node_samples
        direct = layout.value_encoding == "float64" or (layout.value_encoding == "class_counts" and self.as_counts)
        if direct or (layout.value_encoding == "weighted_counts" and not self.as_counts):  # one compiled pass
            addresses = np.empty(len(built.values), dtype=np.uint64)
            if not buffer_addresses(built.values, 8, None, addresses):
                raise ValueError("a tree's values are not a C-contiguous float64 array")
            if direct:
                copy_rows_into(columns.tree_ptr, stored, addresses)
            else:  # a classifier's fractions
                divide_counts_into(columns.tree_ptr, stored, weights, addresses)
        else:
            ptr = columns.tree_ptr.tolist()
            for k, values in enumerate(built.values):
                start, stop = ptr[k], ptr[k + 1]
                decode_values_into(
                    stored[start:stop], weights[start:stop], layout.value_encoding, values, n_classes=layout.n_classes, as_counts=self.as_counts
                )
        depths = check_trees_into(columns, layout, built.nodes, first_tree=read.first)
        for tree, depth in zip(built.trees, depths.tolist(), strict=True):
            tree.max_depth = depth

    def build(self, read: ReadTrees) -> Iterator[tuple[int, Any]]:
        """``(index, sklearn Tree)`` for each tree read, validated.

        Each ``Tree`` is sized by ``__setstate__`` from zeros, then the stored columns are
        checked and written straight into its own node and value arrays (the views its
        ``__getstate__`` returns): no copy of the model's records exists beside the trees.
        A tree is handed out only once every tree of ``read`` has passed
        :func:`~treeshard.validate.check_trees_into`.
        """
        built = self.allocate(read.first, read.first + read.columns.n_trees)
        self.fill(read, built)
        yield from built.items()

    def trees(
        self, indices: Sequence[int], *, batch_nodes: int = 1 << 18, workers: int = 2, whole_chunks: bool = False
    ) -> Iterator[tuple[int, Any]]:
        """``(index, Tree)`` for ``indices`` in order. With ``workers`` background threads,
        batches are read ahead, and each is checked and written into its trees by a worker
        while the caller allocates the trees of the next one (``workers=0``: all in the
        caller's thread). ``whole_chunks`` (an eager load, every tree once, in order): from a
        local source, one reader thread decodes whole chunks (:meth:`chunk_batches`) while the
        caller builds and fills the trees, see :meth:`_stream`. (Where each request is a round
        trip, the batches above keep the fewest requests.)"""
        if whole_chunks and workers >= 1 and not getattr(self.reader.source, "coalesce_reads", False) and self._same_chunks():
            yield from self._stream(self.chunk_batches(np.asarray(indices, dtype=np.int64), batch_nodes=batch_nodes))
            return
        ranges = self.batches(np.asarray(indices, dtype=np.int64), batch_nodes=batch_nodes)
        if workers < 1 or len(ranges) == 1:
            for first, stop in ranges:
                yield from self.build(self.prepare_range(first, stop))
            return
        yield from self._pipeline(ranges, workers)

    def _pipeline(self, ranges: list[tuple[int, int]], workers: int) -> Iterator[tuple[int, Any]]:
        # A batch's trees are allocated only once its read succeeded (every chunk it needs is
        # stored and checked: a store cannot make the load allocate what it does not hold),
        # and handed out only once filled. workers + 1 column buffers: reads run at most
        # ``workers`` batches ahead of the batch being filled.
        rows = max(int(self.tree_ptr[stop] - self.tree_ptr[first]) for first, stop in ranges)
        free: list[dict[str, np.ndarray]] = []
        n_buffers = 0
        reads: deque[tuple[Future, dict[str, np.ndarray]]] = deque()
        fills: deque[tuple[Future, dict[str, np.ndarray], BuiltTrees]] = deque()
        submitted = 0
        # Fills have a thread of their own: queued behind reads, they would hold the caller back.
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="treeshard-read-ahead") as pool,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="treeshard-fill") as filler,
        ):
            try:
                for _ in ranges:
                    while submitted < len(ranges) and (free or n_buffers <= workers):
                        if not free:
                            free.append(self.column_buffers(rows))
                            n_buffers += 1
                        buffer = free.pop()
                        reads.append((pool.submit(self.prepare_range, *ranges[submitted], buffer), buffer))
                        submitted += 1
                    future, buffer = reads.popleft()
                    read = future.result()
                    built = self.allocate(read.first, read.first + read.columns.n_trees)
                    fills.append((filler.submit(self.fill, read, built), buffer, built))
                    if len(fills) > 1:
                        done, buffer, built = fills.popleft()
                        done.result()
                        free.append(buffer)
                        yield from built.items()
                while fills:
                    done, buffer, built = fills.popleft()
                    done.result()
                    yield from built.items()
            finally:
                for future, *_ in (*reads, *fills):
                    future.cancel()

    def _same_chunks(self) -> bool:
        """Every node column is cut into chunks of the same rows (as treeshard writes them)."""
        rows = self.reader.chunk_rows
        return all(self.reader.node_array(name).chunk_rows == rows for name in NODE_COLUMNS)

    def _stream(self, batches: list[ChunkBatch]) -> Iterator[tuple[int, Any]]:
        # One reader thread decodes batches ahead: a batch's every chunk, the rows it carries
        # and its weighted-count check in one compiled, GIL-free call. The caller does all that
        # needs the GIL: it reads the bytes of the batch two ahead and prepares it (reads release
        # the GIL: in the reader, each would wait for the caller to hand it back, and the reader
        # would run only while the caller does not hold it), allocates each batch's trees
        # (sklearn's __setstate__ holds the GIL) and fills them (the kernels release it). Tried
        # and measured no faster: the fills in the reader too (one GIL-free call each, three
        # buffers), and more threads (they share the same two cores and wait for the GIL). Two
        # buffers: read k + 2 reuses read k's, submitted once fill k is done, and copies the
        # rows it carries from read k + 1's (done before it: one thread, in order). A batch's
        # trees are allocated only once its read succeeded, and handed out only once filled.
        if not batches:
            return
        rows = self.reader.chunk_rows
        capacity = max(batch.carry + (batch.chunk_stop - batch.chunk_first) * rows for batch in batches)
        # Buffers are sized by what the store declares: every chunk must be stored first.
        self.reader.check_node_chunks([(batch.chunk_first, batch.chunk_stop) for batch in batches])
        buffers = [self.column_buffers(capacity) for _ in range(min(2, len(batches)))]

        def prepare(k: int) -> PreparedBatch:
            return self.prepare_batch(batches[k], buffers[k % 2], (batches[k - 1], buffers[(k - 1) % 2]) if k else None)

        def read(k: int, prepared: PreparedBatch | None = None) -> ReadTrees:
            previous = (batches[k - 1], buffers[(k - 1) % 2]) if k else None
            return self.read_batch(batches[k], buffers[k % 2], previous, prepared)

        if len(batches) == 1:
            batch_read = read(0)
            built = self.allocate(batches[0].first, batches[0].stop)
            self.fill(batch_read, built)
            yield from built.items()
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="treeshard-read") as reader:
            reads = deque(reader.submit(read, k, prepare(k)) for k in range(2))
            try:
                for k in range(len(batches)):
                    batch_read = reads.popleft().result()
                    built = self.allocate(batch_read.first, batch_read.first + batch_read.columns.n_trees)
                    self.fill(batch_read, built)
                    if k + 2 < len(batches):
                        reads.append(reader.submit(read, k + 2, prepare(k + 2)))
                    yield from built.items()
            finally:
                for future in reads:
                    future.cancel()


class TreeCache:
    """A thread-safe LRU cache of built sub-estimators, bounded in bytes (``None``: unbounded)."""

    def __init__(self, capacity_bytes: int | None) -> None:
        self.capacity_bytes = capacity_bytes
        self._items: OrderedDict[int, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, index: int) -> Any | None:
        with self._lock:
            item = self._items.get(index)
            if item is None:
                return None
            self._items.move_to_end(index)
            return item[0]

    def put(self, index: int, estimator: Any, nbytes: int) -> None:
        if self.capacity_bytes is not None and nbytes > self.capacity_bytes:
            return
        with self._lock:
            if index in self._items:
                return
            self._items[index] = (estimator, nbytes)
            self._bytes += nbytes
            while self.capacity_bytes is not None and self._bytes > self.capacity_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def get_all(self, indices: np.ndarray) -> list[Any] | None:
        """Every estimator at ``indices``, taken under one lock; ``None`` if any is missing."""
        with self._lock:
            items = [self._items.get(int(i)) for i in indices]
            if any(item is None for item in items):
                return None
            for i in indices:
                self._items.move_to_end(int(i))
            return [item[0] for item in items]

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class EngineSlot:
    """The flat engine of one set of lazy trees: built once on first use, thread-safe.

    ``budget``: the bytes it may take (None: no limit); over it, it is never built.
    """

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget
        self._engine: Any = None
        self._refused = False
        self._lock = threading.Lock()

    def get(self, build: Any, estimated_bytes: int) -> Any:
        with self._lock:
            if self._engine is None and not self._refused:
                if self.budget is not None and estimated_bytes > self.budget:
                    self._refused = True
                else:
                    self._engine = build()
            return self._engine


class StoredEstimators(Sequence):
    """Sub-estimators read from a store: a lazy forest's ``estimators_``, or (with
    :meth:`materialize`) the trees of an eager load, streamed in batches.

    Parameters
    ----------
    source : TreeSource
    indices : array of int
        Global ids of the selected trees, in order.
    factory : callable
        ``factory(tree, index)`` wraps a sklearn ``Tree`` into a sub-estimator.
    cache : TreeCache
    batch_bytes : int
        About how many bytes one streamed batch occupies while it is built.
    workers : int
        Background threads that read batches ahead (0: none).
    whole_chunks : bool
        Iteration decodes whole chunks, one worker thread (an eager load: every tree built
        once, in order); see :meth:`TreeSource.trees`.
    engine_budget : int or None
        Bytes the flat engine (:mod:`treeshard.dispatch`) may take; None: no limit.
    reducer : callable or None
        ``reducer(self)`` gives what ``__reduce__`` returns (the loader's calls
        :func:`treeshard.distributed.reduce_lazy_estimators` with its opener);
        None: pickle the trees by value.
    """

    def __init__(
        self,
        source: TreeSource,
        indices: np.ndarray,
        factory: Factory,
        cache: TreeCache,
        *,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        workers: int = 2,
        whole_chunks: bool = False,
        engine_budget: int | None = None,
        reducer: Callable[[StoredEstimators], tuple[Any, tuple]] | None = None,
    ) -> None:
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.factory = factory
        self.cache = cache
        self.batch_bytes = batch_bytes
        self.workers = workers
        self.whole_chunks = whole_chunks
        self.engine = EngineSlot(engine_budget)
        self.reducer = reducer
        self._appended: list[Any] = []  # estimators added by a warm-start fit

    def __len__(self) -> int:
        return len(self.indices) + len(self._appended)

    def extend(self, estimators: Any) -> None:
        """Append fitted estimators (what sklearn's ``warm_start`` does to a forest)."""
        self._appended.extend(estimators)

    def __iadd__(self, estimators: Any) -> StoredEstimators:
        """``estimators_ += new``: what a warm-start fit of a bagging ensemble (IsolationForest) does."""
        self.extend(estimators)
        return self

    def __getitem__(self, item: int | slice) -> Any:  # type: ignore[override]
        if isinstance(item, slice):
            if self._appended:
                return [self[i] for i in range(len(self))[item]]
            return StoredEstimators(
                self.source, self.indices[item], self.factory, self.cache, batch_bytes=self.batch_bytes, workers=self.workers,
                whole_chunks=self.whole_chunks,
                engine_budget=self.engine.budget,
                reducer=self.reducer,
            )
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"estimators_ indices must be integers or slices, not {type(item).__name__}")
        n = len(self)
        if not -n <= item < n:
            raise IndexError(f"tree index {item} out of range for {n} trees")
        item = int(item) % n
        if item >= len(self.indices):
            return self._appended[item - len(self.indices)]
        index = int(self.indices[item])
        cached = self.cache.get(index)
        if cached is not None:
            return cached
        ((_, tree),) = self.source.trees([index], workers=0)
        return self._wrap(index, tree)

    def _wrap(self, index: int, tree: Any) -> Any:
        estimator = self.factory(tree, index)
        if self.cache.capacity_bytes != 0:  # an eager load's cache keeps nothing: no size to compute
            self.cache.put(index, estimator, int(self.source.tree_bytes(np.array([index]))[0]))
        return estimator

    def __iter__(self) -> Iterator[Any]:
        cached = self.cache.get_all(self.indices)
        if cached is not None:
            yield from cached
        else:
            batch_nodes = max(1, self.batch_bytes // self.source.build_node_bytes)
            for index, tree in self.source.trees(
                self.indices, batch_nodes=batch_nodes, workers=self.workers, whole_chunks=self.whole_chunks
            ):
                cached = self.cache.get(index)
                yield cached if cached is not None else self._wrap(index, tree)
        yield from list(self._appended)

    def flat_engine(self) -> Any:
        """The flat :class:`~treeshard.Predictor` over the selected trees, built on first
        use and kept (what :mod:`treeshard.dispatch` scores with); None if it would not
        fit ``engine_budget``."""
        from .predictor import Predictor

        def build() -> Predictor:
            engine = Predictor.for_trees(self.source.reader, self.indices)
            engine.n_jobs = None  # as an unset forest n_jobs; the dispatch scores with the forest's
            return engine

        return self.engine.get(build, self.engine_bytes())

    def engine_bytes(self) -> int:
        """About the most memory building the flat engine takes (twice what it keeps:
        the decoded columns exist alongside its own arrays for a moment)."""
        layout = self.source.layout
        value = 4 * layout.value_width + 8 if layout.value_encoding == "weighted_counts" else 8 * layout.value_width
        nodes = int(self.source.node_counts[self.indices].sum())
        # children 2 x 4, (feature, threshold) 8, NaN side 1, value; one row's 8-byte record (_kernels.FewRows)
        return 2 * nodes * (25 + value)

    def materialize(self) -> list[Any]:
        """Every selected sub-estimator, as a plain list."""
        return list(self)

    def __reduce__(self) -> tuple[Any, tuple]:
        """Pickle as a reference to the store (URL or path, options, tree ids), not as trees;
        see :mod:`treeshard.distributed`."""
        if self.reducer is None:
            return list, (self.materialize(),)
        return self.reducer(self)

    def __repr__(self) -> str:
        return f"<StoredEstimators: {len(self)} trees, {len(self.cache)} in memory>"
