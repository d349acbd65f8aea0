"""Single decision trees: DecisionTree{Classifier,Regressor}, ExtraTree{Classifier,Regressor}.

Also home of the helpers that describe a fitted tree estimator, which the
forest and gradient-boosting adapters reuse for their sub-estimators.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..record import TreeLayout
from .base import (
    Adapter,
    SavedModel,
    build_estimator,
    check_common,
    check_labels,
    decode_fitted,
    encode_fitted,
    encode_params,
    expect,
    get_fitted,
)

TREE_FITTED = ("n_features_in_", "feature_names_in_", "n_outputs_", "classes_", "n_classes_", "max_features_")


def tree_n_classes(estimator: Any) -> tuple[int, ...]:
    """Classes per output of a fitted tree or ensemble (1s for regression)."""
    if hasattr(estimator, "classes_"):
        return tuple(int(k) for k in np.atleast_1d(estimator.n_classes_))
    return (1,) * estimator.n_outputs_


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
        if set(layout.n_classes) != {1}:
            raise ConfigError(f"{where}: a regressor's trees must have 1 class per output")
        return
    check_classes(where, attrs, layout)


def check_classes(where: str, attrs: dict[str, Any], layout: TreeLayout) -> None:
    classes, n_classes = get_fitted(attrs, "classes_"), get_fitted(attrs, "n_classes_")
    if layout.n_outputs == 1:
        check_labels(f"{where}.classes_", classes, layout.n_classes[0])
        expect(f"{where}.n_classes_", n_classes, (int, np.integer), lambda k: k == layout.n_classes[0], str(layout.n_classes[0]))
        return
    expect(f"{where}.classes_", classes, list, lambda c: len(c) == layout.n_outputs, f"a list of {layout.n_outputs} arrays")
    for k, labels in enumerate(classes):
        check_labels(f"{where}.classes_[{k}]", labels, layout.n_classes[k])
    if not (isinstance(n_classes, (list, np.ndarray)) and list(n_classes) == list(layout.n_classes)):
        raise ConfigError(f"{where}.n_classes_: expected {list(layout.n_classes)}")


def _to_saved(estimator: Any) -> SavedModel:
    params, unserializable = encode_params(estimator)
    tree = estimator.tree_
    layout = TreeLayout(
        n_trees=1,
        n_nodes=tree.node_count,
        n_features=estimator.n_features_in_,
        n_outputs=estimator.n_outputs_,
        n_classes=tree_n_classes(estimator),
    )
    return SavedModel(params, unserializable, encode_fitted(estimator, TREE_FITTED), layout, [tree])


def _from_saved(cls: type, saved: SavedModel) -> Any:
    from sklearn.base import is_classifier

    estimator = build_estimator(cls, saved.params, saved.unserializable_params)
    fitted = decode_fitted(saved.fitted, TREE_FITTED)
    check_common(fitted, saved.layout)
    check_tree_attributes("config.fitted", fitted, saved.layout, classifier=is_classifier(estimator))
    if saved.layout.n_trees != 1:
        raise ConfigError(f"config.trees.n_trees: a single tree estimator has 1 tree, not {saved.layout.n_trees}")
    estimator.__dict__.update(fitted)
    estimator.tree_ = saved.estimators(lambda tree, index: tree)[0]
    return estimator


def _adapter(name: str) -> Adapter:
    return Adapter(name, ("sklearn.tree", name), _to_saved, _from_saved)


ADAPTERS = [
    _adapter("DecisionTreeClassifier"),
    _adapter("DecisionTreeRegressor"),
    _adapter("ExtraTreeClassifier"),
    _adapter("ExtraTreeRegressor"),
]
