"""IsolationForest: a forest of ExtraTreeRegressors, each on a subset of the columns.

Stored as in ``docs/FORMAT.md`` section 6.3: the trees (``n_features =
_max_features``), each tree's columns (``estimators_features_``), the per-node
path lengths sklearn computed at fit time (stored, never recomputed: one of
them goes through ``np.log``) and what ``estimators_samples_`` is rebuilt from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ArrayError, ConfigError, UnsupportedEstimatorError
from ..record import Config, TreeLayout, parse_dict, parse_int
from .base import (
    TREE_RUN_FITTED,
    Adapter,
    SavedModel,
    TreeParamRuns,
    attach_bagged_trees,
    build_estimator,
    decode_fitted,
    decode_value,
    encode_fitted,
    encode_params,
    encode_tree_params,
)
from .checks import expect, get_fitted
from .families import ESTIMATORS, ISOLATION, ids_of
from .trees import TREE_FITTED, check_tree_attributes, decode_tree_param_runs, trees_layout

#: Fitted attributes of the record (``estimator_``, ``estimators_`` and ``tree_params`` are nested records).
IFOREST_FITTED = ("n_features_in_", "feature_names_in_", "_n_samples", "_max_samples", "max_samples_", "_max_features", "offset_")
IFOREST_ARRAYS = {
    "tree_random_state": "int64",
    "estimators_features_": "int64",
    "decision_path_lengths": "int64",
    "average_path_length_per_tree": "float64",
    "seeds": "int64",
    "sample_weight": "float64",  # ``_sample_weight`` (sklearn 1.8+): drawn samples depend on it
}
#: ``_seeds`` come from ``randint(MAX_INT)``; ``check_random_state`` takes any seed below this.
SEED_LIMIT = 2**32


@dataclass(frozen=True)
class IsolationArrays:
    """The checked per-tree and per-node arrays of a stored IsolationForest."""

    random_states: np.ndarray  # (n_trees,)
    features: np.ndarray  # (n_trees, _max_features)
    decision_path_lengths: np.ndarray  # (n_nodes,)
    average_path_lengths: np.ndarray  # (n_nodes,)
    seeds: np.ndarray  # (<= n_trees,): of the last len(seeds) trees


def _to_saved(forest: Any) -> SavedModel:
    params, unserializable = encode_params(forest)
    estimators = list(forest.estimators_)  # one pass: a lazily loaded forest reads its trees
    trees = [e.tree_ for e in estimators]
    layout = trees_layout(forest, trees, n_features=forest._max_features)
    fitted = encode_fitted(forest, IFOREST_FITTED)
    first = estimators[0]
    fitted["estimator_"] = {"max_depth": forest.estimator_.max_depth}
    fitted["estimators_"] = encode_fitted(first, TREE_FITTED, "estimators_[0].")
    runs = encode_tree_params(estimators, template_params(forest.estimator_), fitted_names=TREE_RUN_FITTED, first=first)
    if runs is not None:
        fitted["tree_params"] = runs
    features = list(forest.estimators_features_)
    if len(features) != len(trees) or any(np.shape(f) != (forest._max_features,) for f in features):
        raise UnsupportedEstimatorError(f"IsolationForest: estimators_features_ must hold {len(trees)} arrays of {forest._max_features} columns")
    lengths, averages = list(forest._decision_path_lengths), list(forest._average_path_length_per_tree)
    for i, tree in enumerate(trees):
        if len(lengths) != len(trees) or len(averages) != len(trees) or not np.shape(lengths[i]) == np.shape(averages[i]) == (tree.node_count,):
            raise UnsupportedEstimatorError(f"IsolationForest: the path lengths of tree {i} do not match its {tree.node_count} nodes")
    arrays = {
        "tree_random_state": np.array([e.random_state for e in estimators], dtype=np.int64),
        "estimators_features_": np.array(features, dtype=np.int64).reshape(len(trees), forest._max_features),
        "decision_path_lengths": np.concatenate(lengths).astype(np.int64, copy=False),
        "average_path_length_per_tree": np.concatenate(averages).astype(np.float64, copy=False),
        "seeds": np.asarray(forest._seeds, dtype=np.int64),
    }
    if getattr(forest, "_sample_weight", None) is not None:
        arrays["sample_weight"] = np.ascontiguousarray(forest._sample_weight, dtype=np.float64)
    return SavedModel(params, unserializable, fitted, layout, trees, arrays)


def template_params(template: Any) -> dict[str, Any]:
    """The params the forest gives the trees it makes now (clones of ``estimator_``), but
    ``random_state``: each tree's own is stored in ``fitted/tree_random_state``."""
    return {name: value for name, value in template.get_params(deep=False).items() if name != "random_state"}


