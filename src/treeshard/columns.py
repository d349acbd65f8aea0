"""Node columns: sklearn trees <-> one flat array per node field.

All trees of a model are concatenated; ``tree_ptr`` (``n_trees + 1`` offsets)
says where each starts, as in CSR matrices: tree *i* is the node range
``tree_ptr[i]:tree_ptr[i + 1]``. Child ids are stored as offsets from the
node (``child - node``, 0 for a leaf), which compresses far better than
absolute ids and makes "children come after their parent" a simple check.

Nothing here reads a store; :mod:`treeshard.validate` checks columns and
lays them out as sklearn node records, and :mod:`treeshard.lazy` builds
sklearn ``Tree`` objects from those.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ArrayError, UnsupportedEstimatorError
from .record import TreeLayout

#: Node columns of format version 1 and their dtypes; ``value`` is 2-D
#: (n_nodes, n_outputs * max_n_classes).
NODE_COLUMNS: dict[str, np.dtype] = {
    "left_child_offset": np.dtype("<i4"),
    "right_child_offset": np.dtype("<i4"),
    "feature": np.dtype("<i4"),
    "threshold": np.dtype("<f8"),
    "impurity": np.dtype("<f8"),
    "n_node_samples": np.dtype("<i8"),
    "weighted_n_node_samples": np.dtype("<f8"),
    "missing_go_to_left": np.dtype("u1"),
    "value": np.dtype("<f8"),
}
TREE_PTR_DTYPE = np.dtype("<i8")
WEIGHTED_COUNTS_DTYPE = np.dtype("<i4")  # ``value`` stored with value_encoding="weighted_counts"
LEAF = -1  # sklearn's TREE_LEAF
UNDEFINED = -2  # sklearn's TREE_UNDEFINED: feature and threshold of a leaf
MAX_TREE_NODES = 2**31 - 1


@dataclass
class NodeColumns:
    """The node arrays of a range of trees, as stored (offsets, not absolute ids)."""

    tree_ptr: np.ndarray  # local: starts at 0
    left_child_offset: np.ndarray
    right_child_offset: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    impurity: np.ndarray
    n_node_samples: np.ndarray
    weighted_n_node_samples: np.ndarray
    missing_go_to_left: np.ndarray
    value: np.ndarray

    @property
    def n_trees(self) -> int:
        return len(self.tree_ptr) - 1

    @property
    def n_nodes(self) -> int:
        return int(self.tree_ptr[-1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The node columns by stored name (``tree_ptr`` excluded)."""
        return {name: getattr(self, name) for name in NODE_COLUMNS}


def to_columns(trees: Sequence, layout: TreeLayout) -> NodeColumns:
    """Concatenate sklearn ``Tree`` objects into :class:`NodeColumns`.

    >>> from sklearn.tree import DecisionTreeRegressor
    >>> t = DecisionTreeRegressor(max_depth=1).fit([[0], [1]], [0, 1]).tree_
    >>> layout = TreeLayout(n_trees=1, n_nodes=3, n_features=1, n_outputs=1, n_classes=(1,))
    >>> to_columns([t], layout).left_child_offset.tolist()
    [1, 0, 0]
    """
    counts = np.fromiter((t.node_count for t in trees), dtype=np.int64, count=len(trees))
    if counts.size and counts.max() > MAX_TREE_NODES:
        raise UnsupportedEstimatorError(f"a tree has {counts.max()} nodes; at most {MAX_TREE_NODES} are supported")
    tree_ptr = np.zeros(len(trees) + 1, dtype=TREE_PTR_DTYPE)
    np.cumsum(counts, out=tree_ptr[1:])
    n = int(tree_ptr[-1])
    cols = NodeColumns(
        tree_ptr=tree_ptr,
        value=np.empty((n, layout.value_width), dtype=NODE_COLUMNS["value"]),
        **{name: np.empty(n, dtype=dt) for name, dt in NODE_COLUMNS.items() if name != "value"},
    )
    for i, tree in enumerate(trees):
        start, stop = int(tree_ptr[i]), int(tree_ptr[i + 1])
        # Tree's properties are views of its node array (``__getstate__`` would copy it).
        local = np.arange(stop - start, dtype=np.int32)
        for name, child in (("left_child_offset", tree.children_left), ("right_child_offset", tree.children_right)):
            out = getattr(cols, name)[start:stop]
            np.subtract(child, local, out=out, casting="unsafe")
            out[child == LEAF] = 0
        for name in ("feature", "threshold", "impurity", "n_node_samples", "weighted_n_node_samples"):
            getattr(cols, name)[start:stop] = getattr(tree, name)
        missing = getattr(tree, "missing_go_to_left", None)  # sklearn < 1.3: nothing goes left
        cols.missing_go_to_left[start:stop] = 0 if missing is None else missing
        cols.value[start:stop] = tree.value.reshape(stop - start, -1)
    return cols


