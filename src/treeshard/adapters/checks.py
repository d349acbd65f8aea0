"""Checks of fitted attributes against the stored trees, written once for every reader.

sklearn-free: the adapters (before building an estimator) and the
:class:`~treeshard.Predictor` (which never imports sklearn) call the same
functions, so a store one of them refuses the other refuses with the same
message. Each function takes decoded fitted attributes (``config.fitted`` after
:func:`~treeshard.adapters.base.decode_value`) and the trees' layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..record import TreeLayout, parse_dict, parse_str, require

#: Fitted attributes of gradient boosting's ``init_`` (a ``DummyClassifier`` or ``DummyRegressor``).
DUMMY_FITTED = ("n_features_in_", "_strategy", "sparse_output_", "n_outputs_", "classes_", "n_classes_", "class_prior_", "constant_")
DUMMY_CLASSES = {"DummyClassifier", "DummyRegressor"}


def expect(where: str, value: Any, kind: type | tuple[type, ...], check: Callable[[Any], bool] | None = None, what: str = "") -> Any:
    """Raise :class:`ConfigError` unless ``value`` has the type (and passes ``check``)."""
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}: expected {what or kind}, got a boolean")
    if not isinstance(value, kind) or (check is not None and not check(value)):
        raise ConfigError(f"{where}: expected {what or kind}, got {type(value).__name__} {str(value)[:60]}")
    return value


def get_fitted(fitted: dict[str, Any], name: str) -> Any:
    """``fitted[name]``, or a :class:`ConfigError` naming the missing key."""
    return require("config.fitted", fitted, name)


def check_common(fitted: dict[str, Any], layout: TreeLayout) -> None:
    """``n_features_in_`` and ``feature_names_in_`` agree with the trees."""
    n_features = expect("config.fitted.n_features_in_", get_fitted(fitted, "n_features_in_"), (int, np.integer))
    if n_features != layout.n_features:
        raise ConfigError(f"config.fitted.n_features_in_: {n_features}, but trees have {layout.n_features} features")
    if "feature_names_in_" in fitted:
        expect(
            "config.fitted.feature_names_in_",
            fitted["feature_names_in_"],
            np.ndarray,
            lambda a: a.dtype == object and a.shape == (layout.n_features,) and all(isinstance(v, str) for v in a.tolist()),
            f"an object array of {layout.n_features} strings",
        )


def check_labels(where: str, labels: Any, n_classes: int) -> None:
    """``labels`` is a 1-D array of ``n_classes`` distinct labels, NaN counted once as by
    ``np.unique`` (which is not called: it imports numpy.ma, a cost the Predictor does not pay)."""
    expect(where, labels, np.ndarray, lambda a: a.ndim == 1 and len(a) == n_classes and _n_distinct(a) == n_classes, f"an array of {n_classes} distinct labels")


def _n_distinct(values: np.ndarray) -> int:
    if values.dtype.kind in "fc":
        nan = np.isnan(values)
        return len(set(values[~nan].tolist())) + int(nan.any())
    return len(set(values.tolist()))


def check_classes(where: str, attrs: dict[str, Any], layout: TreeLayout) -> None:
    """A classifier's ``classes_`` and ``n_classes_`` (per output) agree with the trees."""
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


def check_regressor_trees(where: str, layout: TreeLayout) -> None:
    """A regressor's trees hold one value per output."""
    if set(layout.n_classes) != {1}:
        raise ConfigError(f"{where}: a regressor's trees must have 1 class per output")


def check_single_tree(layout: TreeLayout) -> None:
    """A single-tree estimator stores exactly one tree."""
    if layout.n_trees != 1:
        raise ConfigError(f"config.trees.n_trees: a single tree estimator has 1 tree, not {layout.n_trees}")


