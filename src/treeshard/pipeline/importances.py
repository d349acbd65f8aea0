"""Feature importances of a stored ensemble, computed as sklearn computes them (numpy only).

What a ``SelectFromModel`` step needs to serve without sklearn: each tree's
``compute_feature_importances`` (``w * impurity - w_left * impurity_left -
w_right * impurity_right`` added into the split feature node by node, divided
by the root's weight, optionally normalized), then the ensemble's average,
with the same numpy calls (``np.mean(..., axis=0)``, ``np.sum``) in the same
order, so that the bits are sklearn's.
"""

from __future__ import annotations

import numpy as np

from ..adapters.families import BOOSTING, FOREST, family_of
from ..columns import NodeColumns


def tree_importances(columns: NodeColumns, start: int, stop: int, n_features: int, *, normalize: bool) -> np.ndarray:
    """``Tree.compute_feature_importances(normalize)`` of the tree at nodes ``start:stop``."""
    left_offset = columns.left_child_offset[start:stop]
    split = np.flatnonzero(left_offset != 0)
    left = split + left_offset[split]
    right = split + columns.right_child_offset[start:stop][split]
    weight, impurity = columns.weighted_n_node_samples[start:stop], columns.impurity[start:stop]
    contributions = weight[split] * impurity[split] - weight[left] * impurity[left] - weight[right] * impurity[right]
    out = np.zeros(n_features, dtype=np.float64)
    np.add.at(out, columns.feature[start:stop][split], contributions)  # node by node, as the Cython loop
    out /= weight[0]
    if normalize:
        normalizer = np.sum(out)
        if normalizer > 0.0:
            out /= normalizer
    return out


def feature_importances(estimator_id: str, columns: NodeColumns, n_features: int) -> np.ndarray:
    """``feature_importances_`` of the stored estimator ``estimator_id`` (columns validated by the caller)."""
    ptr = columns.tree_ptr
    trees = [(int(ptr[i]), int(ptr[i + 1])) for i in range(len(ptr) - 1)]
    family = family_of(estimator_id)
    if family not in (FOREST, BOOSTING):
        return tree_importances(columns, *trees[0], n_features, normalize=True)
    # Forests average normalized trees; boosting averages raw ones (stage-major, as stored). Stumps are skipped.
    per_tree = [tree_importances(columns, start, stop, n_features, normalize=family == FOREST) for start, stop in trees if stop - start > 1]
    if not per_tree:
        return np.zeros(n_features, dtype=np.float64)
    mean = np.mean(per_tree, axis=0, dtype=np.float64)
    return mean / np.sum(mean)
