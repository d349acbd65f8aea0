"""Model set-up: what the config record says about the model, checked, and the node columns read.

:func:`model_from_config` turns a :class:`~treeshard.record.Config` into a
:class:`Model` (fitted attributes, family flags, gradient boosting's learning
rate, link and init prediction), checking every field the predictor relies on;
:func:`read_columns` reads the node columns prediction needs through a
:class:`~treeshard.reader.StoreReader` and validates them as a load does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..adapters.base import decode_fitted, decode_param, decode_value
from ..adapters.checks import (
    DUMMY_FITTED,
    check_classes,
    check_common,
    check_init_fitted,
    check_init_record,
    check_regressor_trees,
    check_single_tree,
    check_stages,
)
from ..adapters.families import BOOSTING, ESTIMATORS, TREE, family_of
from ..columns import NODE_COLUMNS, TREE_PTR_DTYPE, NodeColumns, check_weighted_counts, counts_to_fractions
from ..errors import ArrayError, ConfigError, UnsupportedEstimatorError
from ..record import Config, TreeLayout, parse_dict, require
from ..validate import check_trees
from .links import binary_init, multinomial_init

if TYPE_CHECKING:
    from ..reader import StoreReader

#: Fitted attributes the predictor reads (the others describe training, not prediction).
_FITTED = ("n_features_in_", "feature_names_in_", "classes_", "n_classes_", "n_trees_per_iteration_", "n_estimators_")
#: Node columns the predictor reads; the others (impurity, sample counts) are never decoded.
PREDICT_COLUMNS = ("left_child_offset", "right_child_offset", "feature", "threshold", "missing_go_to_left", "value")


@dataclass
class Model:
    """What a :class:`~treeshard.Predictor` knows of its model besides the trees (all checked)."""

    estimator: str
    family: str
    is_classifier: bool
    n_features_in_: int
    n_outputs_: int
    n_estimators: int
    allow_nan: bool
    feature_names_in_: np.ndarray | None = None
    classes_: Any = None
    n_classes_: Any = None
    # gradient boosting only: trees per stage, learning rate, link and the init's raw prediction
    k: int = 1
    learning_rate: float = 1.0
    link: str | None = None
    init_raw: np.ndarray | None = None


def model_from_config(config: Config) -> Model:
    """The :class:`Model` of ``config``, every fitted attribute checked against the trees' layout."""
    layout = config.trees
    family = family_of(config.estimator)
    if family is None:
        raise UnsupportedEstimatorError(f"Predictor does not support {config.estimator}")
    kind = ESTIMATORS[config.estimator]
    # Only what prediction reads, decoded: the checks are the adapters' (adapters.checks).
    fitted = {name: decode_value(f"config.fitted.{name}", config.fitted[name]) for name in _FITTED if name in config.fitted}
    check_common(fitted, layout)
    model = Model(
        estimator=config.estimator,
        family=family,
        is_classifier=kind.is_classifier,
        n_features_in_=int(fitted["n_features_in_"]),
        n_outputs_=layout.n_outputs,
        n_estimators=layout.n_trees,
        # sklearn's predict takes NaN where the tree estimator does (never gradient boosting's)
        allow_nan=kind.takes_nan or config.params.get("splitter") == "random",
    )
    if "feature_names_in_" in fitted:
        model.feature_names_in_ = fitted["feature_names_in_"]
    if family == TREE:
        check_single_tree(layout)
    if family == BOOSTING:
        _setup_boosting(model, config, fitted)
    elif kind.is_classifier:
        check_classes("config.fitted", fitted, layout)
        model.classes_, model.n_classes_ = fitted["classes_"], fitted["n_classes_"]
    else:
        check_regressor_trees("config.trees", layout)
    return model


def _setup_boosting(model: Model, config: Config, fitted: dict[str, Any]) -> None:
    model.k, _ = check_stages(fitted, config.trees, classifier=model.is_classifier)
    learning_rate = decode_param("config.params.learning_rate", config.params.get("learning_rate"))  # maybe a numpy scalar
    if isinstance(learning_rate, (bool, np.bool_)) or not isinstance(learning_rate, (int, float, np.integer, np.floating)) or not math.isfinite(learning_rate):
        raise ConfigError(f"config.params.learning_rate: expected a number, got {learning_rate!r}")
    model.learning_rate = float(learning_rate)
    model.n_estimators = config.trees.n_trees // model.k  # the stored stages (n_estimators_ may count one more)
    loss = config.params.get("loss")
    if model.is_classifier:
        if loss not in ("log_loss", "exponential") or (loss == "exponential" and model.k != 1):
            raise ConfigError(f"config.params.loss: {loss!r} is not a loss of this classifier")
        model.classes_, model.n_classes_ = fitted["classes_"], int(fitted["n_classes_"])
        model.link = "multinomial" if model.k > 1 else ("half_logit" if loss == "exponential" else "logit")
    model.init_raw = _init_raw_prediction(model, config, config.fitted.get("init_"))