def stages_problem(n_trees: int, k: int, *, n_estimators: int) -> str | None:
    """Why ``n_estimators_`` does not fit ``n_trees`` stored trees of ``k`` per stage (``None``: it does).

    Shared by save, load and the Predictor. sklearn reports one stage more
    than it holds after a warm-start ``fit`` that adds no stage
    (``_fit_stages`` returns ``begin_at_stage + 1``); predictions use the
    stored stages, so that count is kept as sklearn has it.
    """
    if n_trees % k:
        return f"{n_trees} trees are not whole stages of {k} trees"
    if n_estimators not in (n_trees // k, n_trees // k + 1):
        return f"{n_estimators} stages of {k} trees, but {n_trees} trees are stored"
    return None


def check_stages(fitted: dict[str, Any], layout: TreeLayout, *, classifier: bool) -> tuple[int, int]:
    """Gradient boosting's stages: trees per stage (``n_trees_per_iteration_``, which must fit
    the classes) and ``n_estimators_`` agree with the stored trees. Returns both."""
    if layout.n_outputs != 1 or layout.n_classes != (1,):
        raise ConfigError("config.trees: gradient boosting trees have one output and one value")
    k = expect("config.fitted.n_trees_per_iteration_", get_fitted(fitted, "n_trees_per_iteration_"), int, lambda v: v >= 1, "a positive integer")
    if classifier:
        n_classes = get_fitted(fitted, "n_classes_")
        classes_layout = TreeLayout(1, 1, layout.n_features, 1, (int(n_classes) if isinstance(n_classes, (int, np.integer)) and n_classes >= 2 else 2,))
        check_classes("config.fitted", fitted, classes_layout)
        if k != (1 if n_classes == 2 else n_classes):
            raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k} does not fit {n_classes} classes")
    elif k != 1:
        raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k}, a regressor has 1")
    n_estimators = expect("config.fitted.n_estimators_", get_fitted(fitted, "n_estimators_"), int, lambda v: v >= 1, "a positive integer")
    problem = stages_problem(layout.n_trees, k, n_estimators=n_estimators)
    if problem:
        raise ConfigError(f"config.fitted.n_estimators_: {problem}")
    return k, n_estimators


def check_init_record(where: str, record: Any, *, estimator_id: str, classifier: bool) -> dict[str, Any]:
    """Gradient boosting's ``init_`` record (not ``"zero"``) names the dummy estimator
    sklearn's ``_init_state`` makes for ``estimator_id``; returns the record as a dict."""
    record = parse_dict(where, record)
    name = parse_str(f"{where}.estimator", require(where, record, "estimator"), max_len=40)
    if name not in DUMMY_CLASSES:
        raise ConfigError(f"{where}.estimator: {name!r} is not DummyClassifier or DummyRegressor")
    expected_name = "DummyClassifier" if classifier else "DummyRegressor"
    if name != expected_name:
        raise ConfigError(f"{where}.estimator: {name!r}, but a {estimator_id} starts from a {expected_name}")
    return record


def check_init_fitted(where: str, fitted: dict[str, Any], *, classifier: bool, n_classes: int, n_features: int) -> None:
    """The fitted attributes of gradient boosting's dummy ``init_`` (decoded), every one its
    prediction reads: a wrong-length ``class_prior_`` would make sklearn's Cython loss read out
    of bounds. A classifier's dummy predicts its ``class_prior_``, a regressor's its ``constant_``."""
    if "n_features_in_" in fitted:  # sklearn < 1.4 fits the dummy without it
        n = expect(f"{where}.fitted.n_features_in_", get_fitted(fitted, "n_features_in_"), (int, np.integer))
        if n != n_features:
            raise ConfigError(f"{where}.fitted.n_features_in_: {n}, expected {n_features}")
    expect(f"{where}.fitted.n_outputs_", get_fitted(fitted, "n_outputs_"), int, lambda k: k == 1, "1")
    if classifier:
        for key in ("classes_", "class_prior_"):
            # sklearn < 1.4 fits the dummy on the int64 encoded labels, 1.4+ on their float64 copy
            dtypes = (np.float64, np.int64) if key == "classes_" else (np.float64,)
            expect(
                f"{where}.fitted.{key}",
                get_fitted(fitted, key),
                np.ndarray,
                lambda a: a.shape == (n_classes,) and a.dtype in dtypes and bool(np.isfinite(a).all()),
                f"{n_classes} finite float64 values",
            )
        expect(f"{where}.fitted.n_classes_", get_fitted(fitted, "n_classes_"), (int, np.integer), lambda v: v == n_classes, str(n_classes))
        expect(f"{where}.fitted._strategy", get_fitted(fitted, "_strategy"), str, lambda v: v == "prior", "'prior'")
        expect(f"{where}.fitted.sparse_output_", get_fitted(fitted, "sparse_output_"), bool, lambda v: not v, "false")
        return
    expect(
        f"{where}.fitted.constant_",
        get_fitted(fitted, "constant_"),
        np.ndarray,
        lambda a: a.shape == (1, 1) and a.dtype == np.float64 and bool(np.isfinite(a).all()),
        "a finite float64 (1, 1) array",
    )
    unexpected = sorted(set(fitted) - {"n_features_in_", "n_outputs_", "constant_", "feature_names_in_"})
    if unexpected:
        raise ConfigError(f"{where}.fitted: unexpected attribute(s) {unexpected} for a DummyRegressor")