def encode_values(cols: NodeColumns) -> tuple[np.ndarray, str]:
    """``(stored_array, value_encoding)`` for ``cols.value``.

    Classifier values are fractions of weighted class counts; when the counts
    are integers (no fractional sample or class weights), storing them as
    int32 compresses about 5x better. The encoding is used only if decoding
    reproduces every value bit for bit; otherwise values are stored as is.
    """
    value, weight = cols.value, cols.weighted_n_node_samples[:, None]
    if value.size == 0 or not np.all(weight > 0) or not np.all(np.isfinite(value)):
        return value, "float64"
    counts = np.multiply(value, weight)
    np.rint(counts, out=counts)
    if counts.min() < 0 or counts.max() > np.iinfo(np.int32).max:
        return value, "float64"
    stored = counts.astype(WEIGHTED_COUNTS_DTYPE)
    # Compare bits, not values: -0.0 == 0.0, but an int32 count cannot keep the sign of a zero.
    decoded = np.divide(stored, weight, out=counts)  # what decode_values computes (weights checked > 0 above)
    if not np.array_equal(decoded.view(np.uint64), np.ascontiguousarray(value, dtype=np.float64).view(np.uint64)):
        return value, "float64"
    return stored, "weighted_counts"


def decode_values(
    stored: np.ndarray,
    weighted_n_node_samples: np.ndarray,
    encoding: str,
    *,
    n_classes: Sequence[int] = (),
    as_counts: bool = False,
) -> np.ndarray:
    """Inverse of :func:`encode_values`: float64 node values.

    Weighted counts are only ever written for nodes of positive weight and
    non-negative counts; anything else is a malformed store
    (:class:`~treeshard.ArrayError`), not a division by zero.

    Classifier values are fractions (sklearn 1.4+) unless ``as_counts``
    (sklearn < 1.4 keeps weighted class counts): ``"class_counts"`` values
    (written under sklearn < 1.4) are then divided by their row sum per output
    (``n_classes``: classes per output), as sklearn < 1.4 predicts them, and
    ``"weighted_counts"`` are returned as counts.
    """
    if encoding == "weighted_counts":
        check_weighted_counts(stored, weighted_n_node_samples)
        if as_counts:
            return stored.astype(np.float64)
        return stored / np.asarray(weighted_n_node_samples)[:, None]
    if encoding == "class_counts" and not as_counts:
        return counts_to_fractions(stored, n_classes)
    return stored


def decode_values_into(
    stored: np.ndarray,
    weighted_n_node_samples: np.ndarray,
    encoding: str,
    out: np.ndarray,
    *,
    n_classes: Sequence[int] = (),
    as_counts: bool = False,
) -> None:
    """:func:`decode_values` written into ``out`` (float64, the shape of ``stored``; a tree's
    own value array), the same bits; weighted counts must have passed
    :func:`check_weighted_counts` already (a load checks a whole range at once).

    >>> out = np.empty((2, 2))
    >>> decode_values_into(np.array([[3, 1], [0, 2]], dtype=np.int32), np.array([4.0, 2.0]), "weighted_counts", out)
    >>> out.tolist()
    [[0.75, 0.25], [0.0, 1.0]]
    """
    if encoding == "weighted_counts" and not as_counts:
        np.divide(stored, np.asarray(weighted_n_node_samples)[:, None], out=out)
    elif encoding == "class_counts" and not as_counts:
        counts_to_fractions(stored, n_classes, out=out)
    else:
        out[...] = stored


