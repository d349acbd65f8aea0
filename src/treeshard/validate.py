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
    ``cols`` holds a range of a model's trees. The checks are whole-array
    numpy passes (about ten over the node count); the position of a failure
    is worked out only once one is found.
    """
    n = cols.n_nodes
    for name, dtype in NODE_COLUMNS.items():
        array = getattr(cols, name)
        expected = (n, layout.value_width) if name == "value" else (n,)
        if array.dtype != dtype or array.shape != expected:
            raise ArrayError(f"{name}: {array.dtype}{list(array.shape)}, expected {dtype}{list(expected)}")

    def fail(mask: np.ndarray, what: str) -> None:
        node = int(np.argmax(mask))
        tree = int(np.searchsorted(cols.tree_ptr, node, side="right")) - 1
        local = node - int(cols.tree_ptr[tree])
        raise TreeStructureError(f"tree {first_tree + tree}, node {local}: {what}")

    left, right = cols.left_child_offset, cols.right_child_offset
    leaf = left == 0
    if not np.array_equal(leaf, right == 0):
        fail(leaf != (right == 0), "exactly one child is missing")
    if n and min(int(left.min()), int(right.min())) < 0:
        fail((left < 0) | (right < 0), "a child does not come after its parent (cycle)")
    split = np.flatnonzero(~leaf)
    # Children must stay inside their own tree: before the next tree's first node.
    counts = np.diff(cols.tree_ptr)
    tree_end = np.repeat(cols.tree_ptr[1:], counts)[split]
    left_child = split + left[split]
    right_child = split + right[split]
    bad = (left_child >= tree_end) | (right_child >= tree_end)
    if bad.any():
        fail(np.isin(np.arange(n), split[bad]), "a child id is out of range")

    # Every node but a root has exactly one parent: with children after their
    # parents this makes each tree a proper tree, so traversal terminates and
    # every node is reached once.
    parents = np.bincount(left_child, minlength=n)
    parents += np.bincount(right_child, minlength=n)
    expected_parents = np.ones(n, dtype=parents.dtype)
    expected_parents[cols.tree_ptr[:-1]] = 0
    if not np.array_equal(parents, expected_parents):
        fail(parents != expected_parents, "is not reached exactly once from the root (shared or orphan node)")

    feature = cols.feature
    split_feature = feature[split]
    if split.size and (int(split_feature.min()) < 0 or int(split_feature.max()) >= layout.n_features):
        fail(np.isin(np.arange(n), split[(split_feature < 0) | (split_feature >= layout.n_features)]), f"split feature out of range [0, {layout.n_features})")
    if np.any(feature[leaf] != UNDEFINED):
        fail(leaf & (feature != UNDEFINED), f"a leaf's feature must be {UNDEFINED}")
    if np.isnan(cols.threshold[split]).any():
        fail(~leaf & np.isnan(cols.threshold), "split threshold is NaN")
    if n and int(cols.missing_go_to_left.max()) > 1:
        fail(cols.missing_go_to_left > 1, "missing_go_to_left is not 0 or 1")