def check_isolation_fitted(fitted: dict[str, Any], layout: TreeLayout) -> None:
    """The record's attributes agree with each other and with the trees (``docs/FORMAT.md`` 6.3)."""
    where = "config.fitted"
    if layout.n_outputs != 1 or layout.n_classes != (1,):
        raise ConfigError("config.trees: an IsolationForest's trees have one output and one value")
    n_features = expect(f"{where}.n_features_in_", get_fitted(fitted, "n_features_in_"), (int, np.integer))
    if n_features < layout.n_features:
        raise ConfigError(f"{where}.n_features_in_: {n_features}, fewer than the trees' {layout.n_features} features")
    if "feature_names_in_" in fitted:
        expect(
            f"{where}.feature_names_in_",
            fitted["feature_names_in_"],
            np.ndarray,
            lambda a: a.dtype == object and a.shape == (n_features,),
            f"an object array of {n_features} strings",
        )
    max_features = expect(f"{where}._max_features", get_fitted(fitted, "_max_features"), (int, np.integer))
    if max_features != layout.n_features:
        raise ConfigError(f"{where}._max_features: {max_features}, but trees have {layout.n_features} features")
    for name in ("_n_samples", "_max_samples", "max_samples_"):
        expect(f"{where}.{name}", get_fitted(fitted, name), (int, np.integer), lambda v: v >= 1, "a positive integer")
    expect(f"{where}.offset_", get_fitted(fitted, "offset_"), (float, np.floating), lambda v: math.isfinite(v), "a finite float")


