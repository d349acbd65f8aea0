"""Traversal: the node table the compiled kernels walk, and the threads that run them.

Every node is laid out as one 16-byte record (the threshold rounded down to
float32, the feature, the child offsets) and scored by treeshard's compiled
traversal (:mod:`treeshard._kernels`): without the GIL, a block of rows at a
time through each tree in turn, row blocks spread over ``n_jobs`` threads from
a pool kept for the process. Shallow models are also padded to perfect trees
(the complete layout) and walked level by level.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..columns import NodeColumns

#: Rows the traversal takes through one tree before moving to the next (the tree stays in cache).
BLOCK_ROWS = 1 << 16
#: Tree walks the traversal interleaves (their memory loads overlap).
GROUP = 16
#: Models no deeper than this are walked in lockstep, every walk taking max-depth steps (fewer
#: instructions per step); deeper trees hand a finished walk's slot to the next one.
LEVEL_WALK_DEPTH = 8
#: Rows the complete-layout traversal takes through every tree at a time.
COMPLETE_BLOCK_ROWS = 512
#: Leaf ids a sum buffers before adding values: how many trees a small batch walks at once.
BUFFER_PAIRS = 1 << 14
#: A batch is spread over threads only above this many (row, tree) pairs per thread: below, starting
#: a thread costs more than it saves.
PAIRS_PER_THREAD = 1 << 14


class Traversal:
    """The traversal half of :class:`~treeshard.Predictor`: the packed node table and the kernel calls.

    Set up by :meth:`_setup_trees` from validated node columns (with ``_counts`` and
    ``_weights`` set first: the leaf counts and weights of a ``weighted_counts`` store, or None).
    """

    n_jobs: int | None = -1
    _counts: np.ndarray | None
    _weights: np.ndarray | None
    _depths: np.ndarray

    def _setup_trees(self, cols: NodeColumns, depths: np.ndarray | None = None) -> None:
        """Lay out validated ``cols`` for the traversal; ``depths``: each tree's depth (default:
        ``_depths``, those found when the columns were read)."""
        depths = self._depths = self._depths if depths is None else depths
        # Shallow trees are walked level by level, every row taking exactly max-depth steps.
        max_depth = int(depths.max())
        self._walk_depth = max_depth if max_depth <= LEVEL_WALK_DEPTH else 0
        # One 16-byte record per node, what the compiled traversal reads: the threshold rounded
        # down to float32 (as bits), the feature (0 at a leaf: a readable column) and the
        # child offsets (0 at a leaf, which marks it).
        # (_round_down_to_float32 is the numpy statement of the rounding.)
        from .._kernels import pack_nodes

        self._nodes = np.empty((cols.n_nodes, 4), dtype=np.int32)
        self._nan_right = np.empty(cols.n_nodes, dtype=np.uint8)
        pack_nodes(cols.threshold, cols.feature, cols.left_child_offset, cols.right_child_offset, cols.missing_go_to_left, self._nodes, self._nan_right)
        self._roots = np.ascontiguousarray(cols.tree_ptr[:-1], dtype=np.int64)
        self._value_width = cols.value.shape[1]
        if self._counts is None:
            self._value = np.ascontiguousarray(cols.value)
        else:
            self._value = np.empty((0, self._value_width))  # the traversal divides counts by weights at the leaf
            self._counts = np.ascontiguousarray(self._counts, dtype=np.int32)
            self._weights = np.ascontiguousarray(self._weights, dtype=np.float64)
        # Padding to perfect trees costs memory: not where it would swell the leaf values past 4x.
        padded_leaves = len(self._roots) << max(3, self._walk_depth)
        self._complete = _complete_layout(self) if self._walk_depth and padded_leaves <= max(4 * cols.n_nodes, 1 << 16) else None

    def _node_values(self, nodes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float64 values of ``nodes`` (any shape), shape ``nodes.shape + (value_width,)``."""
        if self._counts is None:
            return np.take(self._value, nodes, axis=0, out=out)
        return np.divide(np.take(self._counts, nodes, axis=0), np.take(self._weights, nodes)[..., None], out=out)


    def _threads(self, n_rows: int) -> int:
        """Threads to score ``n_rows`` rows with: ``n_jobs``, fewer for small batches."""
        n_jobs = self.n_jobs
        if n_jobs is None:
            return 1
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
            raise ValueError(f"n_jobs must be a nonzero integer or None, got {n_jobs!r}")
        by_size = n_rows * len(self._roots) // PAIRS_PER_THREAD
        if by_size < 2:  # one thread whatever n_jobs says (asking the OS for the cores costs microseconds)
            return 1
        wanted = int(n_jobs) if n_jobs > 0 else max(1, available_cores() + 1 + int(n_jobs))  # as joblib
        return max(1, min(wanted, by_size, n_rows))

    def _parallel(self, kernel: Any, n_rows: int) -> None:
        """Run ``kernel(start, stop)`` over rows ``0:n_rows``, split over :meth:`_threads` threads
        (the kernels release the GIL); the calling thread takes the first part."""
        threads = self._threads(n_rows)
        if threads == 1:
            kernel(0, n_rows)
            return
        bounds = [n_rows * i // threads for i in range(threads + 1)]
        futures = [_pool(threads - 1).submit(kernel, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
        try:
            kernel(bounds[0], bounds[1])
        finally:
            for future in futures:
                future.result()

    def _leaves(self, X32: np.ndarray) -> np.ndarray:
        """Global leaf ids of the rows of a dense float32 ``X32`` in every tree, (n_trees, n_rows)."""
        kernels = _kernels()
        traverse_leaves, traverse_complete_leaves = kernels.traverse_leaves, kernels.traverse_complete_leaves
        out = np.empty((len(self._roots), X32.shape[0]), dtype=np.int64)
        if self._complete is not None:  # shallow trees: the complete layout (treeshard._kernels.pack_complete)
            slots, ids, _, depth = self._complete
            self._parallel(lambda start, stop: traverse_complete_leaves(X32, slots, ids, depth, out, start, stop, COMPLETE_BLOCK_ROWS), X32.shape[0])
            return out
        nodes, nan_right, roots, depth = self._nodes, self._nan_right, self._roots, self._walk_depth
        self._parallel(lambda start, stop: traverse_leaves(X32, nodes, nan_right, roots, out, start, stop, BLOCK_ROWS, GROUP, depth), X32.shape[0])
        return out

    def _sum(self, X32: np.ndarray, initial: np.ndarray | None, *, scale: float, k: int) -> np.ndarray:
        """``initial`` (None: zeros) plus, tree by tree in order, ``scale`` times each row's leaf
        values; tree ``t`` adds to columns ``(t % k) * width : (t % k + 1) * width``. (n_rows, k * width)."""
        kernels = _kernels()
        if initial is None:
            out = np.zeros((X32.shape[0], k * self._value_width), dtype=np.float64)
        else:
            out = np.empty((X32.shape[0], k * self._value_width), dtype=np.float64)
            out[:] = initial
        nodes, nan_right, roots, value, depth = self._nodes, self._nan_right, self._roots, self._value, self._walk_depth
        counts = self._counts if self._counts is not None else _NO_COUNTS
        weights = self._weights if self._weights is not None else _NO_WEIGHTS

        if self._complete is not None:
            slots, _, leaf_values, depth = self._complete
            self._parallel(lambda start, stop: kernels.traverse_complete_sum(X32, slots, leaf_values, depth, scale, k, out, start, stop, COMPLETE_BLOCK_ROWS), X32.shape[0])
            return out

        def kernel(start: int, stop: int) -> None:
            kernels.traverse_sum(X32, nodes, nan_right, roots, value, counts, weights, scale, k, out, start, stop, BLOCK_ROWS, GROUP, depth, BUFFER_PAIRS)

        self._parallel(kernel, X32.shape[0])
        return out

    def mean_leaf_depth(self) -> float:
        """Average depth of the leaves over all trees (a root leaf has depth 0): about the
        number of steps a row takes down each tree, i.e. what scoring one row costs.

        >>> import treeshard, zarr
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> store = zarr.storage.MemoryStore()
        >>> treeshard.save(DecisionTreeRegressor().fit([[0], [1], [2]], [0, 1, 2]), store)
        >>> treeshard.Predictor(store).mean_leaf_depth()  # leaves at depths 1, 2 and 2
        1.6666666666666667
        """
        nodes = self._nodes
        frontier, depth, total, leaves = self._roots, 0, 0, 0
        while frontier.size:
            is_leaf = nodes[frontier, 2] == 0
            n_leaves = int(np.count_nonzero(is_leaf))
            total, leaves = total + depth * n_leaves, leaves + n_leaves
            internal = frontier[~is_leaf]
            frontier = np.concatenate([internal + nodes[internal, 2], internal + nodes[internal, 3]])
            depth += 1
        return total / leaves



def _complete_layout(predictor: Traversal) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Shallow trees padded to perfect trees (``treeshard._kernels.pack_complete``): splits,
    leaf ids, leaf values and the depth, at least 3 (the depth of the comparison path)."""
    from .._kernels import pack_complete

    depth = max(3, predictor._walk_depth)
    n_trees, leaves = len(predictor._roots), 1 << depth
    slots = np.empty((n_trees, 2 * (leaves - 1)), dtype=np.uint32)
    ids = np.empty((n_trees, leaves), dtype=np.int64)
    values = np.empty((n_trees, leaves, predictor._value_width))
    counts = predictor._counts if predictor._counts is not None else _NO_COUNTS
    weights = predictor._weights if predictor._weights is not None else _NO_WEIGHTS
    pack_complete(predictor._nodes, predictor._nan_right, predictor._roots, depth, predictor._value, counts, weights, slots, ids, values)
    return slots, ids, values, depth


def _round_down_to_float32(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 not above each threshold: ``x <= t`` iff ``x <= result`` for float32 ``x``.

    >>> _round_down_to_float32(np.array([0.1, 1e39, -1e39])).tolist()  # 0.1 rounds up in float32
    [0.09999999403953552, 3.4028234663852886e+38, -inf]
    """
    with np.errstate(over="ignore"):
        rounded = threshold.astype(np.float32)
    # Step the rounded-up ones one float32 down, on the bits (much faster than np.nextafter):
    # positive floats go down by decrementing their bits, negative ones by incrementing;
    # -0.0 + 1 is the smallest negative float32, and +0.0 is fixed by hand.
    bits = rounded.view(np.int32)
    up = (rounded > threshold).view(np.int8)
    step = bits >> 31  # -1 for negative floats, 0 for positive
    step += step
    step += 1  # -1 or +1
    step *= up
    bits -= step
    plus_zero = up.view(bool) & (bits == -1)  # was +0.0, stepped to an invalid -1: make it -min_subnormal
    if plus_zero.any():
        bits[plus_zero] = np.int32(-(2**31) + 1)
    return rounded


def _kernels() -> Any:
    """:mod:`treeshard._kernels`, imported on first use (not by ``import treeshard``) and then
    kept: an import statement per call costs about a microsecond of one row's latency."""
    global _KERNELS
    if _KERNELS is None:
        from .. import _kernels as kernels

        _KERNELS = kernels
    return _KERNELS


_KERNELS: Any = None
_NO_COUNTS = np.empty((0, 0), dtype=np.int32)
_NO_WEIGHTS = np.empty(0, dtype=np.float64)
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _forget_pools() -> None:
    """In a forked child: the parent's pool threads do not exist there, and a pool that
    believes it has idle threads would never run a task. The child starts its own."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    count = getattr(os, "process_cpu_count", None)  # Python 3.13
    if count is not None:
        return count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool of ``workers`` threads, created on first use and kept for the process."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="treeshard-predict")
        return pool


