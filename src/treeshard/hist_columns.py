"""Node columns of histogram gradient boosting (sklearn ``TreePredictor`` objects).

sklearn-free: the adapter (:mod:`treeshard.adapters.hist_gradient_boosting`)
and the :class:`~treeshard.Predictor` (:mod:`treeshard.predictor.hist`) both
use it. One column per field of sklearn's ``PREDICTOR_RECORD_DTYPE``, every
tree concatenated (``tree_ptr``), and each tree's categorical bitsets
concatenated with their own ``bitset_ptr`` (``docs/FORMAT.md``, section 6.2).
:func:`validate_hist_columns` checks untrusted columns before sklearn's
unchecked Cython traversal or the predictor ever sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ArrayError, ConfigError, TreeStructureError, UnsupportedEstimatorError

#: Node columns (sklearn's ``PREDICTOR_RECORD_DTYPE`` fields) and their stored dtypes.
HIST_NODE_COLUMNS: dict[str, np.dtype] = {
    "value": np.dtype("<f8"),
    "count": np.dtype("<u4"),
    "feature_idx": np.dtype("<i8"),  # sklearn's intp
    "num_threshold": np.dtype("<f8"),
    "missing_go_to_left": np.dtype("u1"),
    "left": np.dtype("<u4"),
    "right": np.dtype("<u4"),
    "gain": np.dtype("<f8"),
    "depth": np.dtype("<u4"),
    "is_leaf": np.dtype("u1"),
    "bin_threshold": np.dtype("u1"),
    "is_categorical": np.dtype("u1"),
    "bitset_idx": np.dtype("<u4"),
}
BITSET_ARRAYS = ("raw_left_cat_bitsets", "binned_left_cat_bitsets")
BITSET_DTYPE = np.dtype("<u4")
BITSET_WORDS = 8  # 256 categories per bitset
PTR_DTYPE = np.dtype("<i8")
MAX_CATEGORY = 255  # categories are uint8 in sklearn's traversal
_FLAGS = ("is_leaf", "missing_go_to_left", "is_categorical")


@dataclass
class HistColumns:
    """The node columns and bitsets of consecutive trees (pointers local: start at 0)."""

    tree_ptr: np.ndarray
    nodes: dict[str, np.ndarray]
    bitset_ptr: np.ndarray
    raw_left_cat_bitsets: np.ndarray
    binned_left_cat_bitsets: np.ndarray

    @property
    def n_trees(self) -> int:
        return len(self.tree_ptr) - 1

    @property
    def n_nodes(self) -> int:
        return int(self.tree_ptr[-1])

    def stored(self) -> dict[str, np.ndarray]:
        """The arrays as stored under ``nodes/`` (bitsets only if some split is categorical)."""
        out = {"tree_ptr": self.tree_ptr, **self.nodes}
        if int(self.bitset_ptr[-1]):
            out["bitset_ptr"] = self.bitset_ptr
            out["raw_left_cat_bitsets"] = self.raw_left_cat_bitsets
            out["binned_left_cat_bitsets"] = self.binned_left_cat_bitsets
        return out


def from_predictors(predictors: Sequence[Any]) -> HistColumns:
    """Concatenate sklearn ``TreePredictor`` objects (in storage order) into :class:`HistColumns`."""
    names = set(HIST_NODE_COLUMNS)
    for predictor in predictors[:1]:
        fields = set(predictor.nodes.dtype.names)
        if fields != names:
            raise UnsupportedEstimatorError(
                f"the installed scikit-learn's TreePredictor nodes have fields {sorted(fields ^ names)} "
                "that format version 1 does not define; upgrade treeshard"
            )
    counts = np.array([len(p.nodes) for p in predictors], dtype=np.int64)
    tree_ptr = np.zeros(len(predictors) + 1, dtype=PTR_DTYPE)
    np.cumsum(counts, out=tree_ptr[1:])
    nodes = {name: np.concatenate([p.nodes[name] for p in predictors]).astype(dtype) for name, dtype in HIST_NODE_COLUMNS.items()}
    bitset_counts = np.array([len(p.raw_left_cat_bitsets) for p in predictors], dtype=np.int64)
    bitset_ptr = np.zeros(len(predictors) + 1, dtype=PTR_DTYPE)
    np.cumsum(bitset_counts, out=bitset_ptr[1:])
    bitsets = {}
    for name in BITSET_ARRAYS:
        parts = [np.asarray(getattr(p, name), dtype=BITSET_DTYPE).reshape(-1, BITSET_WORDS) for p in predictors]
        bitsets[name] = np.concatenate(parts) if parts else np.zeros((0, BITSET_WORDS), BITSET_DTYPE)
        if len(bitsets[name]) != bitset_ptr[-1]:
            raise UnsupportedEstimatorError(f"TreePredictor.{name}: a tree's raw and binned bitsets differ in number")
    return HistColumns(tree_ptr, nodes, bitset_ptr, bitsets["raw_left_cat_bitsets"], bitsets["binned_left_cat_bitsets"])


def read_hist_columns(reader: Any, n_trees: int) -> HistColumns:
    """The node columns of the first ``n_trees`` trees of a store or of a pipeline's ensemble (paths from ``reader.path``; checked for shape and dtype, not yet validated)."""
    from .validate import validate_tree_ptr

    layout = reader.config.trees
    tree_ptr = reader.read_rows(reader.path("nodes/tree_ptr"), PTR_DTYPE, (layout.n_trees + 1,), 0, layout.n_trees + 1)
    validate_tree_ptr(tree_ptr, n_trees=layout.n_trees, n_nodes=layout.n_nodes)
    stop = int(tree_ptr[n_trees])
    requests = [(reader.path(f"nodes/{name}"), dtype, (layout.n_nodes,), 0, stop) for name, dtype in HIST_NODE_COLUMNS.items()]
    has_bitsets = reader.has_array(reader.path("nodes/bitset_ptr"))
    if has_bitsets:
        bitset_ptr = reader.read_rows(reader.path("nodes/bitset_ptr"), PTR_DTYPE, (layout.n_trees + 1,), 0, layout.n_trees + 1)
        validate_ptr("nodes/bitset_ptr", bitset_ptr, n_items=None)
        total = int(bitset_ptr[-1])
        n_bitsets = int(bitset_ptr[n_trees])
        requests += [(reader.path(f"nodes/{name}"), BITSET_DTYPE, (total, BITSET_WORDS), 0, n_bitsets) for name in BITSET_ARRAYS]
    else:
        bitset_ptr = np.zeros(layout.n_trees + 1, dtype=PTR_DTYPE)
    parts = reader.read_many(requests)
    nodes = dict(zip(HIST_NODE_COLUMNS, parts[: len(HIST_NODE_COLUMNS)], strict=True))
    if has_bitsets:
        raw, binned = parts[len(HIST_NODE_COLUMNS) :]
    else:
        raw = binned = np.zeros((0, BITSET_WORDS), dtype=BITSET_DTYPE)
    return HistColumns(tree_ptr[: n_trees + 1].copy(), nodes, bitset_ptr[: n_trees + 1].copy(), raw, binned)


