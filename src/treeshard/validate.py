"""Checks of untrusted node columns, run before any sklearn object is built.

sklearn's Cython tree traversal follows child ids and feature indices without
bounds checks, so a crafted store could crash the interpreter. After
:func:`check_trees` every tree is a proper binary tree: each node is a
leaf or has two children inside its own tree with larger ids, every node but
the root has exactly one parent, split features index real columns and split
thresholds are numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .columns import NODE_COLUMNS, UNDEFINED, NodeColumns
from .errors import ArrayError, TreeStructureError
from .record import TreeLayout


def validate_tree_ptr(tree_ptr: np.ndarray, *, n_trees: int, n_nodes: int) -> None:
    """``tree_ptr`` has ``n_trees + 1`` entries, starts at 0, grows, ends at ``n_nodes``."""
    if tree_ptr.shape != (n_trees + 1,):
        raise ArrayError(f"tree_ptr: shape {tree_ptr.shape}, expected ({n_trees + 1},)")
    if tree_ptr[0] != 0:
        raise TreeStructureError(f"tree_ptr: starts at {tree_ptr[0]}, expected 0")
    counts = np.diff(tree_ptr)
    if counts.size and counts.min() <= 0:
        bad = int(np.argmax(counts <= 0))
        raise TreeStructureError(f"tree_ptr: tree {bad} has {counts[bad]} nodes (not increasing)")
    if tree_ptr[-1] != n_nodes:
        raise TreeStructureError(f"tree_ptr: ends at {tree_ptr[-1]}, expected n_nodes={n_nodes}")


#: Messages for the kernel's problem codes (treeshard._kernels.Problem).
_PROBLEMS = {
    1: "exactly one child is missing",
    2: "a child does not come after its parent (cycle)",
    3: "a child id is out of range",
    4: "is not reached exactly once from the root (shared child)",
    5: "is not reached exactly once from the root (orphan node)",
    7: f"a leaf's feature must be {UNDEFINED}",
    8: "split threshold is NaN",
    9: "missing_go_to_left is not 0 or 1",
    10: "tree_ptr does not describe the node columns",
}
#: sklearn node record fields the kernel can fill, with the dtype each must have.
_RECORD_FIELDS = (
    ("left_child", "<i8"),
    ("right_child", "<i8"),
    ("feature", "<i8"),
    ("threshold", "<f8"),
    ("impurity", "<f8"),
    ("n_node_samples", "<i8"),
    ("weighted_n_node_samples", "<f8"),
    ("missing_go_to_left", "u1"),
)


def record_offsets(node_dtype: np.dtype) -> tuple[int, ...]:
    """Byte offset of each of :data:`_RECORD_FIELDS` in ``node_dtype`` (-1: absent)."""
    from .compat import unknown_node_field_error

    known = dict(_RECORD_FIELDS)
    for name in node_dtype.names:
        if name not in known or node_dtype.fields[name][0] != np.dtype(known[name]):
            raise unknown_node_field_error(name, node_dtype.fields[name][0])
    return tuple(node_dtype.fields[name][1] if name in node_dtype.names else -1 for name, _ in _RECORD_FIELDS)


def _check_fields_used(cols: NodeColumns, offsets: tuple[int, ...]) -> None:
    """Refuse a store that uses a node field the installed node record lacks (non-zero values)."""
    from .compat import missing_node_field_error

    for (field, _), offset in zip(_RECORD_FIELDS, offsets, strict=True):
        column = getattr(cols, field, None)  # record field -> stored column of the same name
        if offset < 0 and column is not None and column.size and column.any():
            raise missing_node_field_error(field)


def check_trees(
    cols: NodeColumns, layout: TreeLayout, *, first_tree: int = 0, node_dtype: np.dtype | None = None
) -> tuple[np.ndarray | None, np.ndarray]:
    """Validate consecutive trees and, with ``node_dtype``, lay them out for sklearn.

    Returns ``(records, max_depth)``: the node records in ``node_dtype``
    (child ids local to their tree; ``None`` without ``node_dtype``) and each
    tree's depth, computed from its structure. One compiled pass over the
    nodes (:mod:`treeshard._kernels`) does all of it.

    After this, every tree is a proper binary tree: each node is a leaf or
    has two children inside its own tree with larger ids, every node but the
    root has exactly one parent (so traversal terminates and reaches each
    node once), split features index real columns and split thresholds are
    numbers. ``first_tree`` makes error messages name the right tree when
    ``cols`` holds a range of a model's trees.
    """
    from ._kernels import check_and_layout

    _check_column_arrays(cols, layout)
    n = cols.n_nodes
    if node_dtype is None:
        records, offsets = np.empty((n, 1), dtype=np.uint8), (-1,) * len(_RECORD_FIELDS)  # nothing is written
    else:
        offsets = record_offsets(node_dtype)
        _check_fields_used(cols, offsets)
        # Zeroed, not empty: the kernel writes the fields, never the padding after
        # missing_go_to_left, and sklearn copies every byte (pickles must not carry
        # leftover heap bytes; sklearn issue #27268).
        records = np.zeros((n, node_dtype.itemsize), dtype=np.uint8)
    depths = np.zeros(cols.n_trees, dtype=np.int64)
    code, node = check_and_layout(*_kernel_columns(cols), layout.n_features, records, depths, offsets)
    _raise_problem(code, node, cols, layout, first_tree)
    return (records.reshape(-1).view(node_dtype) if node_dtype is not None else None), depths


def check_trees_into(cols: NodeColumns, layout: TreeLayout, nodes: Sequence[np.ndarray], *, first_tree: int = 0) -> np.ndarray:
    """:func:`check_trees`, writing each tree's node records into ``nodes`` (one writable,
    zeroed, C-contiguous ``NODE_DTYPE`` array per tree, of its node count: a built
    sklearn ``Tree``'s own node array); returns each tree's depth.

    The same checks, in the same order, with the same errors. A tree with a
    problem is left partly written: the caller drops every tree of ``cols``.
    """
    from ._kernels import buffer_addresses, check_and_scatter

    _check_column_arrays(cols, layout, values=False)  # the kernel does not read values (stored or decoded)
    if len(nodes) != cols.n_trees:
        raise ValueError(f"check_trees_into: {len(nodes)} node arrays for {cols.n_trees} trees")
    node_dtype = nodes[0].dtype
    counts = np.diff(cols.tree_ptr)
    for array, count in zip(nodes, counts.tolist(), strict=True):
        if array.dtype != node_dtype or array.shape != (count,) or not array.flags.writeable:
            raise ValueError(f"check_trees_into: a node array is {array.dtype}{list(array.shape)}, expected {count} writable records")
    offsets = record_offsets(node_dtype)
    _check_fields_used(cols, offsets)
    addresses = np.empty(len(nodes), dtype=np.uint64)
    if not buffer_addresses(list(nodes), node_dtype.itemsize, None, addresses):
        raise ValueError("check_trees_into: node arrays must be C-contiguous")
    depths = np.zeros(cols.n_trees, dtype=np.int64)
    code, node = check_and_scatter(*_kernel_columns(cols), layout.n_features, addresses, node_dtype.itemsize, depths, offsets)
    _raise_problem(code, node, cols, layout, first_tree)
    return depths


def _check_column_arrays(cols: NodeColumns, layout: TreeLayout, *, values: bool = True) -> None:
    n = cols.n_nodes
    for name, dtype in NODE_COLUMNS.items():
        if name == "value" and not values:
            continue
        array = getattr(cols, name)
        expected = (n, layout.value_width) if name == "value" else (n,)
        if array.dtype != dtype or array.shape != expected or not array.flags.c_contiguous:
            raise ArrayError(f"{name}: {array.dtype}{list(array.shape)}, expected {dtype}{list(expected)}")
    if cols.tree_ptr.dtype != np.int64 or not cols.tree_ptr.flags.c_contiguous:
        raise ArrayError(f"tree_ptr: {cols.tree_ptr.dtype}, expected int64")


def _kernel_columns(cols: NodeColumns) -> tuple[np.ndarray, ...]:
    return (
        cols.tree_ptr,
        cols.left_child_offset,
        cols.right_child_offset,
        cols.feature,
        cols.threshold,
        cols.impurity,
        cols.n_node_samples,
        cols.weighted_n_node_samples,
        cols.missing_go_to_left,
    )


def _raise_problem(code: int, node: int, cols: NodeColumns, layout: TreeLayout, first_tree: int) -> None:
    """The :class:`TreeStructureError` for the kernel's ``(code, node)``; nothing if ``code`` is 0."""
    if code == 0:
        return
    if node < 0:
        raise TreeStructureError(_PROBLEMS[10])
    tree = int(np.searchsorted(cols.tree_ptr, node, side="right")) - 1
    what = _PROBLEMS.get(code, f"split feature out of range [0, {layout.n_features})")
    raise TreeStructureError(f"tree {first_tree + tree}, node {node - int(cols.tree_ptr[tree])}: {what}")