def _init_raw_prediction(model: Model, config: Config, record: Any) -> np.ndarray:
    """The init estimator's raw prediction, shape (K,): the same for every row."""
    where = "config.fitted.init_"
    if record == "zero":
        return np.zeros(model.k, dtype=np.float64)
    record = check_init_record(where, record, estimator_id=model.estimator, classifier=model.is_classifier)
    fitted = decode_fitted(parse_dict(f"{where}.fitted", require(where, record, "fitted")), DUMMY_FITTED)
    n_classes = len(model.classes_) if model.is_classifier else 1
    check_init_fitted(where, fitted, classifier=model.is_classifier, n_classes=n_classes, n_features=config.trees.n_features)
    if not model.is_classifier:
        # DummyRegressor.predict(X).astype(float64); the identity link keeps it.
        return np.full((1, 1), fitted["constant_"]).astype(np.float64).reshape(1)
    prior = fitted["class_prior_"]
    if model.link == "multinomial":
        return multinomial_init(prior)
    return np.array([binary_init(prior, half=model.link == "half_logit")], dtype=np.float64)


def read_columns(
    reader: StoreReader, runs: list[tuple[int, int]], selected: TreeLayout
) -> tuple[NodeColumns, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """The node columns prediction needs, for the trees of ``runs`` (``(first, stop)`` ranges of
    stored trees), concatenated and validated against ``selected``, their layout.

    Returns the columns, the leaf counts and weights of a ``weighted_counts`` store (else None:
    ``value`` holds the values) and each tree's depth.
    """
    layout = reader.config.trees
    encoding = layout.value_encoding
    tree_ptr = reader.tree_ptr  # read and checked by the reader
    needed = set(PREDICT_COLUMNS) | ({"weighted_n_node_samples"} if encoding != "float64" else set())
    unread = [name for name in NODE_COLUMNS if name not in needed]
    for name in unread:  # not decoded, but a store with a broken one is refused as by a load
        reader.node_array(name)
    try:
        arrays = reader.read_columns([name for name in NODE_COLUMNS if name in needed], [(int(tree_ptr[first]), int(tree_ptr[stop])) for first, stop in runs])
        # Not needed to predict: never decoded. Zeros (calloc: no page is touched) stand in
        # for validation, allocated only now that the stored columns proved their size.
        arrays.update((name, np.zeros(selected.n_nodes, dtype=NODE_COLUMNS[name])) for name in unread)
    except MemoryError:
        raise ArrayError(f"nodes: {selected.n_nodes} declared nodes do not fit in memory") from None
    counts = np.concatenate([np.diff(tree_ptr[first : stop + 1]) for first, stop in runs])
    local_ptr = np.zeros(len(counts) + 1, dtype=TREE_PTR_DTYPE)
    np.cumsum(counts, out=local_ptr[1:])
    leaf_counts = weights = None
    if encoding == "weighted_counts":
        # value = counts / weighted_n_node_samples (columns.decode_values), done at predict
        # time for the leaves reached only: the same division, so the same bits.
        leaf_counts, weights = arrays["value"], arrays["weighted_n_node_samples"]
        check_weighted_counts(leaf_counts, weights)  # as a load: a malformed store, not inf/NaN
        arrays["value"] = np.zeros(arrays["value"].shape, dtype=NODE_COLUMNS["value"])
    elif encoding == "class_counts":  # written under sklearn < 1.4: predicted as it predicts them
        arrays["value"] = counts_to_fractions(arrays["value"], reader.config.trees.n_classes)
    elif encoding != "float64":
        raise ConfigError(f"config.trees.value_encoding: unknown encoding {encoding!r}")
    columns = NodeColumns(tree_ptr=local_ptr, **arrays)
    return columns, leaf_counts, weights, check_trees(columns, selected)[1]
