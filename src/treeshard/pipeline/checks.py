"""What a node's params and fitted attributes must be, checked before anything is built (numpy only).

The record's structure is checked by :mod:`treeshard.pipeline.record`; here,
each allow-listed kind's own fields: types, shapes, index ranges, and the
relations between them (``_n_features_outs`` against ``categories_``, a
``ColumnTransformer``'s column selections against ``feature_names_in_``, the
width one step outputs against the width the next one expects), so that a
malformed store fails its load with a :class:`ConfigError` naming the field,
never later inside sklearn or the Predictor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from .table import UNIVARIATE, UNIVARIATE_MODES

_COMPOSITES = ("Pipeline", "FeatureUnion", "ColumnTransformer", "TransformedTargetRegressor")


def _fail(where: str, what: str, value: Any) -> ConfigError:
    shown = getattr(value, "shape", None)
    shown = f"an array of shape {shown}" if shown is not None else f"{type(value).__name__} {str(value)[:60]}"
    return ConfigError(f"{where}: expected {what}, got {shown}")


def _int(where: str, value: Any, low: int = 0, high: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise _fail(where, f"an integer in [{low}, {high}]", value)
    return int(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(where, "a boolean", value)
    return bool(value)


def _floats(where: str, value: Any, n: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not (isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.shape == (n,)):
        raise _fail(where, f"{n} floats", value)


def _ints(where: str, value: Any, *, high: int, length: int | None = None) -> np.ndarray:
    if not (isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu" and (length is None or len(value) == length)):
        raise _fail(where, "a 1-D integer array" + ("" if length is None else f" of {length} values"), value)
    if value.size and (value.min() < 0 or value.max() >= high):
        raise ConfigError(f"{where}: an index is out of range [0, {high})")
    return value


def _node_id(value: Any) -> str | None:
    from .nodes import EnsembleNode, EstimatorNode, SkopsNode

    if isinstance(value, SkopsNode):
        return "skops"
    if isinstance(value, EstimatorNode):
        return value.id
    if isinstance(value, EnsembleNode):
        return value.config.estimator
    return None


def _estimator(where: str, value: Any, *, strings: tuple[str, ...] = (), kinds: tuple[str, ...] | None = None) -> Any:
    if isinstance(value, str) and value in strings:
        return value
    if value is None and None in strings:  # type: ignore[comparison-overlap]
        return value
    kind = _node_id(value)
    if kind is None or (kinds is not None and kind not in kinds):
        allowed = " or ".join([*(repr(s) for s in strings), "an estimator" if kinds is None else "/".join(kinds)])
        raise _fail(where, allowed, value)
    return value


def _categories(where: str, categories: Any, n: int) -> list[np.ndarray]:
    if not (isinstance(categories, list) and len(categories) == n):
        raise _fail(where, f"a list of {n} arrays", categories)
    for i, c in enumerate(categories):
        if not (isinstance(c, np.ndarray) and c.ndim == 1 and c.dtype.kind in "fiuUO"):
            raise _fail(f"{where}[{i}]", "a 1-D array of categories", c)
        if c.dtype.kind == "O" and not all(v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)) for v in c.tolist()):
            raise ConfigError(f"{where}[{i}]: object categories are strings, None or NaN")
    return categories


def _optional_indices(where: str, value: Any, n: int, sizes: list[int]) -> list[Any]:
    if not (isinstance(value, list) and len(value) == n):
        raise _fail(where, f"a list of {n} entries", value)
    for i, item in enumerate(value):
        if item is not None:
            _ints(f"{where}[{i}]", item, high=max(sizes[i], 1))
    return value


def _drop_indices(where: str, value: Any, sizes: list[int]) -> None:
    if value is None:
        return
    if not (isinstance(value, np.ndarray) and value.shape == (len(sizes),) and value.dtype.kind in "iuO"):
        raise _fail(where, f"an array of {len(sizes)} indices or None", value)
    for i, item in enumerate(value.tolist()):
        if item is not None:
            _int(f"{where}[{i}]", item, 0, max(sizes[i] - 1, 0))


def _encoder(where: str, kind: str, fitted: dict[str, Any], n: int) -> None:
    categories = _categories(f"{where}.categories_", fitted.get("categories_"), n)
    sizes = [len(c) for c in categories]
    enabled = _bool(f"{where}._infrequent_enabled", fitted.get("_infrequent_enabled", False))
    grouped = list(sizes)
    if enabled:
        infrequent = _optional_indices(f"{where}._infrequent_indices", fitted.get("_infrequent_indices"), n, sizes)
        mappings = fitted.get("_default_to_infrequent_mappings")
        if not (isinstance(mappings, list) and len(mappings) == n):
            raise _fail(f"{where}._default_to_infrequent_mappings", f"a list of {n} entries", mappings)
        for i, (indices, mapping) in enumerate(zip(infrequent, mappings, strict=True)):
            if indices is not None:
                grouped[i] = sizes[i] - len(indices) + 1
            if mapping is not None:
                _ints(f"{where}._default_to_infrequent_mappings[{i}]", mapping, high=grouped[i], length=sizes[i])
            if (indices is None) != (mapping is None) or (indices is not None and len(indices) == 0):
                raise ConfigError(f"{where}._infrequent_indices[{i}]: does not match _default_to_infrequent_mappings[{i}]")
    if kind == "OrdinalEncoder":
        missing = fitted.get("_missing_indices", {})
        if not isinstance(missing, dict):
            raise _fail(f"{where}._missing_indices", "a dict", missing)
        for column, index in missing.items():
            column = _int(f"{where}._missing_indices key", column, 0, n - 1)
            _int(f"{where}._missing_indices[{column}]", index, 0, max(sizes[column] - 1, 0))
        return
    _drop_indices(f"{where}.drop_idx_", fitted.get("drop_idx_"), sizes)
    after = fitted.get("_drop_idx_after_grouping")
    _drop_indices(f"{where}._drop_idx_after_grouping", after, grouped)
    outs = fitted.get("_n_features_outs")
    expected = [g - (0 if after is None or after[i] is None else 1) for i, g in enumerate(grouped)]
    if outs != expected:
        raise ConfigError(f"{where}._n_features_outs: {str(outs)[:80]} does not match the categories (expected {expected})")


def _encoder_params(where: str, kind: str, params: dict[str, Any]) -> None:
    from .nodes import TYPES

    dtype = params.get("dtype", np.float64)
    numeric = {t for name, t in TYPES.items() if name not in ("builtins.object", "builtins.str", "bool", "builtins.bool")}
    if not (dtype in numeric or (isinstance(dtype, np.dtype) and dtype.kind in "iuf")):
        raise _fail(f"{where}.dtype", "a numeric type", dtype)
    if kind == "OrdinalEncoder":
        for name in ("unknown_value", "encoded_missing_value"):
            value = params.get(name, None if name == "unknown_value" else math.nan)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _fail(f"{where}.{name}", "a number", value)
        if params.get("handle_unknown") == "use_encoded_value" and params.get("unknown_value") is None:
            raise ConfigError(f"{where}.unknown_value: a number is needed with handle_unknown='use_encoded_value'")


def _columns(where: str, columns: Any, names: np.ndarray | None, n: int) -> list[int]:
    """The input positions a column selection picks (as sklearn resolves it)."""
    if isinstance(columns, slice):
        if any(isinstance(p, str) for p in (columns.start, columns.stop)):
            raise ConfigError(f"{where}: slices of column names are not supported")
        return list(range(n))[columns]
    if isinstance(columns, (str, int)) and not isinstance(columns, bool):
        columns = [columns]
    if isinstance(columns, np.ndarray):
        columns = columns.tolist()
    if not isinstance(columns, list):
        raise _fail(where, "a column selection (list, slice, name or index)", columns)
    if columns and all(isinstance(c, bool) for c in columns):
        if len(columns) != n:
            raise ConfigError(f"{where}: a boolean mask of {len(columns)} values for {n} features")
        return [i for i, c in enumerate(columns) if c]
    out = []
    for c in columns:
        if isinstance(c, str):
            if names is None or c not in names.tolist():
                raise ConfigError(f"{where}: column {c[:60]!r} is not a feature name")
            out.append(names.tolist().index(c))
        else:
            out.append(_int(where, c, -n, n - 1) % n)
    return out


#: Fitted attributes each kind needs under every supported sklearn (the others are optional).
REQUIRED = {
    "StandardScaler": ("mean_", "var_", "scale_", "n_samples_seen_"),
    "MinMaxScaler": ("scale_", "min_", "data_min_", "data_max_", "data_range_", "n_samples_seen_"),
    "MaxAbsScaler": ("max_abs_", "scale_", "n_samples_seen_"),
    "RobustScaler": ("center_", "scale_"),
    "SimpleImputer": ("statistics_", "_fit_dtype"),
    "MissingIndicator": ("features_", "_n_features", "_precomputed"),
    "OneHotEncoder": ("categories_", "drop_idx_", "_drop_idx_after_grouping", "_infrequent_enabled", "_n_features_outs"),
    "OrdinalEncoder": ("categories_", "_missing_indices", "_infrequent_enabled"),
    "KBinsDiscretizer": ("bin_edges_", "n_bins_"),
    "PolynomialFeatures": ("_min_degree", "_max_degree", "n_output_features_"),
    "VarianceThreshold": ("variances_",),
    "QuantileTransformer": ("n_quantiles_", "quantiles_", "references_"),
    "PowerTransformer": ("lambdas_",),
    "TargetEncoder": ("categories_", "encodings_", "target_type_", "target_mean_"),
    "SelectFromModel": ("estimator_",),
    "SelectKBest": ("scores_",),
    "SelectPercentile": ("scores_",),
    "SelectFpr": ("pvalues_",),
    "SelectFdr": ("pvalues_",),
    "SelectFwe": ("pvalues_",),
    "GenericUnivariateSelect": ("scores_",),
    "ColumnTransformer": ("transformers_", "_transformer_to_input_indices", "_remainder", "sparse_output_", "output_indices_"),
    "TransformedTargetRegressor": ("regressor_", "transformer_", "_training_dim"),
}


def check_node(node: Any) -> None:
    """Raise :class:`ConfigError` if ``node`` (an EstimatorNode) contradicts itself."""
    kind, where = node.id, node.where
    params, fitted = node.params, node.fitted
    if node.is_fitted or kind in ("ColumnTransformer", "TransformedTargetRegressor"):
        if kind != "ColumnTransformer" or node.is_fitted:
            missing = [name for name in REQUIRED.get(kind, ()) if name not in fitted]
            if missing:
                raise ConfigError(f"{where}.fitted: missing required attribute {missing[0]!r} of a fitted {kind}")
        if fitted.get("_infrequent_enabled") is True:
            for name in ("_infrequent_indices", "_default_to_infrequent_mappings"):
                if name not in fitted:
                    raise ConfigError(f"{where}.fitted: missing required attribute {name!r} of a fitted {kind}")
    if kind == "Pipeline":
        _steps(f"{where}.params.steps", params.get("steps"), ("passthrough", None))
        _chain(f"{where}.params.steps", [step for _, step in params["steps"]])
        return
    if kind == "FeatureUnion":
        _steps(f"{where}.params.transformer_list", params.get("transformer_list"), ("passthrough", "drop"))
        return
    if kind == "TransformedTargetRegressor":
        if node.is_fitted:
            _estimator(f"{where}.fitted.regressor_", fitted.get("regressor_"))
            _estimator(f"{where}.fitted.transformer_", fitted.get("transformer_"))
            _int(f"{where}.fitted._training_dim", fitted.get("_training_dim"), 1, 2)
        return
    if kind in ("OneHotEncoder", "OrdinalEncoder"):
        _encoder_params(f"{where}.params", kind, params)
    _function_params(where, kind, params)
    if not node.is_fitted:
        return
    w = f"{where}.fitted"
    if kind == "SelectFromModel":  # its n_features_in_ is the estimator's
        _estimator(f"{w}.estimator_", fitted.get("estimator_"))
        return
    if kind == "FunctionTransformer" and "n_features_in_" not in fitted:
        return
    n = _int(f"{w}.n_features_in_", fitted.get("n_features_in_"), 1, 2**31 - 1)
    names = fitted.get("feature_names_in_")
    if names is not None and not (isinstance(names, np.ndarray) and names.shape == (n,) and all(isinstance(v, str) for v in names.tolist())):
        raise _fail(f"{w}.feature_names_in_", f"an array of {n} strings", names)
    output = fitted.get("_sklearn_output_config", {})
    if not (isinstance(output, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in output.items())):
        raise _fail(f"{w}._sklearn_output_config", "a dict of strings", output)
    if kind == "StandardScaler":
        for name in ("mean_", "var_", "scale_"):
            _floats(f"{w}.{name}", fitted.get(name), n, optional=True)
    elif kind in ("MinMaxScaler", "MaxAbsScaler", "RobustScaler", "VarianceThreshold"):
        names_ = {
            "MinMaxScaler": ("scale_", "min_", "data_min_", "data_max_", "data_range_"),
            "MaxAbsScaler": ("max_abs_", "scale_"),
            "RobustScaler": ("center_", "scale_"),
            "VarianceThreshold": ("variances_",),
        }[kind]
        for name in names_:
            _floats(f"{w}.{name}", fitted.get(name), n, optional=kind == "RobustScaler")
    elif kind == "SimpleImputer":
        stats = fitted.get("statistics_")
        if not (isinstance(stats, np.ndarray) and stats.shape == (n,) and stats.dtype.kind in "fiuO"):
            raise _fail(f"{w}.statistics_", f"an array of {n} values", stats)
        for name in ("_fit_dtype", "_fill_dtype"):
            if name in fitted and not isinstance(fitted[name], np.dtype):
                raise _fail(f"{w}.{name}", "a dtype", fitted[name])
        indicator = fitted.get("indicator_")
        if (indicator is not None) != (params.get("add_indicator") is True):
            raise ConfigError(f"{w}.indicator_: present exactly when add_indicator is true")
        if indicator is not None:
            _estimator(f"{w}.indicator_", indicator, kinds=("MissingIndicator",))
            if indicator.fitted.get("_n_features") != n or indicator.params.get("sparse") is True or indicator.fitted.get("_precomputed") is not True:
                raise ConfigError(f"{w}.indicator_: not the precomputed, dense indicator of {n} features")
    elif kind == "MissingIndicator":
        total = _int(f"{w}._n_features", fitted.get("_n_features"), 1, 2**31 - 1)
        _ints(f"{w}.features_", fitted.get("features_"), high=total)
        _bool(f"{w}._precomputed", fitted.get("_precomputed"))
        if total != n:
            raise ConfigError(f"{w}._n_features: {total}, but n_features_in_ is {n}")
    elif kind in ("OneHotEncoder", "OrdinalEncoder"):
        _encoder(w, kind, fitted, n)
    elif kind == "KBinsDiscretizer":
        edges = fitted.get("bin_edges_")
        if not (isinstance(edges, np.ndarray) and edges.shape == (n,) and all(isinstance(e, np.ndarray) and e.ndim == 1 and e.dtype.kind == "f" for e in edges.tolist())):
            raise _fail(f"{w}.bin_edges_", f"{n} arrays of bin edges", edges)
        _ints(f"{w}.n_bins_", fitted.get("n_bins_"), high=2**31, length=n)
        if "_encoder" in fitted:
            _estimator(f"{w}._encoder", fitted["_encoder"], kinds=("OneHotEncoder",))
    elif kind == "QuantileTransformer":
        m = _int(f"{w}.n_quantiles_", fitted.get("n_quantiles_"), 1, 2**31 - 1)
        quantiles, references = fitted.get("quantiles_"), fitted.get("references_")
        if not (isinstance(quantiles, np.ndarray) and quantiles.dtype.kind == "f" and quantiles.shape == (m, n)):
            raise _fail(f"{w}.quantiles_", f"a ({m}, {n}) float array", quantiles)
        _floats(f"{w}.references_", references, m)
    elif kind == "PowerTransformer":
        _floats(f"{w}.lambdas_", fitted.get("lambdas_"), n)
        scaler = fitted.get("_scaler")
        if (scaler is not None) != (params.get("standardize") is True):
            raise ConfigError(f"{w}._scaler: present exactly when standardize is true")
        if scaler is not None:
            _estimator(f"{w}._scaler", scaler, kinds=("StandardScaler",))
            if scaler.fitted.get("n_features_in_") != n:
                raise ConfigError(f"{w}._scaler: it scales {scaler.fitted.get('n_features_in_')} features, not {n}")
    elif kind == "TargetEncoder":
        categories = _categories(f"{w}.categories_", fitted.get("categories_"), n)
        target_type = fitted.get("target_type_")
        if target_type not in ("binary", "multiclass", "continuous"):
            raise _fail(f"{w}.target_type_", "'binary', 'multiclass' or 'continuous'", target_type)
        classes = fitted.get("classes_")
        per_feature = len(classes) if target_type == "multiclass" and isinstance(classes, np.ndarray) else 1
        encodings = fitted.get("encodings_")
        if not (isinstance(encodings, list) and len(encodings) == n * per_feature):
            raise _fail(f"{w}.encodings_", f"a list of {n * per_feature} arrays", encodings)
        for i, encoding in enumerate(encodings):
            _floats(f"{w}.encodings_[{i}]", encoding, len(categories[i // per_feature]))
        mean = fitted.get("target_mean_")
        if target_type == "multiclass":
            _floats(f"{w}.target_mean_", mean, per_feature)
        elif isinstance(mean, bool) or not isinstance(mean, (float, np.floating)):
            raise _fail(f"{w}.target_mean_", "a float", mean)
    elif kind in UNIVARIATE:
        label = None  # the param a GenericUnivariateSelect's ``param`` stands for
        if kind == "GenericUnivariateSelect":
            mode = params.get("mode", "percentile")
            if not isinstance(mode, str) or mode not in UNIVARIATE_MODES:
                raise _fail(f"{where}.params.mode", f"one of {list(UNIVARIATE_MODES)}", mode)
            kind, label = UNIVARIATE_MODES[mode]
            params = {label: params.get("param", 1e-5)}
        by_pvalues = kind not in ("SelectKBest", "SelectPercentile")
        _floats(f"{w}.scores_", fitted.get("scores_"), n, optional=by_pvalues)
        _floats(f"{w}.pvalues_", fitted.get("pvalues_"), n, optional=not by_pvalues)
        alpha, k, percentile = params.get("alpha", 0.05), params.get("k", 10), params.get("percentile", 10)
        if by_pvalues and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1):
            raise _fail(f"{where}.params.{'param' if label else 'alpha'}", "a number in [0, 1]", alpha)
        if kind == "SelectKBest" and not (k == "all" or (isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= n)):
            raise _fail(f"{where}.params.{'param' if label else 'k'}", f"'all' or an integer in [0, {n}]", k)
        if kind == "SelectPercentile" and (isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 <= percentile <= 100):
            raise _fail(f"{where}.params.{'param' if label else 'percentile'}", "a number in [0, 100]", percentile)
    elif kind == "PolynomialFeatures":
        low = _int(f"{w}._min_degree", fitted.get("_min_degree"), 0, 1000)
        _int(f"{w}._max_degree", fitted.get("_max_degree"), low, 1000)
        _int(f"{w}.n_output_features_", fitted.get("n_output_features_"), 0, 2**31)
    elif kind == "ColumnTransformer":
        _column_transformer(node, n, names)


def _steps(where: str, steps: Any, strings: tuple[Any, ...]) -> None:
    if not (isinstance(steps, list) and steps):
        raise _fail(where, "a non-empty list of (name, estimator) pairs", steps)
    seen = set()
    for i, step in enumerate(steps):
        if not (isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str)):
            raise _fail(f"{where}[{i}]", "a (name, estimator) pair", step)
        if step[0] in seen:
            raise ConfigError(f"{where}[{i}]: duplicate name {step[0][:60]!r}")
        seen.add(step[0])
        _estimator(f"{where}[{i}][1]", step[1], strings=strings)


def _column_transformer(node: Any, n: int, names: np.ndarray | None) -> None:
    where, params, fitted = f"{node.where}.fitted", node.params, node.fitted
    _bool(f"{where}.sparse_output_", fitted.get("sparse_output_"))
    entries = fitted.get("transformers_")
    indices = fitted.get("_transformer_to_input_indices")
    if not isinstance(indices, dict):
        raise _fail(f"{where}._transformer_to_input_indices", "a dict", indices)
    if not isinstance(entries, list):
        raise _fail(f"{where}.transformers_", "a list of (name, transformer, columns)", entries)
    seen = set()
    for i, entry in enumerate(entries):
        if not (isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[0], str)):
            raise _fail(f"{where}.transformers_[{i}]", "a (name, transformer, columns) triple", entry)
        name, transformer, columns = entry
        if name in seen:
            raise ConfigError(f"{where}.transformers_[{i}]: duplicate name {name[:60]!r}")
        seen.add(name)
        _estimator(f"{where}.transformers_[{i}][1]", transformer, strings=("drop", "passthrough"))
        picked = _columns(f"{where}.transformers_[{i}][2]", columns, names, n)
        stored = indices.get(name)
        if not isinstance(stored, list) or stored != picked:
            raise ConfigError(f"{where}._transformer_to_input_indices[{name[:60]!r}]: does not match the columns of transformers_[{i}]")
        width = in_width(transformer)
        if width is not None and width != len(picked):
            raise ConfigError(f"{where}.transformers_[{i}]: the transformer expects {width} features, its columns select {len(picked)}")
    for name, value in indices.items():
        if not isinstance(name, str):
            raise _fail(f"{where}._transformer_to_input_indices", "string keys", name)
        if not (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise _fail(f"{where}._transformer_to_input_indices[{name[:60]!r}]", "a list of column indices", value)
        _ints(f"{where}._transformer_to_input_indices[{name[:60]!r}]", np.asarray(value, dtype=np.int64), high=n)
    output = fitted.get("output_indices_")
    if not (isinstance(output, dict) and all(isinstance(k, str) and isinstance(v, slice) for k, v in output.items())):
        raise _fail(f"{where}.output_indices_", "a dict of slices", output)
    remainder = fitted.get("_remainder")
    if not (isinstance(remainder, tuple) and len(remainder) == 3 and isinstance(remainder[0], str)):
        raise _fail(f"{where}._remainder", "a (name, transformer, columns) triple", remainder)
    _estimator(f"{where}._remainder[1]", remainder[1], strings=("drop", "passthrough"))
    _columns(f"{where}._remainder[2]", remainder[2], names, n)
    templates = params.get("transformers")
    if not isinstance(templates, list):
        raise _fail(f"{node.where}.params.transformers", "a list", templates)


# --------------------------------------------------------------------------- widths
def in_width(node: Any) -> int | None:
    """Features ``node`` expects (None: not known from the record)."""
    from .nodes import EnsembleNode, EstimatorNode

    if isinstance(node, EnsembleNode):
        # An IsolationForest's trees see a subset of its input (max_features): its width is n_features_in_.
        n = node.config.fitted.get("n_features_in_")
        return n if isinstance(n, int) and not isinstance(n, bool) else node.config.trees.n_features
    if not isinstance(node, EstimatorNode):
        return None
    n = node.fitted.get("n_features_in_")
    if isinstance(n, int) and not isinstance(n, bool):
        return n
    if node.id == "Pipeline":
        live = [step for _, step in node.params.get("steps", []) if step not in ("passthrough", None)]
        return in_width(live[0]) if live else None
    return None


def _function_params(where: str, kind: str, params: dict[str, Any]) -> None:
    """Transform functions are numpy's allow-listed ufuncs; a univariate selector's ``score_func`` is sklearn's."""
    from .nodes import Function
    from .table import FUNCTION_PARAMS

    if kind not in FUNCTION_PARAMS:
        return
    allowed, names = FUNCTION_PARAMS[kind]
    for name in names:
        value = params.get(name)
        if isinstance(value, Function) and value.id not in allowed:
            raise ConfigError(f"{where}.params.{name}: function {value.id!r} is not allowed here (allowed: {', '.join(allowed)})")


