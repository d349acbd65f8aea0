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

from ..adapters.base import decode_param, decode_value
from ..adapters.families import BOOSTING, ESTIMATORS, FOREST, family_of
from ..adapters.gradient_boosting import stages_problem
from ..columns import NODE_COLUMNS, TREE_PTR_DTYPE, NodeColumns, check_weighted_counts
from ..errors import ArrayError, ConfigError, UnsupportedEstimatorError
from ..record import Config, TreeLayout
from ..validate import check_trees
from .links import binary_init, multinomial_init

if TYPE_CHECKING:
    from ..reader import StoreReader

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
    is_classifier = ESTIMATORS[config.estimator].is_classifier
    fitted = config.fitted

    def get(name: str) -> Any:
        if name not in fitted:
            raise ConfigError(f"config.fitted: missing required key {name!r}")
        return decode_value(f"config.fitted.{name}", fitted[name])

    n_features = get("n_features_in_")
    if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features != layout.n_features:
        raise ConfigError(f"config.fitted.n_features_in_: {n_features!r}, but trees have {layout.n_features} features")
    # sklearn accepts NaN wherever the tree estimator does (all forests and
    # decision trees; extra trees only with the random splitter), never in
    # gradient boosting's predict/decision_function.
    allow_nan = family == FOREST or config.estimator.startswith("DecisionTree") or config.params.get("splitter") == "random"
    model = Model(
        estimator=config.estimator,
        family=family,
        is_classifier=is_classifier,
        n_features_in_=int(n_features),
        n_outputs_=layout.n_outputs,
        n_estimators=layout.n_trees,
        allow_nan=allow_nan,
    )
    if "feature_names_in_" in fitted:
        names = get("feature_names_in_")
        if not (isinstance(names, np.ndarray) and names.shape == (layout.n_features,) and all(isinstance(v, str) for v in names.tolist())):
            raise ConfigError(f"config.fitted.feature_names_in_: expected {layout.n_features} strings")
        model.feature_names_in_ = names.astype(object)
    if family == BOOSTING:
        _setup_boosting(model, config, get)
    elif is_classifier:
        classes, n_classes = get("classes_"), get("n_classes_")
        if layout.n_outputs == 1:
            _check_labels("config.fitted.classes_", classes, layout.n_classes[0])
            ok = isinstance(n_classes, (int, np.integer)) and n_classes == layout.n_classes[0]
        else:
            if not (isinstance(classes, list) and len(classes) == layout.n_outputs):
                raise ConfigError(f"config.fitted.classes_: expected a list of {layout.n_outputs} arrays")
            for k, labels in enumerate(classes):
                _check_labels(f"config.fitted.classes_[{k}]", labels, layout.n_classes[k])
            ok = isinstance(n_classes, (list, np.ndarray)) and list(n_classes) == list(layout.n_classes)
        if not ok:
            raise ConfigError(f"config.fitted.n_classes_: {n_classes!r} does not match the trees' {list(layout.n_classes)}")
        model.classes_, model.n_classes_ = classes, n_classes
    elif set(layout.n_classes) != {1}:
        raise ConfigError("config.trees.n_classes: a regressor's trees have 1 class per output")
    return model