def validate_ptr(where: str, ptr: np.ndarray, *, n_items: int | None) -> None:
    """``ptr`` starts at 0, never decreases and (given ``n_items``) ends at it."""
    if ptr.ndim != 1 or len(ptr) < 1:
        raise ArrayError(f"{where}: expected a 1-D array of offsets, got shape {ptr.shape}")
    if ptr[0] != 0:
        raise TreeStructureError(f"{where}: starts at {int(ptr[0])}, expected 0")
    steps = np.diff(ptr)
    if steps.size and steps.min() < 0:
        raise TreeStructureError(f"{where}: decreases at entry {int(np.argmax(steps < 0)) + 1}")
    if n_items is not None and ptr[-1] != n_items:
        raise TreeStructureError(f"{where}: ends at {int(ptr[-1])}, expected {n_items}")


def validate_hist_columns(cols: HistColumns, *, n_features: int, is_categorical: np.ndarray | None, first_tree: int = 0) -> int:
    """Check untrusted node columns; return the largest tree depth (computed, never read).

    After this every tree is a proper binary tree (each split's children lie
    after it inside its tree, every node but the root has exactly one
    parent), split features index real columns, numerical thresholds are
    numbers and categorical splits point at their own tree's bitsets and at
    categorical features.
    """
    n = cols.n_nodes
    for name, dtype in HIST_NODE_COLUMNS.items():
        array = cols.nodes[name]
        if array.dtype != dtype or array.shape != (n,):
            raise ArrayError(f"nodes/{name}: {array.dtype}{list(array.shape)}, expected {dtype}{[n]}")
    n_bitsets = int(cols.bitset_ptr[-1])
    for name in BITSET_ARRAYS:
        array = getattr(cols, name)
        if array.dtype != BITSET_DTYPE or array.shape != (n_bitsets, BITSET_WORDS):
            raise ArrayError(f"nodes/{name}: {array.dtype}{list(array.shape)}, expected {BITSET_DTYPE}{[n_bitsets, BITSET_WORDS]}")
    counts = np.diff(cols.tree_ptr)
    starts = np.repeat(cols.tree_ptr[:-1], counts)
    local = np.arange(n, dtype=np.int64) - starts
    sizes = np.repeat(counts, counts)

    def fail(mask: np.ndarray, what: str) -> None:
        if mask.any():
            node = int(np.argmax(mask))
            tree = int(np.searchsorted(cols.tree_ptr, node, side="right")) - 1
            raise TreeStructureError(f"tree {first_tree + tree}, node {node - int(cols.tree_ptr[tree])}: {what}")

    for name in _FLAGS:
        fail(cols.nodes[name] > 1, f"{name} is not 0 or 1")
    split = cols.nodes["is_leaf"] == 0
    left = cols.nodes["left"].astype(np.int64)
    right = cols.nodes["right"].astype(np.int64)
    fail(split & ((left <= local) | (right <= local)), "a child does not come after its parent (cycle)")
    fail(split & ((left >= sizes) | (right >= sizes)), "a child id is out of range")
    children = np.concatenate([(starts + left)[split], (starts + right)[split]])
    parents = np.bincount(children, minlength=n) if n else np.zeros(0, dtype=np.int64)
    fail((local > 0) & (parents != 1), "is not reached exactly once from the root")
    feature = cols.nodes["feature_idx"]
    fail(split & ((feature < 0) | (feature >= n_features)), f"split feature out of range [0, {n_features})")
    categorical = split & (cols.nodes["is_categorical"] == 1)
    fail(split & ~categorical & np.isnan(cols.nodes["num_threshold"]), "split threshold is NaN")
    if categorical.any():
        known = np.zeros(n_features, dtype=bool) if is_categorical is None else np.asarray(is_categorical, dtype=bool)
        fail(categorical & ~known[np.where(categorical, feature, 0)], "a categorical split on a feature that is not categorical")
        bitsets_per_tree = np.repeat(np.diff(cols.bitset_ptr), counts)
        fail(categorical & (cols.nodes["bitset_idx"].astype(np.int64) >= bitsets_per_tree), "bitset_idx out of range of its tree's bitsets")
    return tree_depth(cols, split=split, starts=starts)


