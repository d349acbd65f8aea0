"""Histogram gradient boosting: HistGradientBoosting{Classifier,Regressor}.

The trees are sklearn ``TreePredictor`` objects (``_predictors[iteration][k]``),
stored as one node column per ``PREDICTOR_RECORD_DTYPE`` field
(:mod:`treeshard.hist_columns`), iteration-major, so that a prefix of the
trees is a prefix of the iterations. The loss, the bin mapper and the
categorical preprocessor are rebuilt by sklearn's own code from what the
store records (``docs/FORMAT.md``, section 6.2); nothing is unpickled.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..compat import check_hist_preprocessor
from ..errors import ArrayError, ConfigError, MemoryBudgetError, UnsupportedEstimatorError
from ..hist_columns import (
    BITSET_ARRAYS,
    BITSET_DTYPE,
    BITSET_WORDS,
    HIST_NODE_COLUMNS,
    PTR_DTYPE,
    HistColumns,
    check_bin_thresholds,
    from_predictors,
    read_hist_columns,
    validate_hist_columns,
)
from ..record import TreeLayout, parse_bool, parse_dict, parse_int, parse_list, parse_str, require
from .base import Adapter, SavedModel, build_estimator, decode_fitted, decode_value, encode_fitted, encode_params, encode_value
from .checks import check_common, check_labels, expect, get_fitted
from .families import ESTIMATORS, HIST_BOOSTING, ids_of

HGB_FITTED = (
    "n_features_in_",
    "feature_names_in_",
    "_n_features",
    "classes_",
    "n_trees_per_iteration_",
    "is_categorical_",
    "_baseline_prediction",
    "do_early_stopping_",
    "_use_validation_data",
    "_random_seed",
    "_fitted_with_sw",
)
HGB_ARRAYS = {
    "bin_thresholds": "float64",
    "bin_thresholds_ptr": "int64",
    "train_score_": "float64",
    "validation_score_": "float64",
}
#: Loss classes each estimator's ``_get_loss`` makes, by ``loss`` param.
LOSS_CLASSES = {
    "squared_error": "HalfSquaredError",
    "absolute_error": "AbsoluteError",
    "gamma": "HalfGammaLoss",
    "poisson": "HalfPoissonLoss",
    "quantile": "PinballLoss",
}
_SPECIAL = ("_loss", "_bin_mapper", "_preprocessor", "_feature_subsample_rng", "_interaction_cst_types")


# --------------------------------------------------------------------------- save
def _to_saved(est: Any) -> SavedModel:
    name = type(est).__name__
    if not isinstance(est.loss, str):
        raise UnsupportedEstimatorError(f"{name} with a custom loss object ({type(est.loss).__name__}) is not supported")
    k = int(est.n_trees_per_iteration_)
    for i, iteration in enumerate(est._predictors):
        if len(iteration) != k:
            raise UnsupportedEstimatorError(f"{name}._predictors[{i}]: {len(iteration)} trees, expected {k}")
    flat = [predictor for iteration in est._predictors for predictor in iteration]
    if not flat:
        raise UnsupportedEstimatorError(f"{name} has no iteration to store")
    cols = from_predictors(flat)
    params, unserializable = encode_params(est)
    groups = _encode_interaction_cst(est.interaction_cst)
    if groups is not None:
        params["interaction_cst"], group_types = groups
        unserializable = [name for name in unserializable if name != "interaction_cst"]
    layout = TreeLayout(n_trees=len(flat), n_nodes=cols.n_nodes, n_features=int(est._n_features), n_outputs=1, n_classes=(1,))
    fitted = encode_fitted(est, HGB_FITTED)
    fitted["_loss"] = _encode_loss(est._loss)
    bin_mapper = est._bin_mapper
    fitted["_bin_mapper"] = {
        "n_bins": int(bin_mapper.n_bins),
        "subsample": None if bin_mapper.subsample is None else int(bin_mapper.subsample),
        "n_threads": None if getattr(bin_mapper, "n_threads", None) is None else int(bin_mapper.n_threads),
        "missing_values_bin_idx_": int(bin_mapper.missing_values_bin_idx_),
        "n_bins_non_missing_": encode_value(np.asarray(bin_mapper.n_bins_non_missing_, dtype=np.uint32), "_bin_mapper.n_bins_non_missing_"),
        "is_categorical_": encode_value(np.asarray(bin_mapper.is_categorical_, dtype=np.uint8), "_bin_mapper.is_categorical_"),
    }
    fitted["_preprocessor"] = _encode_preprocessor(getattr(est, "_preprocessor", None))
    if groups is not None:
        fitted["_interaction_cst_types"] = group_types
    rng = _encode_generator(getattr(est, "_feature_subsample_rng", None))
    if rng is not None:
        fitted["_feature_subsample_rng"] = rng
    thresholds = [np.asarray(t, dtype=np.float64).reshape(-1) for t in bin_mapper.bin_thresholds_]
    ptr = np.zeros(len(thresholds) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in thresholds], out=ptr[1:])
    arrays = {
        "bin_thresholds": np.concatenate(thresholds) if thresholds else np.zeros(0),
        "bin_thresholds_ptr": ptr,
        "train_score_": np.asarray(est.train_score_, dtype=np.float64).reshape(-1),
        "validation_score_": np.asarray(est.validation_score_, dtype=np.float64).reshape(-1),
    }
    return SavedModel(params, unserializable, fitted, layout, (), arrays, node_arrays=cols.stored())


_GROUP_TYPES = {"set": set, "frozenset": frozenset, "list": list, "tuple": tuple}


def _encode_interaction_cst(value: Any) -> tuple[list[list[int]], list[str]] | None:
    """``interaction_cst`` groups (sets of feature indices, which JSON cannot hold) as lists,
    with each group's type; ``None`` when the param is not a sequence of groups."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        return None
    groups, types = [], []
    for group in value:
        if type(group).__name__ not in _GROUP_TYPES or not all(isinstance(f, (int, np.integer)) for f in group):
            return None
        groups.append(sorted(int(f) for f in group) if isinstance(group, (set, frozenset)) else [int(f) for f in group])
        types.append(type(group).__name__)
    return groups, types