def univariate_support(kind: str, params: dict[str, Any], fitted: dict[str, Any]) -> np.ndarray:
    """The features a fitted univariate selector keeps (``table.UNIVARIATE``), computed as sklearn 1.3-1.9 does."""
    if kind == "GenericUnivariateSelect":
        kind, name = UNIVARIATE_MODES[params.get("mode", "percentile")]
        params = {name: params.get("param", 1e-5)}
    if kind in ("SelectFpr", "SelectFdr", "SelectFwe"):
        pvalues, alpha = fitted["pvalues_"], params.get("alpha", 0.05)
        if kind == "SelectFpr":
            return pvalues < alpha
        if kind == "SelectFwe":
            return pvalues < alpha / len(pvalues)
        ranked = np.sort(pvalues)
        selected = ranked[ranked <= float(alpha) / len(pvalues) * np.arange(1, len(pvalues) + 1)]
        return np.zeros_like(pvalues, dtype=bool) if selected.size == 0 else pvalues <= selected.max()
    scores = fitted["scores_"]
    if kind == "SelectKBest":
        k = params.get("k", 10)
        if k == "all":
            return np.ones(scores.shape, dtype=bool)
        mask = np.zeros(scores.shape, dtype=bool)
        if k:
            mask[np.argsort(_clean_nans(scores), kind="mergesort")[-k:]] = True
        return mask
    percentile = params.get("percentile", 10)
    if percentile == 100:
        return np.ones(len(scores), dtype=bool)
    if percentile == 0:
        return np.zeros(len(scores), dtype=bool)
    cleaned = _clean_nans(scores)
    threshold = np.percentile(cleaned, 100 - percentile)
    mask = cleaned > threshold
    ties = np.where(cleaned == threshold)[0]
    if len(ties):
        mask[ties[: int(len(cleaned) * percentile / 100) - mask.sum()]] = True
    return mask