def tree_depth(cols: HistColumns, *, split: np.ndarray, starts: np.ndarray) -> int:
    """Largest depth of the (validated) trees, following children level by level."""
    frontier = cols.tree_ptr[:-1].copy()
    depth = 0
    while frontier.size:
        frontier = frontier[split[frontier]]
        if not frontier.size:
            break
        s = starts[frontier]
        frontier = np.concatenate([s + cols.nodes["left"][frontier], s + cols.nodes["right"][frontier]])
        depth += 1
    return depth


def check_bin_thresholds(
    thresholds: np.ndarray, ptr: np.ndarray, *, n_features: int, is_categorical: np.ndarray | None, max_bins: int
) -> list[np.ndarray]:
    """Split ``fitted/bin_thresholds`` per feature; a categorical feature's known
    categories must be integers strictly increasing in ``[0, 255]``, at most ``max_bins``."""
    if thresholds.ndim != 1:
        raise ArrayError(f"fitted/bin_thresholds: shape {thresholds.shape}, expected 1-D")
    if ptr.shape != (n_features + 1,):
        raise ArrayError(f"fitted/bin_thresholds_ptr: shape {ptr.shape}, expected ({n_features + 1},)")
    validate_ptr("fitted/bin_thresholds_ptr", ptr, n_items=len(thresholds))
    per_feature = [thresholds[int(a) : int(b)] for a, b in zip(ptr[:-1], ptr[1:], strict=True)]
    if is_categorical is not None:
        for f in np.flatnonzero(is_categorical):
            categories = per_feature[f]
            if len(categories) > min(max_bins, MAX_CATEGORY + 1):
                raise ConfigError(f"fitted/bin_thresholds: categorical feature {f} has {len(categories)} categories, more than max_bins={max_bins}")
            ok = np.all((categories >= 0) & (categories <= MAX_CATEGORY) & (categories == np.floor(categories)))
            if not ok or np.any(np.diff(categories) <= 0):
                raise ConfigError(f"fitted/bin_thresholds: categorical feature {f}: categories must be integers strictly increasing in [0, {MAX_CATEGORY}]")
    return per_feature


def known_category_bitsets(per_feature: list[np.ndarray], is_categorical: np.ndarray | None, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """``(known_cat_bitsets, f_idx_map)`` as sklearn's ``_BinMapper.make_known_categories_bitsets``."""
    categorical = np.zeros(n_features, dtype=bool) if is_categorical is None else np.asarray(is_categorical, dtype=bool)
    features = np.flatnonzero(categorical)
    bitsets = np.zeros((len(features), BITSET_WORDS), dtype=np.uint32)
    f_idx_map = np.zeros(n_features, dtype=np.uint32)
    f_idx_map[features] = np.arange(len(features), dtype=np.uint32)
    for row, f in enumerate(features):
        for value in per_feature[f].astype(np.int64).tolist():
            bitsets[row, value >> 5] |= np.uint32(1 << (value & 31))
    return bitsets, f_idx_map