def counts_to_fractions(counts: np.ndarray, n_classes: Sequence[int], *, out: np.ndarray | None = None) -> np.ndarray:
    """Weighted class counts divided by their sum per output, a zero sum taken as 1:
    exactly what sklearn < 1.4 computes in ``predict_proba`` (each output's sum over
    its own classes, numpy's ``sum(axis=1)``); into ``out`` if given."""
    n_outputs = len(n_classes)
    width = counts.shape[1] // n_outputs if n_outputs else 0
    if out is None:
        out = np.zeros(counts.shape, dtype=np.float64)
    else:
        out[...] = 0.0
    for k, n in enumerate(n_classes):
        block = counts[:, k * width : k * width + n]
        normalizer = block.sum(axis=1)[:, np.newaxis]
        normalizer[normalizer == 0.0] = 1.0
        np.divide(block, normalizer, out=out[:, k * width : k * width + n])
    return out


def check_weighted_counts(stored: np.ndarray, weighted_n_node_samples: np.ndarray) -> None:
    """Raise :class:`~treeshard.ArrayError` unless every weight is > 0 and every count >= 0."""
    weight = np.asarray(weighted_n_node_samples)
    bad = ~(weight > 0)  # also catches NaN
    if bad.any():
        raise ArrayError(
            f"nodes/weighted_n_node_samples: {float(weight[bad][0])!r} at node {int(np.argmax(bad))} of the range read; "
            "value_encoding 'weighted_counts' needs every weight > 0"
        )
    if stored.size and stored.min() < 0:
        node = int(np.argmax((stored < 0).any(axis=1)))
        raise ArrayError(f"nodes/value: negative weighted class count at node {node} of the range read")


#: The field of sklearn's node record each stored column is read from.
_NODE_FIELDS = {
    "left_child_offset": "left_child",
    "right_child_offset": "right_child",
    "feature": "feature",
    "threshold": "threshold",
    "impurity": "impurity",
    "n_node_samples": "n_node_samples",
    "weighted_n_node_samples": "weighted_n_node_samples",
    "missing_go_to_left": "missing_go_to_left",
}
#: The node-record fields ``_kernels.fill_node_columns`` reads as doubles or bytes (the others as int64).
_KERNEL_FIELD_DTYPES = {
    "threshold": np.dtype("<f8"),
    "impurity": np.dtype("<f8"),
    "weighted_n_node_samples": np.dtype("<f8"),
    "missing_go_to_left": np.dtype("u1"),
}
_SOURCES = itertools.count()


class NotWeightedCounts(Exception):
    """A range of classifier values that int32 weighted counts would not reproduce bit for bit."""