def _decode_interaction_cst(record: Any, est: Any) -> None:
    """Give ``est.interaction_cst``'s groups back their types (``_encode_interaction_cst``)."""
    where = "config.fitted._interaction_cst_types"
    if record is None:
        return
    types = parse_list(where, record)
    groups = est.interaction_cst
    if not isinstance(groups, list) or len(groups) != len(types):
        raise ConfigError(f"{where}: {len(types)} types for interaction_cst={str(groups)[:60]}")
    rebuilt = []
    for i, (name, group) in enumerate(zip(types, groups, strict=True)):
        if name not in _GROUP_TYPES or not isinstance(group, list):
            raise ConfigError(f"{where}[{i}]: expected one of {sorted(_GROUP_TYPES)} for a list of features")
        rebuilt.append(_GROUP_TYPES[name](group))
    est.interaction_cst = rebuilt


def _encode_loss(loss: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"name": type(loss).__name__, "constant_hessian": bool(loss.constant_hessian)}
    quantile = getattr(getattr(loss, "closs", None), "quantile", None)
    if quantile is not None:
        record["quantile"] = encode_value(float(quantile))
    return record


def _encode_preprocessor(preprocessor: Any) -> dict[str, Any] | None:
    """The categories of sklearn's categorical ``OrdinalEncoder`` (``None``: no preprocessor)."""
    if preprocessor is None:
        return None
    encoder = preprocessor.named_transformers_["encoder"]
    categories = []
    for i, values in enumerate(encoder.categories_):
        nan = bool(len(values) and _is_nan(values[-1]))
        kept = values[:-1] if nan else values
        if kept.dtype == object and not all(isinstance(v, str) for v in kept.tolist()):
            raise UnsupportedEstimatorError(f"_preprocessor: categorical feature {i} has categories that are neither all strings nor numbers")
        categories.append({"values": encode_value(kept, f"_preprocessor.categories_[{i}]"), "nan": nan})
    return {"categories": categories}


