"""Checks of untrusted node columns, run before any sklearn object is built.

sklearn's Cython tree traversal follows child ids and feature indices without
bounds checks, so a crafted store could crash the interpreter. After
:func:`validate_columns` every tree is a proper binary tree: each node is a
leaf or has two children inside its own tree with larger ids, every node but
the root has exactly one parent, split features index real columns and split
thresholds are numbers.
"""

from __future__ import annotations

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


def validate_columns(cols: NodeColumns, layout: TreeLayout, *, first_tree: int = 0) -> None:
    """Check the node columns of consecutive trees; raise :class:`TreeStructureError`.

    ``first_tree`` only makes error messages name the right tree when
    ``cols`` holds a range of a model's trees.
    """
    n = cols.n_nodes
    for name, dtype in NODE_COLUMNS.items():
        array = getattr(cols, name)
        expected = (n, layout.value_width) if name == "value" else (n,)
        if array.dtype != dtype or array.shape != expected:
            raise ArrayError(f"{name}: {array.dtype}{list(array.shape)}, expected {dtype}{list(expected)}")

    counts = np.diff(cols.tree_ptr)
    tree_of = np.repeat(np.arange(cols.n_trees), counts)
    local = np.arange(n, dtype=np.int64) - np.repeat(cols.tree_ptr[:-1], counts)
    size = np.repeat(counts, counts)

    def fail(mask: np.ndarray, what: str) -> None:
        node = int(np.argmax(mask))
        raise TreeStructureError(f"tree {first_tree + int(tree_of[node])}, node {int(local[node])}: {what}")

    left, right = cols.left_child_offset, cols.right_child_offset
    leaf = left == 0
    split = ~leaf
    if np.any(leaf != (right == 0)):
        fail(leaf != (right == 0), "exactly one child is missing")
    bad = split & ((left < 1) | (right < 1))
    if np.any(bad):
        fail(bad, "a child does not come after its parent (cycle)")
    bad = split & ((local + left >= size) | (local + right >= size))
    if np.any(bad):
        fail(bad, "a child id is out of range")

    # Every node but a root has exactly one parent: with children after their
    # parents this makes each tree a proper tree, so traversal terminates and
    # every node is reached once.
    index = np.arange(n, dtype=np.int64)
    children = np.concatenate((index[split] + left[split], index[split] + right[split]))
    parents = np.bincount(children, minlength=n)
    is_root = np.zeros(n, dtype=bool)
    is_root[cols.tree_ptr[:-1]] = True
    if np.any(parents != ~is_root):
        fail(parents != ~is_root, "is not reached exactly once from the root (shared or orphan node)")

    feature = cols.feature
    bad = split & ((feature < 0) | (feature >= layout.n_features))
    if np.any(bad):
        fail(bad, f"split feature out of range [0, {layout.n_features})")
    if np.any(leaf & (feature != UNDEFINED)):
        fail(leaf & (feature != UNDEFINED), f"a leaf's feature must be {UNDEFINED}")
    if np.any(split & np.isnan(cols.threshold)):
        fail(split & np.isnan(cols.threshold), "split threshold is NaN")
    if np.any(cols.missing_go_to_left > 1):
        fail(cols.missing_go_to_left > 1, "missing_go_to_left is not 0 or 1")
