"""Node columns: sklearn trees <-> one flat array per node field.

All trees of a model are concatenated; ``tree_ptr`` (``n_trees + 1`` offsets)
says where each starts, as in CSR matrices: tree *i* is the node range
``tree_ptr[i]:tree_ptr[i + 1]``. Child ids are stored as offsets from the
node (``child - node``, 0 for a leaf), which compresses far better than
absolute ids and makes "children come after their parent" a simple check.

Nothing here reads a store; :mod:`treeshard.validate` checks columns before
:func:`build_trees` turns them into sklearn ``Tree`` objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import UnsupportedEstimatorError
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
        state = tree.__getstate__()
        nodes = state["nodes"][: stop - start]
        local = np.arange(stop - start, dtype=np.int64)
        leaf = nodes["left_child"] == LEAF
        cols.left_child_offset[start:stop] = np.where(leaf, 0, nodes["left_child"] - local)
        cols.right_child_offset[start:stop] = np.where(leaf, 0, nodes["right_child"] - local)
        for name in ("feature", "threshold", "impurity", "n_node_samples", "weighted_n_node_samples"):
            getattr(cols, name)[start:stop] = nodes[name]
        if "missing_go_to_left" in nodes.dtype.names:
            cols.missing_go_to_left[start:stop] = nodes["missing_go_to_left"]
        else:  # sklearn < 1.3 has no missing-value support: nothing goes left
            cols.missing_go_to_left[start:stop] = 0
        cols.value[start:stop] = state["values"][: stop - start].reshape(stop - start, -1)
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
    counts = np.rint(value * weight)
    if counts.min() < 0 or counts.max() > np.iinfo(np.int32).max or not np.array_equal(counts / weight, value):
        return value, "float64"
    return counts.astype(WEIGHTED_COUNTS_DTYPE), "weighted_counts"


def decode_values(stored: np.ndarray, weighted_n_node_samples: np.ndarray, encoding: str) -> np.ndarray:
    """Inverse of :func:`encode_values`: float64 node values."""
    if encoding == "weighted_counts":
        return stored / weighted_n_node_samples[:, None]
    return stored


def node_depths(cols: NodeColumns) -> np.ndarray:
    """Depth of every node, level by level over all trees at once.

    Only valid on validated columns (each node has exactly one parent).
    """
    n = cols.n_nodes
    depth = np.empty(n, dtype=np.int32)
    frontier = cols.tree_ptr[:-1].astype(np.int64)
    level = 0
    left, right = cols.left_child_offset, cols.right_child_offset
    while frontier.size:
        depth[frontier] = level
        offsets = left[frontier]
        parents = frontier[offsets != 0]
        frontier = np.concatenate((parents + left[parents], parents + right[parents]))
        level += 1
    return depth


def tree_depths(cols: NodeColumns) -> np.ndarray:
    """``max_depth`` of every tree (computed, never read from a store)."""
    return np.maximum.reduceat(node_depths(cols), cols.tree_ptr[:-1]).astype(np.int64)


def node_records(cols: NodeColumns, node_dtype: np.dtype) -> np.ndarray:
    """All nodes as one record array in the installed sklearn's ``NODE_DTYPE``.

    Child ids are made absolute within their own tree, so that a contiguous
    slice ``records[tree_ptr[i]:tree_ptr[i + 1]]`` is tree *i*'s node array.
    """
    n = cols.n_nodes
    records = np.empty(n, dtype=node_dtype)
    local = np.arange(n, dtype=np.int64)
    local -= np.repeat(cols.tree_ptr[:-1], np.diff(cols.tree_ptr))
    leaf = cols.left_child_offset == 0
    for name in node_dtype.names:
        if name in ("left_child", "right_child"):
            child = local + getattr(cols, f"{name}_offset")
            child[leaf] = LEAF
            records[name] = child
        elif name in NODE_COLUMNS:
            records[name] = getattr(cols, name)
        else:
            raise UnsupportedEstimatorError(
                f"the installed scikit-learn's tree nodes have a field {name!r} that format "
                "version 1 does not store; upgrade treeshard"
            )
    return records


def build_trees(cols: NodeColumns, layout: TreeLayout) -> Iterator:
    """Yield one sklearn ``Tree`` per tree in ``cols`` (which must be validated)."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    records = node_records(cols, NODE_DTYPE)
    depths = tree_depths(cols)
    n_classes = np.asarray(layout.n_classes, dtype=np.intp)
    value = cols.value.reshape(cols.n_nodes, layout.n_outputs, max(layout.n_classes))
    ptr = cols.tree_ptr.tolist()
    for i in range(cols.n_trees):
        start, stop = ptr[i], ptr[i + 1]
        tree = Tree(layout.n_features, n_classes, layout.n_outputs)
        tree.__setstate__(
            {
                "max_depth": int(depths[i]),
                "node_count": stop - start,
                "nodes": records[start:stop],
                "values": value[start:stop],
            }
        )
        yield tree