def check_isolation_arrays(arrays: dict[str, np.ndarray], fitted: dict[str, Any], layout: TreeLayout, *, bootstrap: bool) -> IsolationArrays:
    """The fitted arrays have the shapes the layout gives them and values in range."""

    def get(name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        array = arrays.get(name)
        if array is None:
            raise ArrayError(f"fitted/{name}: missing")
        if shape is not None and array.shape != shape:
            raise ArrayError(f"fitted/{name}: shape {array.shape}, expected {shape}")
        return array

    n_samples = int(fitted["_n_samples"])
    if not bootstrap and fitted["_max_samples"] > n_samples:
        raise ConfigError(f"config.fitted._max_samples: {fitted['_max_samples']} samples drawn without replacement from {n_samples}")
    random_states = get("tree_random_state", (layout.n_trees,))
    features = get("estimators_features_", (layout.n_trees, layout.n_features))
    if features.size and (features.min() < 0 or features.max() >= fitted["n_features_in_"]):
        raise ArrayError(f"fitted/estimators_features_: a column is outside [0, {fitted['n_features_in_']})")
    lengths = get("decision_path_lengths", (layout.n_nodes,))
    if lengths.size and (lengths.min() < 1 or lengths.max() > layout.n_nodes):
        raise ArrayError(f"fitted/decision_path_lengths: a depth is outside [1, {layout.n_nodes}]")
    averages = get("average_path_length_per_tree", (layout.n_nodes,))
    if not (np.isfinite(averages).all() and (averages >= 0).all()):
        raise ArrayError("fitted/average_path_length_per_tree: values must be finite and >= 0")
    seeds = get("seeds")
    if seeds.ndim != 1 or len(seeds) > layout.n_trees:
        raise ArrayError(f"fitted/seeds: shape {seeds.shape}, expected at most {layout.n_trees} values")
    if seeds.size and (seeds.min() < 0 or seeds.max() >= SEED_LIMIT):
        raise ArrayError("fitted/seeds: a seed is outside [0, 2**32)")
    sample_weight = arrays.get("sample_weight")
    if sample_weight is not None and sample_weight.shape != (n_samples,):
        raise ArrayError(f"fitted/sample_weight: shape {sample_weight.shape}, expected ({n_samples},)")
    return IsolationArrays(random_states, features, lengths, averages, seeds)


def _decode(cls: type, saved: SavedModel) -> tuple[Any, dict[str, Any], TreeParamRuns | None, IsolationArrays]:
    """Every check of a stored IsolationForest: ``(forest, tree attributes, per-tree runs, arrays)``."""
    forest = build_estimator(cls, saved.params, saved.unserializable_params)
    raw = dict(saved.fitted)
    sub_raw = parse_dict("config.fitted.estimators_", raw.pop("estimators_", None))
    template_raw = parse_dict("config.fitted.estimator_", raw.pop("estimator_", None))
    runs_raw = raw.pop("tree_params", None)
    unknown = sorted(set(template_raw) - {"max_depth"})
    if unknown:
        raise ConfigError(f"config.fitted.estimator_: unknown key(s) {unknown}")
    max_depth = template_raw.get("max_depth")
    if max_depth is not None:
        max_depth = parse_int("config.fitted.estimator_.max_depth", max_depth, low=1, high=2**31 - 1)
    fitted = decode_fitted(raw, IFOREST_FITTED)
    sub_fitted = decode_fitted(sub_raw, TREE_FITTED)
    layout = saved.layout
    check_isolation_fitted(fitted, layout)
    check_tree_attributes("config.fitted.estimators_", sub_fitted, layout, classifier=False)
    arrays = check_isolation_arrays(saved.arrays, fitted, layout, bootstrap=bool(forest.bootstrap))
    forest.__dict__.update(fitted)
    forest._sample_weight = saved.arrays.get("sample_weight")
    # sklearn 1.5+ makes the template with _get_estimator(); 1.3-1.4 hold it as self.estimator
    get_estimator = getattr(forest, "_get_estimator", None)
    forest._validate_estimator(get_estimator()) if get_estimator is not None else forest._validate_estimator()
    forest.estimator_.max_depth = max_depth
    runs = decode_tree_param_runs(
        runs_raw,
        tree_cls=type(forest.estimator_),
        expected=template_params(forest.estimator_),
        sub_fitted=sub_fitted,
        layout=layout,
        classifier=False,
    )
    return forest, sub_fitted, runs, arrays


def _check_saved(cls: type, saved: SavedModel) -> None:
    _decode(cls, saved)


def _from_saved(cls: type, saved: SavedModel) -> Any:
    forest, sub_fitted, runs, arrays = _decode(cls, saved)
    attach_bagged_trees(forest, saved, sub_fitted, runs, arrays.random_states.tolist())
    n_trees = saved.layout.n_trees
    selected = np.arange(n_trees) if saved.selection is None else np.asarray(saved.selection, dtype=np.int64)
    tree_ptr = saved.tree_ptr
    if tree_ptr is None:  # straight from to_saved: the trees are at hand
        tree_ptr = np.concatenate([[0], np.cumsum([tree.node_count for tree in saved.trees])])
    forest.estimators_features_ = [arrays.features[i].copy() for i in selected]
    forest._decision_path_lengths = tuple(arrays.decision_path_lengths[tree_ptr[i] : tree_ptr[i + 1]] for i in selected)
    forest._average_path_length_per_tree = tuple(arrays.average_path_lengths[tree_ptr[i] : tree_ptr[i + 1]] for i in selected)
    # The seeds are those of the trees the last fit added: the last len(seeds) trees.
    first_seeded = n_trees - len(arrays.seeds)
    seeded = selected[selected >= first_seeded] - first_seeded
    forest._seeds = arrays.seeds[seeded].astype(np.int_, copy=False)
    if saved.is_partial:
        forest.n_estimators = len(selected)
    return forest


def describe(config: Config) -> dict[str, Any]:
    """What ``treeshard info`` shows about a stored IsolationForest, as JSON values
    (read from the record; a malformed value shows as it is stored)."""
    fitted = config.fitted

    def value(name: str) -> Any:
        try:
            decoded = decode_value(f"config.fitted.{name}", fitted.get(name))
        except ConfigError:
            return fitted.get(name)
        return decoded.item() if isinstance(decoded, np.generic) else decoded

    return {
        "n_features_in_": value("n_features_in_"),
        "_max_features": config.trees.n_features,  # columns each tree reads
        "max_samples_": value("max_samples_"),
        "contamination": config.params.get("contamination"),
        "offset_": value("offset_"),
        "bootstrap": config.params.get("bootstrap"),
    }


def _adapter(name: str) -> Adapter:
    return Adapter(name, (ESTIMATORS[name].module, name), _to_saved, _from_saved, IFOREST_ARRAYS, check_saved=_check_saved, describe=describe)


ADAPTERS = [_adapter(name) for name in ids_of(ISOLATION)]
