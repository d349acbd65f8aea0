"""Forests: RandomForest{Classifier,Regressor} and ExtraTrees{Classifier,Regressor}."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ArrayError, ConfigError
from ..record import parse_dict
from .base import (
    TREE_RUN_FITTED,
    Adapter,
    SavedModel,
    TreeParamRuns,
    attach_bagged_trees,
    build_estimator,
    decode_fitted,
    encode_fitted,
    encode_params,
    encode_tree_params,
)
from .families import ESTIMATORS, FOREST, ids_of
from .checks import check_classes, check_common, expect, get_fitted
from .trees import TREE_FITTED, check_tree_attributes, decode_tree_param_runs, trees_layout

FOREST_FITTED = (
    "n_features_in_",
    "feature_names_in_",
    "n_outputs_",
    "classes_",
    "n_classes_",
    "_n_samples",
    "_n_samples_bootstrap",
    "oob_score_",
)
FOREST_ARRAYS = {
    "tree_random_state": "int64",
    "oob_decision_function_": "float64",
    "oob_prediction_": "float64",
    "sample_weight": "float64",  # ``_sample_weight``: drawn bootstrap samples depend on it
}


def _to_saved(forest: Any) -> SavedModel:
    params, unserializable = encode_params(forest)
    estimators = list(forest.estimators_)  # one pass: a lazily loaded forest reads its trees
    trees = [e.tree_ for e in estimators]
    layout = trees_layout(forest, trees, n_features=forest.n_features_in_)
    fitted = encode_fitted(forest, FOREST_FITTED)
    # Sub-estimators share everything but their tree, random_state and tree_params.
    first = estimators[0]
    fitted["estimators_"] = encode_fitted(first, TREE_FITTED, "estimators_[0].")
    runs = encode_tree_params(estimators, tree_params(forest), fitted_names=TREE_RUN_FITTED, first=first)
    if runs is not None:
        fitted["tree_params"] = runs
    arrays = {"tree_random_state": np.array([e.random_state for e in estimators], dtype=np.int64)}
    for name in ("oob_decision_function_", "oob_prediction_"):
        if hasattr(forest, name):
            arrays[name] = np.ascontiguousarray(getattr(forest, name), dtype=np.float64)
    if getattr(forest, "_sample_weight", None) is not None:
        arrays["sample_weight"] = np.ascontiguousarray(forest._sample_weight, dtype=np.float64)
    return SavedModel(params, unserializable, fitted, layout, trees, arrays)


def tree_params(forest: Any) -> dict[str, Any]:
    """The params ``forest`` gives the trees it makes now (``_make_estimator``), but
    ``random_state``: each tree's own is stored in ``fitted/tree_random_state``."""
    return {name: getattr(forest, name) for name in forest.estimator_params if name != "random_state"}


def _decode(cls: type, saved: SavedModel) -> tuple[Any, dict[str, Any], TreeParamRuns | None, list[int]]:
    """Every check of a stored forest: ``(forest, tree attributes, per-tree runs, tree random states)``."""
    forest = build_estimator(cls, saved.params, saved.unserializable_params)
    classifier = ESTIMATORS[cls.__name__].is_classifier
    raw = dict(saved.fitted)
    sub_raw = parse_dict("config.fitted.estimators_", raw.pop("estimators_", None))
    runs_raw = raw.pop("tree_params", None)
    fitted = decode_fitted(raw, FOREST_FITTED)
    sub_fitted = decode_fitted(sub_raw, TREE_FITTED)
    layout = saved.layout
    check_common(fitted, layout)
    n_outputs = expect("config.fitted.n_outputs_", get_fitted(fitted, "n_outputs_"), (int, np.integer))
    if n_outputs != layout.n_outputs:
        raise ConfigError(f"config.fitted.n_outputs_: {n_outputs}, but trees have {layout.n_outputs} outputs")
    if classifier:
        check_classes("config.fitted", fitted, layout)
    check_tree_attributes("config.fitted.estimators_", sub_fitted, layout, classifier=classifier)

    random_states = saved.arrays.get("tree_random_state")
    if random_states is None or random_states.shape != (layout.n_trees,):
        raise ArrayError(f"fitted/tree_random_state: expected {layout.n_trees} int64 values")
    for name in ("oob_decision_function_", "oob_prediction_"):
        if name in saved.arrays:
            fitted[name] = saved.arrays[name]
    sample_weight = saved.arrays.get("sample_weight")
    n_samples = fitted.get("_n_samples")
    if sample_weight is not None and (sample_weight.ndim != 1 or sample_weight.shape[0] != n_samples):
        raise ArrayError(f"fitted/sample_weight: shape {sample_weight.shape}, expected ({n_samples},)")
    fitted["_sample_weight"] = sample_weight
    forest.__dict__.update(fitted)
    forest._validate_estimator()
    tree_cls = type(forest.estimator_)

    runs = decode_tree_param_runs(
        runs_raw, tree_cls=tree_cls, expected=tree_params(forest), sub_fitted=sub_fitted, layout=layout, classifier=classifier
    )
    return forest, sub_fitted, runs, random_states.tolist()


def _check_saved(cls: type, saved: SavedModel) -> None:
    _decode(cls, saved)


def _from_saved(cls: type, saved: SavedModel) -> Any:
    forest, sub_fitted, runs, random_states = _decode(cls, saved)
    attach_bagged_trees(forest, saved, sub_fitted, runs, random_states)
    if saved.is_partial:
        # A subset of trees is a smaller forest: out-of-bag results no longer apply.
        forest.n_estimators = len(forest.estimators_)
        for name in ("oob_score_", "oob_decision_function_", "oob_prediction_"):
            forest.__dict__.pop(name, None)
    return forest


def _adapter(name: str) -> Adapter:
    return Adapter(name, (ESTIMATORS[name].module, name), _to_saved, _from_saved, FOREST_ARRAYS, check_saved=_check_saved)


ADAPTERS = [_adapter(name) for name in ids_of(FOREST)]
