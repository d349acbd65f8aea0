"""Single decision trees: DecisionTree{Classifier,Regressor}, ExtraTree{Classifier,Regressor}.

Also home of the helpers that describe a fitted tree estimator, which the
forest and gradient-boosting adapters reuse for their sub-estimators.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, UnsupportedEstimatorError
from ..record import TreeLayout
from .families import ESTIMATORS, TREE, ids_of
from .base import (
    Adapter,
    SavedModel,
    build_estimator,
    decode_fitted,
    decode_tree_params,
    encode_fitted,
    encode_params,
)
from .checks import check_classes, check_common, check_regressor_trees, check_single_tree, expect, get_fitted

TREE_FITTED = ("n_features_in_", "feature_names_in_", "n_outputs_", "classes_", "n_classes_", "max_features_")


def trees_layout(owner: Any, trees: Sequence, *, n_features: int) -> TreeLayout:
    """The layout of sklearn ``Tree`` objects, read from the trees themselves.

    Save checks the estimator's own attributes against this layout with the
    rules load uses, so that it never writes a store that load refuses;
    trees that disagree with each other cannot be stored.
    """
    first = trees[0]
    n_outputs, n_classes = int(first.n_outputs), tuple(int(k) for k in first.n_classes)
    for i, tree in enumerate(trees):
        if tree.n_outputs != n_outputs or tuple(int(k) for k in tree.n_classes) != n_classes or tree.n_features != n_features:
            raise UnsupportedEstimatorError(
                f"{type(owner).__name__}: tree {i} has {tree.n_features} features, {tree.n_outputs} outputs and "
                f"{[int(k) for k in tree.n_classes]} classes, but tree 0 has {n_features} features, {n_outputs} outputs and {list(n_classes)} classes"
            )
    return TreeLayout(
        n_trees=len(trees), n_nodes=sum(t.node_count for t in trees), n_features=n_features, n_outputs=n_outputs, n_classes=n_classes
    )


def check_tree_attributes(where: str, attrs: dict[str, Any], layout: TreeLayout, *, classifier: bool) -> None:
    """The fitted attributes of a tree estimator agree with the stored trees."""
    n_outputs = expect(f"{where}.n_outputs_", get_fitted(attrs, "n_outputs_"), (int, np.integer))
    if n_outputs != layout.n_outputs:
        raise ConfigError(f"{where}.n_outputs_: {n_outputs}, but trees have {layout.n_outputs} outputs")
    if "n_features_in_" in attrs:
        n_features = expect(f"{where}.n_features_in_", attrs["n_features_in_"], (int, np.integer))
        if n_features != layout.n_features:
            raise ConfigError(f"{where}.n_features_in_: {n_features}, but trees have {layout.n_features} features")
    max_features = expect(f"{where}.max_features_", get_fitted(attrs, "max_features_"), (int, np.integer))
    if not 1 <= max_features <= layout.n_features:
        raise ConfigError(f"{where}.max_features_: {max_features} out of range [1, {layout.n_features}]")
    if not classifier:
        if "classes_" in attrs or "n_classes_" in attrs:
            raise ConfigError(f"{where}: a regressor has no classes_")
        check_regressor_trees(where, layout)
        return
    check_classes(where, attrs, layout)


def decode_tree_param_runs(
    record: Any, *, tree_cls: type, expected: dict[str, Any], sub_fitted: dict[str, Any], layout: TreeLayout, classifier: bool
) -> Any:
    """An ensemble's ``config.fitted.tree_params`` runs, decoded; each run's fitted
    overrides, on top of the trees' common ``sub_fitted``, must agree with the stored trees."""

    def check_run_fitted(run_fitted: dict[str, Any]) -> None:
        check_tree_attributes("config.fitted.tree_params", {**sub_fitted, **run_fitted}, layout, classifier=classifier)

    where = "config.fitted.tree_params"
    return decode_tree_params(where, record, tree_cls=tree_cls, expected=expected, n_trees=layout.n_trees, fitted_check=check_run_fitted)


def _to_saved(estimator: Any) -> SavedModel:
    params, unserializable = encode_params(estimator)
    tree = estimator.tree_
    layout = trees_layout(estimator, [tree], n_features=estimator.n_features_in_)
    return SavedModel(params, unserializable, encode_fitted(estimator, TREE_FITTED), layout, [tree])


def _check_saved(cls: type, saved: SavedModel) -> Any:
    """Every check of a stored single tree: the estimator with its params and fitted attributes."""
    estimator = build_estimator(cls, saved.params, saved.unserializable_params)
    fitted = decode_fitted(saved.fitted, TREE_FITTED)
    check_common(fitted, saved.layout)
    check_tree_attributes("config.fitted", fitted, saved.layout, classifier=ESTIMATORS[cls.__name__].is_classifier)
    check_single_tree(saved.layout)
    estimator.__dict__.update(fitted)
    return estimator


def _from_saved(cls: type, saved: SavedModel) -> Any:
    estimator = _check_saved(cls, saved)
    estimator.tree_ = saved.estimators(lambda tree, index: tree)[0]
    return estimator


def _adapter(name: str) -> Adapter:
    return Adapter(name, (ESTIMATORS[name].module, name), _to_saved, _from_saved, check_saved=_check_saved)


ADAPTERS = [_adapter(name) for name in ids_of(TREE)]