def _setup_boosting(model: Model, config: Config, get: Any) -> None:
    layout = config.trees
    if layout.n_outputs != 1 or layout.n_classes != (1,):
        raise ConfigError("config.trees: gradient boosting trees have one output and one value")
    k = get("n_trees_per_iteration_")
    stages = get("n_estimators_")
    for name, value in (("n_trees_per_iteration_", k), ("n_estimators_", stages)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"config.fitted.{name}: expected a positive integer, got {value!r}")
    problem = stages_problem(layout.n_trees, k, n_estimators=stages)
    if problem:
        raise ConfigError(f"config.fitted.n_estimators_: {problem}")
    learning_rate = decode_param("config.params.learning_rate", config.params.get("learning_rate"))  # maybe a numpy scalar
    if isinstance(learning_rate, (bool, np.bool_)) or not isinstance(learning_rate, (int, float, np.integer, np.floating)) or not math.isfinite(learning_rate):
        raise ConfigError(f"config.params.learning_rate: expected a number, got {learning_rate!r}")
    model.learning_rate = float(learning_rate)
    model.k, model.n_estimators = k, layout.n_trees // k  # the stored stages (n_estimators_ may count one more)
    loss = config.params.get("loss")
    if model.is_classifier:
        classes = get("classes_")
        n_classes = get("n_classes_")
        _check_labels("config.fitted.classes_", classes, max(2, len(classes)) if isinstance(classes, np.ndarray) else 2)
        if n_classes != len(classes) or k != (1 if len(classes) == 2 else len(classes)):
            raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k} does not fit {len(classes)} classes")
        if loss not in ("log_loss", "exponential") or (loss == "exponential" and k != 1):
            raise ConfigError(f"config.params.loss: {loss!r} is not a loss of this classifier")
        model.classes_, model.n_classes_ = classes, int(n_classes)
        model.link = "multinomial" if k > 1 else ("half_logit" if loss == "exponential" else "logit")
    elif k != 1:
        raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k}, a regressor has 1")
    model.init_raw = _init_raw_prediction(model, config.fitted.get("init_"))


def _init_raw_prediction(model: Model, record: Any) -> np.ndarray:
    """The init estimator's raw prediction, shape (K,): the same for every row."""
    where = "config.fitted.init_"
    if record == "zero":
        return np.zeros(model.k, dtype=np.float64)
    if not isinstance(record, dict) or not isinstance(record.get("fitted"), dict):
        raise ConfigError(f"{where}: expected 'zero' or a DummyClassifier/DummyRegressor record")
    fitted = record["fitted"]
    expected = "DummyClassifier" if model.is_classifier else "DummyRegressor"
    if record.get("estimator") != expected:
        raise ConfigError(f"{where}.estimator: {str(record.get('estimator'))[:40]!r}, expected {expected}")
    if not model.is_classifier:
        constant = decode_value(f"{where}.fitted.constant_", fitted.get("constant_"))
        if not (isinstance(constant, np.ndarray) and constant.shape == (1, 1) and constant.dtype.kind in "fiu"):
            raise ConfigError(f"{where}.fitted.constant_: expected a (1, 1) numeric array")
        # DummyRegressor.predict(X).astype(float64); the identity link keeps it.
        return np.full((1, 1), constant).astype(np.float64).reshape(1)
    strategy = decode_value(f"{where}.fitted._strategy", fitted.get("_strategy"))
    if strategy != "prior":
        raise UnsupportedEstimatorError(f"{where}: DummyClassifier strategy {strategy!r} is not supported (only 'prior')")
    prior = decode_value(f"{where}.fitted.class_prior_", fitted.get("class_prior_"))
    if not (isinstance(prior, np.ndarray) and prior.shape == (len(model.classes_),) and prior.dtype == np.float64):
        raise ConfigError(f"{where}.fitted.class_prior_: expected {len(model.classes_)} float64 values")
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
    elif encoding != "float64":
        raise ConfigError(f"config.trees.value_encoding: unknown encoding {encoding!r}")
    columns = NodeColumns(tree_ptr=local_ptr, **arrays)
    return columns, leaf_counts, weights, check_trees(columns, selected)[1]


def _check_labels(where: str, labels: Any, n_classes: int) -> None:
    """``labels`` is a 1-D array of ``n_classes`` distinct labels (no np.unique: it imports numpy.ma)."""
    if not (isinstance(labels, np.ndarray) and labels.ndim == 1 and len(labels) == n_classes and len(set(labels.tolist())) == n_classes):
        raise ConfigError(f"{where}: expected an array of {n_classes} distinct labels")