class TreeNodeRows:
    """Rows of the node columns of sklearn trees, copied straight from each tree's
    arrays into a caller's buffers: what :func:`to_columns` concatenates, one
    chunk at a time (a save never holds a second copy of the model).

    :meth:`fill_columns` fills every column of a range in one compiled pass over
    the trees' node records (``_kernels.fill_node_columns``). :meth:`fill` (and
    the fallback for node records the kernel does not know) gathers a range's
    records and values once per ``scratch`` (one C-level copy of every tree's
    slice), then copies each column out of them. Thread-safe: any number of
    ranges may be filled concurrently, each thread with its own ``scratch``.
    """

    def __init__(self, trees: Sequence, layout: TreeLayout, *, leaf_counts: bool = False) -> None:
        counts = np.fromiter((t.node_count for t in trees), dtype=np.int64, count=len(trees))
        if counts.size and counts.max() > MAX_TREE_NODES:
            raise UnsupportedEstimatorError(f"a tree has {counts.max()} nodes; at most {MAX_TREE_NODES} are supported")
        self.tree_ptr = np.zeros(len(trees) + 1, dtype=TREE_PTR_DTYPE)
        np.cumsum(counts, out=self.tree_ptr[1:])
        self.n_nodes = int(self.tree_ptr[-1])
        self.value_width = layout.value_width
        #: The trees hold weighted class counts (classifiers under sklearn < 1.4), not fractions.
        self.leaf_counts = leaf_counts
        self._n_classes = layout.n_classes
        # __getstate__ returns views of each tree's node and value arrays (no copy).
        states = [t.__getstate__() for t in trees]
        self._node_dtype = states[0]["nodes"].dtype if states else None
        # Records as opaque bytes: concatenating them is a memcpy (a structured copy goes field by field).
        raw = np.dtype((np.void, self._node_dtype.itemsize)) if states else None
        self._nodes = [np.ascontiguousarray(state["nodes"][: int(n)]).view(raw) for state, n in zip(states, counts, strict=True)]
        self._values = [state["values"][: int(n)].reshape(int(n), -1) for state, n in zip(states, counts, strict=True)]
        self._ptr = self.tree_ptr.tolist()
        self._token = next(_SOURCES)  # names this source's gathered range in a thread's scratch
        self._local: np.ndarray | None = None
        self._compiled = self._compiled_source(states)

    def _compiled_source(self, states: list[dict[str, Any]]) -> tuple[Any, ...] | None:
        """The arguments of ``_kernels.fill_node_columns`` that describe the trees (their arrays'
        addresses: ``self._nodes`` and ``self._values`` keep them alive), or None where the
        kernel does not apply (an unknown node record, sklearn < 1.4's class counts)."""
        if not states or self.leaf_counts:
            return None
        names = self._node_dtype.names
        offsets = []
        for name in _NODE_FIELDS.values():
            if name not in names:
                if name != "missing_go_to_left":
                    return None
                offsets.append(-1)
                continue
            dtype, offset = self._node_dtype.fields[name][:2]
            if dtype != _KERNEL_FIELD_DTYPES.get(name, np.dtype("<i8")):
                return None
            offsets.append(offset)
        from . import _kernels

        records = np.empty(len(self._nodes), dtype=np.uint64)
        values = np.empty(len(self._values), dtype=np.uint64)
        if not (
            _kernels.buffer_addresses(self._nodes, self._node_dtype.itemsize, None, records)
            and _kernels.buffer_addresses(self._values, 8, b"d", values)
        ):
            return None
        return self.tree_ptr, records, values, self._node_dtype.itemsize, tuple(offsets), self.value_width

    def fill_columns(self, start: int, stop: int, out: dict[str, np.ndarray], counts: np.ndarray | None) -> bool:
        """Rows ``start:stop`` of every column but ``value`` into ``out`` (by stored name), and
        ``value`` as int32 weighted counts into ``counts`` (if given); returns whether those
        reproduce every value bit for bit (see :func:`encode_values`). One compiled pass
        where it applies, else what :meth:`fill` and :meth:`fill_weighted_counts` do."""
        if self._compiled is not None:
            from . import _kernels

            columns = [out[name] for name in _NODE_FIELDS]
            return bool(_kernels.fill_node_columns(*self._compiled, start, stop, *columns, counts))
        scratch: dict[str, Any] = {}
        for name in _NODE_FIELDS:
            self.fill(name, start, stop, out[name], scratch)
        if counts is None:
            return True
        try:
            self.fill_weighted_counts(start, stop, counts, scratch)
        except NotWeightedCounts:
            return False
        return True

    def _gather(self, start: int, stop: int, scratch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Node records and values of rows ``start:stop``, gathered into ``scratch`` (once per range)."""
        key = (self._token, start, stop)
        if scratch.get("gathered") == key:
            return scratch["gathered_views"]
        ptr = self._ptr
        i = int(np.searchsorted(self.tree_ptr, start, side="right")) - 1
        nodes, values = [], []
        pos = start
        while pos < stop:
            first = ptr[i]
            a, b = pos - first, min(stop, ptr[i + 1]) - first
            nodes.append(self._nodes[i][a:b])
            values.append(self._values[i][a:b])
            pos += b - a
            i += 1
        scratch["gathered"] = None
        records = _scratch(scratch, "records", (stop - start,), self._node_dtype)
        gathered = _scratch(scratch, "values", (stop - start, self.value_width), np.float64)
        np.concatenate(nodes, out=records.view(nodes[0].dtype))
        np.concatenate(values, out=gathered)
        scratch["gathered"], scratch["gathered_views"] = key, (records, gathered)
        return records, gathered

    def fill(self, name: str, start: int, stop: int, out: np.ndarray, scratch: dict[str, Any] | None = None) -> None:
        """Rows ``start:stop`` of column ``name`` (as stored: child offsets, float64 values) into ``out``."""
        if stop <= start:
            return
        records, values = self._gather(start, stop, {} if scratch is None else scratch)
        if name == "value":
            out[...] = values
            return
        field = _NODE_FIELDS[name]
        if field not in records.dtype.names:  # sklearn < 1.3 has no missing-value support: nothing goes left
            out[...] = 0
            return
        np.copyto(out, records[field], casting="unsafe")
        if name in ("left_child_offset", "right_child_offset"):
            # A split's child comes after it (offset >= 1); a leaf's child is -1, so
            # ``child - node`` is negative exactly on leaves, whose offset is 0.
            np.subtract(out, self._local_ids()[start:stop], out=out)
            np.maximum(out, 0, out=out)

    def _local_ids(self) -> np.ndarray:
        """Each node's id inside its own tree."""
        local = self._local
        if local is None:  # a benign race: two threads may compute the same array
            counts = np.diff(self.tree_ptr)
            local = np.arange(self.n_nodes, dtype=np.int32) - np.repeat(self.tree_ptr[:-1], counts).astype(np.int32)
            self._local = local
        return local

    def fill_weighted_counts(self, start: int, stop: int, out: np.ndarray, scratch: dict[str, Any]) -> None:
        """Rows ``start:stop`` of ``value`` as int32 weighted counts (see :func:`encode_values`)
        into ``out``; raise :class:`NotWeightedCounts` unless they decode bit for bit."""
        if stop <= start:
            return
        records, value = self._gather(start, stop, scratch)
        weight = _scratch(scratch, "weight", (stop - start,), np.float64)
        weight[...] = records["weighted_n_node_samples"]
        counts = _scratch(scratch, "counts", value.shape, np.float64)
        if not (np.all(weight > 0) and np.all(np.isfinite(value))):
            raise NotWeightedCounts
        if self.leaf_counts:
            self._fill_class_counts(value, weight, out)
            return
        _per_column(np.multiply, value, weight, counts)
        np.rint(counts, out=counts)
        if counts.size and (counts.min() < 0 or counts.max() > np.iinfo(np.int32).max):
            raise NotWeightedCounts
        out[...] = counts
        # Compare bits, not values: -0.0 == 0.0, but an int32 count cannot keep the sign of a zero.
        _per_column(np.divide, out, weight, counts)
        if not np.array_equal(counts.view(np.uint64), value.view(np.uint64)):
            raise NotWeightedCounts


    def _fill_class_counts(self, value: np.ndarray, weight: np.ndarray, out: np.ndarray) -> None:
        """Counts kept as they are (sklearn < 1.4), when they are int32 and each output's
        counts sum to the node's weight: then ``counts / weighted_n_node_samples`` is
        exactly sklearn < 1.4's probability too (``counts / counts.sum()``)."""
        if value.size and (value.min() < 0 or value.max() > np.iinfo(np.int32).max):
            raise NotWeightedCounts
        out[...] = value
        if not np.array_equal(out, value) or np.signbit(value).any():
            raise NotWeightedCounts
        width = self.value_width // len(self._n_classes)
        for k, n in enumerate(self._n_classes):
            if not np.array_equal(value[:, k * width : k * width + n].sum(axis=1), weight):
                raise NotWeightedCounts


def _per_column(ufunc: Any, matrix: np.ndarray, column: np.ndarray, out: np.ndarray) -> None:
    """``ufunc(matrix, column[:, None], out=out)``, the same values, faster for a narrow matrix
    (numpy's broadcast runs an inner loop per row)."""
    if matrix.shape[1] > 8:
        ufunc(matrix, column[:, None], out=out)
        return
    for j in range(matrix.shape[1]):
        ufunc(matrix[:, j], column, out=out[:, j])


def _scratch(scratch: dict[str, np.ndarray], name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A reusable buffer of ``shape`` (memory already touched costs no page faults)."""
    size = int(np.prod(shape))
    buffer = scratch.get(name)
    if buffer is None or buffer.size < size or buffer.dtype != dtype:
        buffer = scratch[name] = np.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)