def _is_nan(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _encode_generator(rng: Any) -> dict[str, Any] | None:
    """The PCG64 state of ``_feature_subsample_rng`` (what a warm start draws from next)."""
    if not isinstance(rng, np.random.Generator) or type(rng.bit_generator).__name__ != "PCG64":
        return None
    state = rng.bit_generator.state
    return {
        "state": str(state["state"]["state"]),
        "inc": str(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


# --------------------------------------------------------------------------- load
@dataclass
class _Decoded:
    est: Any  # params and checked fitted attributes set; no trees
    k: int
    n_iter: int
    bin_is_categorical: np.ndarray
    preprocessor: dict[str, Any] | None
    loss: dict[str, Any]


def _decode(cls: type, saved: SavedModel) -> _Decoded:
    """Every check of the config record and fitted arrays; builds the estimator but no tree."""
    from sklearn.base import is_classifier

    est = build_estimator(cls, saved.params, saved.unserializable_params)
    if not isinstance(est.loss, str):
        raise ConfigError("config.params.loss: a custom loss object cannot be stored")
    layout = saved.layout
    if layout.n_outputs != 1 or layout.n_classes != (1,):
        raise ConfigError("config.trees: histogram gradient boosting trees have one output and one value")
    raw = dict(saved.fitted)
    special = {name: raw.pop(name, None) for name in _SPECIAL}
    fitted = decode_fitted(raw, HGB_FITTED)
    _decode_interaction_cst(special["_interaction_cst_types"], est)
    check_common(fitted, layout)
    n_features = layout.n_features
    expect("config.fitted._n_features", get_fitted(fitted, "_n_features"), int, lambda v: v == n_features, str(n_features))
    k = expect("config.fitted.n_trees_per_iteration_", get_fitted(fitted, "n_trees_per_iteration_"), int, lambda v: v >= 1, "a positive integer")
    if is_classifier(est):
        classes = get_fitted(fitted, "classes_")
        n_classes = len(classes) if isinstance(classes, np.ndarray) and classes.ndim == 1 else 0
        check_labels("config.fitted.classes_", classes, max(n_classes, 2))
        if k != (1 if n_classes == 2 else n_classes):
            raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k} does not fit {n_classes} classes")
    else:
        if "classes_" in fitted:
            raise ConfigError("config.fitted.classes_: a regressor has no classes_")
        if k != 1:
            raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k}, a regressor has 1")
    if layout.n_trees % k:
        raise ConfigError(f"config.trees.n_trees: {layout.n_trees} trees are not whole iterations of {k} trees")
    n_iter = layout.n_trees // k
    expect(
        "config.fitted._baseline_prediction",
        get_fitted(fitted, "_baseline_prediction"),
        np.ndarray,
        lambda a: a.dtype == np.float64 and a.shape == (1, k),
        f"a float64 array of shape (1, {k})",
    )
    for name in ("do_early_stopping_", "_use_validation_data"):
        expect(f"config.fitted.{name}", get_fitted(fitted, name), bool, what="true or false")
    if "_fitted_with_sw" in fitted:
        expect("config.fitted._fitted_with_sw", fitted["_fitted_with_sw"], bool, what="true or false")
    if "_random_seed" in fitted:
        expect("config.fitted._random_seed", fitted["_random_seed"], (int, np.integer), what="an integer")
    is_categorical = get_fitted(fitted, "is_categorical_")
    if is_categorical is not None:
        expect(
            "config.fitted.is_categorical_",
            is_categorical,
            np.ndarray,
            lambda a: a.dtype == bool and a.shape == (n_features,),
            f"null or a bool array of {n_features}",
        )
    loss = check_loss(special["_loss"], quantile=getattr(est, "quantile", None))
    bin_mapper = check_bin_mapper(special["_bin_mapper"], max_bins=est.max_bins, n_features=n_features)
    preprocessor = check_preprocessor(special["_preprocessor"], is_categorical, max_bins=est.max_bins)
    expected = remapped(is_categorical, preprocessor is not None, n_features)
    if not np.array_equal(bin_mapper["is_categorical_"].astype(bool), expected):
        raise ConfigError("config.fitted._bin_mapper.is_categorical_: does not match is_categorical_ and the preprocessor")
    for name in ("bin_thresholds", "bin_thresholds_ptr", "train_score_", "validation_score_"):
        if name not in saved.arrays:
            raise ArrayError(f"fitted/{name}: missing")
    thresholds = check_bin_thresholds(
        saved.arrays["bin_thresholds"],
        saved.arrays["bin_thresholds_ptr"],
        n_features=n_features,
        is_categorical=bin_mapper["is_categorical_"].astype(bool),
        max_bins=est.max_bins,
    )
    scores = {}
    for name in ("train_score_", "validation_score_"):
        score = saved.arrays[name]
        if score.ndim != 1 or len(score) not in (0, n_iter + 1):
            raise ArrayError(f"fitted/{name}: shape {score.shape}, expected (0,) or ({n_iter + 1},)")
        scores[name] = score
    check_categories_match(preprocessor, thresholds, expected)
    expected_loss = loss_class(cls.__name__, est.loss, k)
    if loss["name"] != expected_loss:
        raise ConfigError(f"config.fitted._loss: {loss['name']!r}, but {cls.__name__}(loss={est.loss!r}) makes {expected_loss}")

    est.__dict__.update(fitted)
    est.__dict__.update(scores)
    est._is_categorical_remapped = expected if preprocessor is not None else is_categorical
    est._bin_mapper = _build_bin_mapper(bin_mapper, thresholds, expected, fitted.get("_random_seed"))
    est._feature_subsample_rng = _decode_generator(special["_feature_subsample_rng"], fitted.get("_random_seed"))
    return _Decoded(est, k, n_iter, expected, preprocessor, loss)


def loss_class(estimator_id: str, loss: str, k: int) -> str | None:
    """The loss class ``_get_loss`` makes for this estimator, ``loss`` param and K."""
    if estimator_id == "HistGradientBoostingClassifier":
        return "HalfBinomialLoss" if k == 1 else "HalfMultinomialLoss"
    return LOSS_CLASSES.get(loss)


def check_categories_match(preprocessor: dict[str, Any] | None, thresholds: list[np.ndarray], categorical: np.ndarray) -> None:
    """The encoder knows as many categories per feature as the bin mapper."""
    if preprocessor is None:
        return
    for i, f in enumerate(np.flatnonzero(categorical)):
        count = len(preprocessor["categories"][i]["values"])
        if count != len(thresholds[f]):
            raise ConfigError(f"config.fitted._preprocessor.categories[{i}]: {count} categories, but the bin mapper knows {len(thresholds[f])}")


def remapped(is_categorical: np.ndarray | None, has_preprocessor: bool, n_features: int) -> np.ndarray:
    """The bin mapper's categorical mask: categorical columns first when a preprocessor moved them."""
    if is_categorical is None:
        return np.zeros(n_features, dtype=bool)
    if not has_preprocessor:
        return is_categorical.copy()
    out = np.zeros(n_features, dtype=bool)
    out[: int(is_categorical.sum())] = True
    return out


def check_loss(record: Any, *, quantile: float | None) -> dict[str, Any]:
    """The ``_loss`` record: its keys and types, and its quantile equal to the param's."""
    where = "config.fitted._loss"
    record = parse_dict(where, record)
    unknown = sorted(set(record) - {"name", "constant_hessian", "quantile"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    parse_str(f"{where}.name", require(where, record, "name"), max_len=60)
    parse_bool(f"{where}.constant_hessian", require(where, record, "constant_hessian"))
    if "quantile" in record:
        stored = decode_value(f"{where}.quantile", record["quantile"])
        expect(f"{where}.quantile", stored, float, lambda q: q == quantile, f"the param quantile={quantile}")
    return record


def check_bin_mapper(record: Any, *, max_bins: int, n_features: int) -> dict[str, Any]:
    where = "config.fitted._bin_mapper"
    record = parse_dict(where, record)
    unknown = sorted(set(record) - {"n_bins", "subsample", "n_threads", "missing_values_bin_idx_", "n_bins_non_missing_", "is_categorical_"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    n_bins = parse_int(f"{where}.n_bins", require(where, record, "n_bins"), low=3, high=256)
    if n_bins != max_bins + 1:
        raise ConfigError(f"{where}.n_bins: {n_bins}, but max_bins={max_bins} makes {max_bins + 1}")
    subsample = record.get("subsample")
    if subsample is not None:
        subsample = parse_int(f"{where}.subsample", subsample, low=1, high=2**62)
    n_threads = record.get("n_threads")
    if n_threads is not None:
        n_threads = parse_int(f"{where}.n_threads", n_threads, low=-(2**31), high=2**31 - 1)
    missing = parse_int(f"{where}.missing_values_bin_idx_", require(where, record, "missing_values_bin_idx_"), low=0, high=255)
    if missing != n_bins - 1:
        raise ConfigError(f"{where}.missing_values_bin_idx_: {missing}, expected {n_bins - 1}")
    non_missing = decode_value(f"{where}.n_bins_non_missing_", require(where, record, "n_bins_non_missing_"))
    expect(
        f"{where}.n_bins_non_missing_",
        non_missing,
        np.ndarray,
        lambda a: a.dtype == np.uint32 and a.shape == (n_features,) and bool(np.all(a <= n_bins - 1)),
        f"{n_features} uint32 values at most {n_bins - 1}",
    )
    categorical = decode_value(f"{where}.is_categorical_", require(where, record, "is_categorical_"))
    expect(
        f"{where}.is_categorical_",
        categorical,
        np.ndarray,
        lambda a: a.dtype == np.uint8 and a.shape == (n_features,) and bool(np.all(a <= 1)),
        f"{n_features} uint8 values 0 or 1",
    )
    return {"n_bins": n_bins, "subsample": subsample, "n_threads": n_threads, "missing_values_bin_idx_": missing, "n_bins_non_missing_": non_missing, "is_categorical_": categorical}


def check_preprocessor(record: Any, is_categorical: np.ndarray | None, *, max_bins: int) -> dict[str, Any] | None:
    where = "config.fitted._preprocessor"
    if record is None:
        return None
    if is_categorical is None:
        raise ConfigError(f"{where}: a preprocessor needs categorical features (is_categorical_ is null)")
    record = parse_dict(where, record)
    unknown = sorted(set(record) - {"categories"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    entries = parse_list(f"{where}.categories", require(where, record, "categories"))
    if len(entries) != int(is_categorical.sum()):
        raise ConfigError(f"{where}.categories: {len(entries)} entries for {int(is_categorical.sum())} categorical features")
    categories = []
    for i, entry in enumerate(entries):
        at = f"{where}.categories[{i}]"
        entry = parse_dict(at, entry)
        unknown = sorted(set(entry) - {"values", "nan"})
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {unknown}")
        values = decode_value(f"{at}.values", require(at, entry, "values"))
        expect(
            f"{at}.values",
            values,
            np.ndarray,
            lambda a: a.ndim == 1 and len(a) <= max_bins and (a.dtype == object or a.dtype.kind in "iuf"),
            f"a 1-D array of at most max_bins={max_bins} strings or numbers",
        )
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise ConfigError(f"{at}.values: NaN is recorded by 'nan', not among the values")
        if len(set(values.tolist())) != len(values):
            raise ConfigError(f"{at}.values: categories must be distinct")
        categories.append({"values": values, "nan": parse_bool(f"{at}.nan", require(at, entry, "nan"))})
    return {"categories": categories}


def _build_bin_mapper(record: dict[str, Any], thresholds: list[np.ndarray], categorical: np.ndarray, seed: Any) -> Any:
    from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper

    known = [thresholds[f].copy() if categorical[f] else None for f in range(len(thresholds))]
    params = {
        "n_bins": record["n_bins"],
        "subsample": record["subsample"],
        "is_categorical": categorical.copy() if categorical.any() else None,
        "known_categories": known if categorical.any() else None,
        "random_state": seed,
        "n_threads": record["n_threads"],
    }
    accepted = set(inspect.signature(_BinMapper.__init__).parameters)
    mapper = _BinMapper(**{name: value for name, value in params.items() if name in accepted})
    mapper.bin_thresholds_ = [t.copy() for t in thresholds]
    mapper.n_bins_non_missing_ = record["n_bins_non_missing_"]
    mapper.missing_values_bin_idx_ = record["missing_values_bin_idx_"]
    mapper.is_categorical_ = record["is_categorical_"]
    return mapper


def _decode_generator(record: Any, seed: Any) -> np.random.Generator:
    where = "config.fitted._feature_subsample_rng"
    if record is None:
        return np.random.default_rng(None if seed is None else int(seed))
    record = parse_dict(where, record)
    try:
        state = {
            "bit_generator": "PCG64",
            "state": {"state": int(parse_str(f"{where}.state", require(where, record, "state"), max_len=60)), "inc": int(parse_str(f"{where}.inc", require(where, record, "inc"), max_len=60))},
            "has_uint32": parse_int(f"{where}.has_uint32", require(where, record, "has_uint32"), low=0, high=1),
            "uinteger": parse_int(f"{where}.uinteger", require(where, record, "uinteger"), low=0, high=2**32 - 1),
        }
        bit_generator = np.random.PCG64()
        bit_generator.state = state
    except ValueError as exc:
        raise ConfigError(f"{where}: invalid generator state ({exc})") from None
    return np.random.Generator(bit_generator)


def _build_preprocessor(est: Any, record: dict[str, Any], is_categorical: np.ndarray) -> None:
    """Rebuild ``est._preprocessor`` with sklearn's own ``_preprocess_X`` on synthetic rows
    holding exactly the stored categories, then check what its encoder learnt."""
    if not hasattr(est, "_preprocess_X"):
        raise UnsupportedEstimatorError("the installed scikit-learn cannot rebuild the categorical preprocessor of this model")
    names = getattr(est, "feature_names_in_", None)
    n_features_in, saved_names = est.n_features_in_, names
    entries = record["categories"]
    n_rows = max([len(e["values"]) + int(e["nan"]) for e in entries] + [1])
    columns: list[Any] = []
    categorical_iter = iter(entries)
    from_dtype = isinstance(est.categorical_features, str) and est.categorical_features == "from_dtype"
    for f in range(len(is_categorical)):
        if not is_categorical[f]:
            columns.append(np.zeros(n_rows))
            continue
        entry = next(categorical_iter)
        values = list(entry["values"].tolist())
        if entry["nan"]:
            values.append(np.nan)
        column = np.empty(n_rows, dtype=object if entry["values"].dtype == object or from_dtype else np.float64)
        column[:] = [values[i % len(values)] for i in range(n_rows)] if values else np.nan
        columns.append(column)
    if names is not None:
        import pandas as pd

        frame = {}
        for f, name in enumerate(names.tolist()):
            column = columns[f]
            if is_categorical[f] and from_dtype:
                categories = [v for v in column.tolist() if not _is_nan(v)]
                column = pd.Categorical(column, categories=sorted(set(categories), key=categories.index))
            frame[name] = column
        X = pd.DataFrame(frame)
    else:
        X = np.empty((n_rows, len(columns)), dtype=object if any(c.dtype == object for c in columns) else np.float64)
        for f, column in enumerate(columns):
            X[:, f] = column
    saved_categorical = est.is_categorical_
    try:
        est._preprocess_X(X, reset=True)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"config.fitted._preprocessor: sklearn refuses the stored categories ({exc})") from None
    rebuilt = est.is_categorical_
    if est._preprocessor is None or rebuilt is None or not np.array_equal(rebuilt, saved_categorical) or est.n_features_in_ != n_features_in:
        raise ConfigError("config.fitted._preprocessor: the rebuilt preprocessor disagrees with is_categorical_")
    encoder = est._preprocessor.named_transformers_["encoder"]
    for i, (learnt, entry) in enumerate(zip(encoder.categories_, entries, strict=True)):
        kept = learnt[:-1] if entry["nan"] else learnt
        if len(kept) != len(entry["values"]) or kept.tolist() != entry["values"].tolist():
            raise ConfigError(f"config.fitted._preprocessor.categories[{i}]: categories are not sorted as sklearn sorts them")
        if entry["nan"]:
            stored = np.empty(len(learnt), dtype=entry["values"].dtype if entry["values"].dtype == object else np.float64)
            stored[:-1] = entry["values"]
            stored[-1] = np.nan
        else:
            stored = entry["values"]
        encoder.categories_[i] = stored
    if saved_names is not None:
        est.feature_names_in_ = saved_names


def columns_of(arrays: dict[str, np.ndarray], n_trees: int) -> HistColumns:
    """:class:`HistColumns` from node arrays by stored name (bitsets absent: none)."""
    missing = [name for name in ("tree_ptr", *HIST_NODE_COLUMNS) if name not in arrays]
    if missing:
        raise ArrayError(f"nodes/{missing[0]}: missing")
    bitset_ptr = arrays.get("bitset_ptr")
    if bitset_ptr is None:
        bitset_ptr = np.zeros(n_trees + 1, dtype=PTR_DTYPE)
    empty = np.zeros((0, BITSET_WORDS), dtype=BITSET_DTYPE)
    raw, binned = (arrays.get(name, empty) for name in BITSET_ARRAYS)
    return HistColumns(arrays["tree_ptr"], {name: arrays[name] for name in HIST_NODE_COLUMNS}, bitset_ptr, raw, binned)


def _check_saved(cls: type, saved: SavedModel) -> None:
    decoded = _decode(cls, saved)
    if saved.node_arrays is not None:
        cols = columns_of(saved.node_arrays, saved.layout.n_trees)
        validate_hist_columns(cols, n_features=saved.layout.n_features, is_categorical=decoded.bin_is_categorical)


def _from_saved(cls: type, saved: SavedModel) -> Any:
    from sklearn.base import is_classifier
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    decoded = _decode(cls, saved)
    est, k = decoded.est, decoded.k
    n_trees = saved.layout.n_trees if saved.selection is None else len(saved.selection)
    if saved.node_arrays is None:
        raise ArrayError("nodes: no node arrays were read")
    cols = columns_of(saved.node_arrays, n_trees)
    if cols.n_trees != n_trees or n_trees % k:
        raise ArrayError(f"nodes/tree_ptr: {cols.n_trees} trees read, expected {n_trees} (whole iterations of {k})")
    validate_hist_columns(cols, n_features=saved.layout.n_features, is_categorical=decoded.bin_is_categorical)
    loss = decoded.loss
    est._loss = est._get_loss(sample_weight=None if loss["constant_hessian"] else np.ones(1))
    if type(est._loss).__name__ != loss["name"] or bool(est._loss.constant_hessian) != loss["constant_hessian"]:
        raise ConfigError(f"config.fitted._loss: {loss['name']!r}, but {type(est).__name__}(loss={est.loss!r}) makes {type(est._loss).__name__}")
    if decoded.preprocessor is not None:
        check_hist_preprocessor(decoded.preprocessor)
        _build_preprocessor(est, decoded.preprocessor, est.is_categorical_)
    else:
        est._preprocessor = None
    if is_classifier(est):
        from sklearn.preprocessing import LabelEncoder

        est._label_encoder = LabelEncoder()
        est._label_encoder.classes_ = est.classes_
    est._scorer = None  # as fit sets it
    if est.do_early_stopping_ and est.scoring != "loss":
        from sklearn.metrics import check_scoring

        est._scorer = check_scoring(est, est.scoring)
    unknown = [name for name in PREDICTOR_RECORD_DTYPE.names if name not in HIST_NODE_COLUMNS]
    if unknown:
        raise UnsupportedEstimatorError(f"the installed scikit-learn's TreePredictor nodes have field(s) {unknown} that format version 1 cannot fill; upgrade treeshard")
    records = np.zeros(cols.n_nodes, dtype=PREDICTOR_RECORD_DTYPE)
    for name in PREDICTOR_RECORD_DTYPE.names:
        records[name] = cols.nodes[name]
    ptr, bitset_ptr = cols.tree_ptr.tolist(), cols.bitset_ptr.tolist()
    raw = np.ascontiguousarray(cols.raw_left_cat_bitsets, dtype=np.uint32)
    binned = np.ascontiguousarray(cols.binned_left_cat_bitsets, dtype=np.uint32)
    trees = [
        TreePredictor(records[ptr[t] : ptr[t + 1]], binned[bitset_ptr[t] : bitset_ptr[t + 1]], raw[bitset_ptr[t] : bitset_ptr[t + 1]])
        for t in range(n_trees)
    ]
    est._predictors = [trees[i * k : (i + 1) * k] for i in range(n_trees // k)]
    if saved.is_partial:
        n_iter = n_trees // k
        est.max_iter = max(n_iter, 1)
        for name in ("train_score_", "validation_score_"):
            score = getattr(est, name)
            if len(score):
                setattr(est, name, score[: n_iter + 1])
    return est


def _read_saved(reader: Any, selection: np.ndarray, *, budget: int | None = None) -> SavedModel:
    config = reader.config
    cols = read_hist_columns(reader, len(selection))
    if budget is not None:
        needed = sum(array.nbytes for array in cols.stored().values()) * 2  # columns and sklearn's records
        if needed > budget:
            raise MemoryBudgetError(f"the selected trees need {needed:,} bytes in memory, over max_memory={budget:,} (select fewer iterations with estimators=...)")
    arrays = {}
    for name in HGB_ARRAYS:
        array = reader.read_extra(name)
        if array is not None:
            arrays[name] = array
    node_arrays = {"tree_ptr": cols.tree_ptr, **cols.nodes, "bitset_ptr": cols.bitset_ptr}
    node_arrays.update({name: getattr(cols, name) for name in BITSET_ARRAYS})
    return SavedModel(
        params=config.params,
        unserializable_params=list(config.unserializable_params),
        fitted=config.fitted,
        layout=config.trees,
        trees=(),
        arrays=arrays,
        selection=selection,
        node_arrays=node_arrays,
    )


def describe(config: Any) -> dict[str, Any]:
    """What ``treeshard info`` shows: iterations, trees per iteration, loss, categorical features, early stopping."""
    fitted, params = config.fitted, config.params
    k = fitted.get("n_trees_per_iteration_")
    k = k if isinstance(k, int) and not isinstance(k, bool) and k >= 1 else 1
    loss = fitted.get("_loss")
    categorical = fitted.get("is_categorical_")
    names = fitted.get("feature_names_in_")
    n_categorical = 0
    shown: list[Any] = []
    try:
        mask = decode_value("is_categorical_", categorical)
        label = decode_value("feature_names_in_", names) if names is not None else None
        if isinstance(mask, np.ndarray):
            n_categorical = int(mask.sum())
            shown = [str(label[f]) if isinstance(label, np.ndarray) else int(f) for f in np.flatnonzero(mask)]
    except (ConfigError, ValueError, TypeError, IndexError):
        pass
    early = fitted.get("do_early_stopping_")
    return {
        "iterations": config.trees.n_trees // k,
        "trees_per_iteration": k,
        "loss": params.get("loss") if isinstance(params.get("loss"), str) else None,
        "loss_class": loss.get("name") if isinstance(loss, dict) else None,
        "categorical_features": shown[:50],
        "n_categorical_features": n_categorical,
        "early_stopping": early if isinstance(early, bool) else None,
    }


def _adapter(name: str) -> Adapter:
    return Adapter(
        name,
        (ESTIMATORS[name].module, name),
        _to_saved,
        _from_saved,
        HGB_ARRAYS,
        check_saved=_check_saved,
        read_saved=_read_saved,
        describe=describe,
    )


ADAPTERS = [_adapter(name) for name in ids_of(HIST_BOOSTING)]
