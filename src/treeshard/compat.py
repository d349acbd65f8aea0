"""What changed between scikit-learn versions, and how stores cross those changes.

Stores are written and read under any scikit-learn from 1.3 on. Everything
that depends on the installed version is decided here, so that adapters and
readers name a change (:func:`leaf_values_are_counts`, :func:`translate_params`)
instead of comparing version numbers. ``docs/COMPATIBILITY.md`` lists each
change with the outputs it moves and by how much.
"""

from __future__ import annotations

import functools
from typing import Any

from .errors import ConfigError, UnsupportedEstimatorError

#: Oldest scikit-learn treeshard supports.
MIN_SKLEARN = (1, 3)


@functools.lru_cache(maxsize=1)
def sklearn_version() -> tuple[int, int]:
    """``(major, minor)`` of the installed scikit-learn."""
    import sklearn

    return version_tuple(sklearn.__version__)


def version_tuple(text: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string; ``(0, 0)`` if it has none.

    >>> version_tuple("1.4.2"), version_tuple("1.10.dev0"), version_tuple("x")
    ((1, 4), (1, 10), (0, 0))
    """
    parts = text.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "x")
    except (IndexError, ValueError):
        return (0, 0)


# --------------------------------------------------------------------------- pipeline transformers
#: Param values of allow-listed pipeline classes whose spelling changed: (class id, param) ->
#: [(stored value, the value it reads as, the installed versions [since, until) it applies to)].
#: They only steer a refit: a fitted transformer keeps its fitted attributes.
_TRANSFORMER_PARAM_VALUES: dict[tuple[str, str], list[tuple[Any, Any, tuple[int, int], tuple[int, int] | None]]] = {
    # "warn" (1.3-1.4's default, acting as 200_000 for strategy="quantile") is gone from 1.5.
    ("KBinsDiscretizer", "subsample"): [("warn", 200_000, (1, 5), None)],
    # "warn" (1.7-1.8's default, acting as "linear") is gone from 1.9.
    ("KBinsDiscretizer", "quantile_method"): [("warn", "linear", (1, 9), None)],
    # "deprecated" (1.7-1.8's default, acting as False) does not exist in 1.5-1.6.
    ("ColumnTransformer", "force_int_remainder_cols"): [("deprecated", False, (1, 5), (1, 7))],
}


def transformer_params(kind_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """A pipeline node's stored params as the installed sklearn spells them (names it lacks are dropped by the caller)."""
    out = dict(params)
    installed = sklearn_version()
    for (kind, name), rules in _TRANSFORMER_PARAM_VALUES.items():
        if kind != kind_id or name not in out or not isinstance(out[name], str):
            continue
        for stored, reads_as, since, until in rules:
            if out[name] == stored and since <= installed and (until is None or installed < until):
                out[name] = reads_as
    return out


def transformer_fitted(kind_id: str, params: dict[str, Any], fitted: dict[str, Any]) -> dict[str, Any]:
    """A pipeline node's fitted attributes (built values) as the installed sklearn keeps them.

    - ``SimpleImputer._fill_dtype`` (1.6+) is its ``_fit_dtype`` in stores written before it.
    - ``ColumnTransformer``: sklearn 1.3 keeps ``"passthrough"`` in ``transformers_`` and the
      fitted ``FunctionTransformer`` standing for it in ``_name_to_fitted_passthrough``;
      1.4+ keeps the ``FunctionTransformer`` in ``transformers_``.
    """
    out = dict(fitted)
    if not out:
        return out
    if kind_id == "SimpleImputer" and "_fill_dtype" not in out and "_fit_dtype" in out:
        out["_fill_dtype"] = out["_fit_dtype"]
    if kind_id == "ColumnTransformer" and isinstance(out.get("transformers_"), list):
        if sklearn_version() < (1, 4):
            if "_name_to_fitted_passthrough" not in out:
                declared = {entry[0]: entry[1] for entry in params.get("transformers") or ()}
                declared["remainder"] = params.get("remainder")
                passthrough, rows = {}, []
                for name, trans, columns in out["transformers_"]:
                    if isinstance(declared.get(name), str) and declared[name] == "passthrough" and not isinstance(trans, str):
                        passthrough[name], trans = trans, "passthrough"
                    rows.append((name, trans, columns))
                out["transformers_"], out["_name_to_fitted_passthrough"] = rows, passthrough
        elif "_name_to_fitted_passthrough" in out:
            passthrough = out.pop("_name_to_fitted_passthrough") or {}
            out["transformers_"] = [
                (name, passthrough[name] if isinstance(trans, str) and trans == "passthrough" and name in passthrough else trans, columns)
                for name, trans, columns in out["transformers_"]
            ]
    return out


# --------------------------------------------------------------------------- leaf values
def leaf_values_are_counts() -> bool:
    """Whether the installed sklearn keeps classifier leaf values as weighted class counts.

    sklearn < 1.4 stores counts and divides by the row sum when predicting
    probabilities; 1.4+ (PR #27639) stores the counts divided by the node's
    weighted sample count and predicts them as they are.
    """
    return sklearn_version() < (1, 4)


def leaf_counts_for(estimator_id: str) -> bool:
    """Whether ``estimator_id``'s trees hold weighted class counts under the installed sklearn
    (classifier trees and forests under sklearn < 1.4; boosting trees are regressors)."""
    from .adapters.families import BOOSTING, ESTIMATORS

    kind = ESTIMATORS.get(estimator_id)
    return kind is not None and kind.is_classifier and kind.family != BOOSTING and leaf_values_are_counts()


# --------------------------------------------------------------------------- params
#: Constructor params that exist in some supported versions only:
#: name -> (first version that has it, the value that means "not used").
#: A store holding the neutral value loads where the param does not exist;
#: any other value is refused there (it would change what the model does).
VERSIONED_PARAMS: dict[str, tuple[tuple[int, int], Any]] = {
    "monotonic_cst": ((1, 4), None),
    # HistGradientBoosting's feature subsampling (forests have had max_features all along).
    "max_features": ((1, 4), 1.0),
}

#: GradientBoosting's ``criterion`` default: ``"friedman_mse"`` before 1.9, ``"deprecated"``
#: from 1.9, where the param has no effect (it never changes a fitted model's predictions).
_GB_CRITERION_DEFAULT_FROM_1_9 = ("friedman_mse", "deprecated")


def translate_params(cls: type, params: dict[str, Any], *, installed: set[str]) -> dict[str, Any]:
    """Stored params as the installed ``cls`` takes them (``installed``: its param names).

    Drops a param the installed constructor lacks when it holds its neutral
    value, maps values whose spelling changed between versions, and raises
    :class:`~treeshard.ConfigError` naming a param whose value the installed
    sklearn cannot honour. Names that no supported version knows are left for
    the caller to refuse.
    """
    out = dict(params)
    for name, (since, neutral) in VERSIONED_PARAMS.items():
        if name in out and name not in installed:
            if out[name] != neutral:
                raise ConfigError(
                    f"config.params.{name}: {out[name]!r} needs scikit-learn >= {since[0]}.{since[1]} "
                    f"(installed: {_installed_text()}); {cls.__name__} here cannot honour it"
                )
            del out[name]
    if isinstance(out.get("categorical_features"), str) and cls.__name__.startswith("HistGradientBoosting"):
        out["categorical_features"] = _hist_categorical_features(out["categorical_features"])
    if "criterion" in out and _is_gradient_boosting(cls):
        # 1.9 still accepts "friedman_mse" (kept as stored); before 1.9 "deprecated" is invalid.
        old, new = _GB_CRITERION_DEFAULT_FROM_1_9
        if sklearn_version() < (1, 9) and out["criterion"] == new:
            out["criterion"] = old
    return out


#: HistGradientBoosting's ``categorical_features`` strings: ``"warn"`` (the 1.4-1.5 default,
#: which acts as None) and ``"from_dtype"`` (1.4+, the default from 1.6), by version.
_HIST_CATEGORICAL_STRINGS = {"warn": ((1, 4), (1, 6)), "from_dtype": ((1, 4), None)}


def _hist_categorical_features(value: str) -> str | None:
    """``categorical_features`` as the installed sklearn takes it.

    A fitted model keeps its categorical mask and encoder (``is_categorical_``,
    ``_preprocessor``), so this param only steers a refit: ``"warn"`` reads as
    None where it no longer exists (1.6+), and either string as None under 1.3,
    which has neither (a store whose features were categorical by dtype is
    refused there by :func:`check_hist_preprocessor`).
    """
    span = _HIST_CATEGORICAL_STRINGS.get(value)
    if span is None:
        return value  # refused by the constructor's own check
    since, until = span
    if sklearn_version() < since or (until is not None and sklearn_version() >= until):
        return None
    return value


def _is_gradient_boosting(cls: type) -> bool:
    return cls.__name__ in ("GradientBoostingClassifier", "GradientBoostingRegressor")


def _installed_text() -> str:
    import sklearn

    return sklearn.__version__


# --------------------------------------------------------------------------- gradient boosting
def gb_trees_per_iteration(gb: Any) -> int:
    """Trees per boosting stage: ``n_trees_per_iteration_`` (1.4+) or ``estimators_``'s width (1.3)."""
    k = getattr(gb, "n_trees_per_iteration_", None)
    if k is None:
        return int(gb.estimators_.shape[1])
    return int(k)


def gb_set_loss(gb: Any) -> None:
    """Give a rebuilt ``gb`` the loss object the installed sklearn's ``fit`` makes.

    1.4+ uses ``sklearn._loss`` (``_get_loss``) and ``n_trees_per_iteration_``;
    1.3 uses ``ensemble._gb_losses`` and ``_n_classes``.
    """
    import numpy as np

    if not leaf_values_are_counts():  # 1.4+
        # fit() always passes a sample_weight array (ones by default); so do we, so
        # that the loss object's attributes (constant_hessian) are the fitted ones.
        gb._loss = gb._get_loss(sample_weight=np.ones(1))
        return
    from sklearn.base import is_classifier
    from sklearn.ensemble import _gb_losses

    gb.__dict__.pop("n_trees_per_iteration_", None)
    if is_classifier(gb):
        gb._n_classes = int(gb.n_classes_)
        if gb.loss == "log_loss":
            loss_class = _gb_losses.MultinomialDeviance if gb._n_classes > 2 else _gb_losses.BinomialDeviance
        else:
            loss_class = _gb_losses.LOSS_FUNCTIONS[gb.loss]
        gb._loss = loss_class(gb._n_classes)
        return
    gb._n_classes = 1
    loss_class = _gb_losses.LOSS_FUNCTIONS[gb.loss]
    gb._loss = loss_class(gb.alpha) if gb.loss in ("huber", "quantile") else loss_class()


def dummy_fitted_for_installed(fitted: dict[str, Any], n_features: int) -> dict[str, Any]:
    """The fitted attributes of gradient boosting's dummy ``init_`` as the installed sklearn has them.

    sklearn < 1.4 fits it on the int64 encoded labels without ``n_features_in_``;
    1.4+ on their float64 copy, with it. Predictions read neither.
    """
    import numpy as np

    out = dict(fitted)
    counts = leaf_values_are_counts()  # sklearn < 1.4
    if counts:
        out.pop("n_features_in_", None)
    else:
        out.setdefault("n_features_in_", n_features)
    classes = out.get("classes_")
    if isinstance(classes, np.ndarray) and classes.dtype.kind in "if":
        out["classes_"] = classes.astype(np.int64 if counts else np.float64)
    return out


# --------------------------------------------------------------------------- histogram gradient boosting
def check_hist_preprocessor(record: dict[str, Any]) -> None:
    """Refuse a categorical ``_preprocessor`` where the installed sklearn has none.

    sklearn 1.4 encodes categorical features (numbers or strings) with an
    ``OrdinalEncoder`` before binning; 1.3 bins raw category codes and cannot
    express the encoding, so such a store does not load there.
    """
    if sklearn_version() >= (1, 4):
        return
    strings = any(entry["values"].dtype.kind in "OUS" for entry in record["categories"])
    what = "string categories" if strings else "categorical features"
    raise UnsupportedEstimatorError(
        f"the store encodes {what} with a preprocessor, which needs scikit-learn >= 1.4 "
        f"(installed: {_installed_text()}, which reads numeric category codes only)"
    )


# --------------------------------------------------------------------------- node records
#: Node record fields of sklearn versions treeshard does not read yet, with the
#: feature they carry and the first version that has them (docs/FORMAT.md, 4.3).
FUTURE_NODE_FIELDS: dict[str, tuple[str, str]] = {
    "left_cat_bitset": ("categorical splits", "1.10"),
    "split_kind": ("categorical splits", "1.10"),
}


def unknown_node_field_error(name: str, dtype: Any) -> UnsupportedEstimatorError:
    """The error for an installed node field that treeshard cannot fill."""
    feature = FUTURE_NODE_FIELDS.get(name)
    if feature is not None:
        what, since = feature
        return UnsupportedEstimatorError(
            f"the installed scikit-learn ({_installed_text()}) has tree node field {name!r} ({what}, "
            f"scikit-learn >= {since}), which this treeshard cannot fill; upgrade treeshard"
        )
    return UnsupportedEstimatorError(
        f"the installed scikit-learn's tree nodes have a field {name!r} ({dtype}) that format version 1 "
        "cannot fill; upgrade treeshard"
    )


#: Stored node columns that the oldest supported sklearn lacks, with the feature and
#: the first version that reads them. A store that uses one (a non-zero value) cannot be
#: read by an sklearn without it.
STORED_NODE_FEATURES: dict[str, tuple[str, str]] = {
    "missing_go_to_left": ("missing-value support in trees", "1.3"),
    "split_kind": ("categorical splits", "1.10"),  # format version 2 (docs/FORMAT.md, 4.3)
    "left_cat_bitset": ("categorical splits", "1.10"),
}


def missing_node_field_error(column: str) -> UnsupportedEstimatorError:
    """The error for a store that uses a node field the installed sklearn lacks."""
    what, since = STORED_NODE_FEATURES.get(column, (column, "a later version"))
    return UnsupportedEstimatorError(
        f"the store uses {what} (node column {column!r}), which needs scikit-learn >= {since}; "
        f"installed: {_installed_text()}"
    )


# --------------------------------------------------------------------------- version warning
#: The sklearn versions the compatibility matrix covers (tests/compat/versions.txt).
MATRIX_VERSIONS = ((1, 3), (1, 9))


def pair_is_exact(estimator_id: str, saved: str, installed: str, *, value_encoding: str = "float64") -> bool:
    """Whether the matrix proves a store written under sklearn ``saved`` predicts under
    ``installed`` exactly as it did when written (then loading it needs no warning).

    The exceptions are sklearn's own changes (docs/COMPATIBILITY.md): gradient-boosting
    classifiers across the 1.3/1.4 boundary (the loss module and its clipping changed),
    and classifier trees and forests stored as fractions that are not weighted counts
    (fractional sample weights) read under 1.3, which divides them by their sum again.
    Histogram gradient boosting and IsolationForest are exact between every pair (a
    histogram store 1.3 cannot express is refused there: :func:`check_hist_preprocessor`).
    Versions outside the matrix are never called exact.
    """
    from .adapters.families import BOOSTING, ESTIMATORS, FOREST, HIST_BOOSTING, ISOLATION, TREE

    a, b = version_tuple(saved), version_tuple(installed)
    low, high = MATRIX_VERSIONS
    if not (low <= a <= high and low <= b <= high):
        return False
    kind = ESTIMATORS.get(estimator_id)
    if kind is None or kind.family not in (FOREST, BOOSTING, TREE, HIST_BOOSTING, ISOLATION):  # a family the matrix does not cover yet
        return False
    if kind.family in (HIST_BOOSTING, ISOLATION):  # HIST_BOOSTING: a store 1.3 cannot express is refused, not read otherwise
        return True
    if kind.family == BOOSTING:
        return not kind.is_classifier or (a < (1, 4)) == (b < (1, 4))
    if kind.is_classifier and b < (1, 4) <= a:
        return value_encoding == "weighted_counts"
    return True