def _clean_nans(scores: np.ndarray) -> np.ndarray:
    """sklearn's ``_clean_nans``: NaN scores as the smallest float of their dtype."""
    out = np.array(scores, dtype=scores.dtype if scores.dtype.kind == "f" else np.float64)
    out[np.isnan(out)] = np.finfo(out.dtype).min
    return out


def out_width(node: Any) -> int | None:
    """Features ``node`` outputs (None: not known from the record, or not a transformer)."""
    from .nodes import EstimatorNode

    if not isinstance(node, EstimatorNode) or not node.is_fitted and node.id != "Pipeline":
        return None
    kind, params, fitted = node.id, node.params, node.fitted
    n = fitted.get("n_features_in_")
    if kind in ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "OrdinalEncoder", "FunctionTransformer", "Binarizer", "Normalizer", "QuantileTransformer", "PowerTransformer"):
        return n
    if kind == "TargetEncoder":
        classes = fitted.get("classes_")
        return n * len(classes) if fitted.get("target_type_") == "multiclass" and isinstance(classes, np.ndarray) else n
    if kind == "OneHotEncoder":
        return sum(fitted["_n_features_outs"])
    if kind == "MissingIndicator":
        return n if params.get("features") == "all" else len(fitted["features_"])
    if kind == "SimpleImputer":
        statistics = fitted["statistics_"]
        kept = n if params.get("keep_empty_features") else int((~_nan(statistics)).sum())
        indicator = fitted.get("indicator_")
        return kept + (out_width(indicator) or 0) if indicator is not None else kept
    if kind == "PolynomialFeatures":
        return fitted["n_output_features_"]
    if kind in UNIVARIATE:
        return int(univariate_support(kind, params, fitted).sum())
    if kind == "VarianceThreshold":
        threshold = params.get("threshold", 0.0)
        return int((fitted["variances_"] > threshold).sum()) if isinstance(threshold, (int, float)) else None
    if kind == "KBinsDiscretizer":
        return n if params.get("encode") == "ordinal" else int(fitted["n_bins_"].sum())
    if kind == "ColumnTransformer":
        total = 0
        for _, transformer, columns in fitted["transformers_"]:
            picked = fitted["_transformer_to_input_indices"].get(_, [])
            if transformer == "drop" or not picked:
                continue
            width = len(picked) if transformer == "passthrough" else out_width(transformer)
            if width is None:
                return None
            total += width
        return total
    if kind == "Pipeline":
        live = [step for _, step in params.get("steps", []) if step not in ("passthrough", None)]
        return out_width(live[-1]) if live else None
    return None


def _nan(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([isinstance(v, float) and v != v for v in values.tolist()], dtype=bool)
    return np.zeros(values.shape, dtype=bool)


def _chain(where: str, steps: list[Any]) -> None:
    """Each step outputs as many features as the next one expects."""
    live = [(i, step) for i, step in enumerate(steps) if step not in ("passthrough", None)]
    for (_, before), (j, after) in zip(live, live[1:]):
        width, expected = out_width(before), in_width(after)
        if width is not None and expected is not None and width != expected:
            raise ConfigError(f"{where}[{j}]: the step before outputs {width} features; this one expects {expected}")
