"""Serving a whole pipeline with numpy only: what :class:`treeshard.Predictor` does with a pipeline store.

Each node of the parsed record (:mod:`treeshard.pipeline.record`) is compiled
into a step that repeats sklearn's own arithmetic on the same dtypes, in the
same order (``X -= mean_; X /= scale_`` in place, ``np.repeat`` of the
statistics into the missing cells, ...), so that every output is
bit-identical to the sklearn pipeline's. Encoders are integer lookups into
``categories_``. A pipeline with a node that has no step here is refused when
the predictor is built, naming the node. A ``SelectFromModel``'s support is
computed once, from the stored ensemble's feature importances
(:mod:`treeshard.pipeline.importances`).

Input is a pandas DataFrame (columns selected by name; string, object and
categorical columns are read with ``np.asarray`` as sklearn does), an
array, or a JSON-style request (a mapping of columns or a list of records,
:mod:`treeshard.pipeline.request`), each column converted as the fitted step
that reads it expects (:func:`input_kinds`). Neither sklearn, scipy nor
pandas is imported. ``set_output`` pandas containers are served on the step
that feeds an ensemble (the DataFrame's column names are by construction
those the ensemble was fitted on, so the ensemble reads the same values from
an array). Not served: sparse intermediate output feeding anything but an
ensemble, other ``set_output``
containers, ``missing_values`` other than NaN, transformer weights.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..errors import UnsupportedEstimatorError
from ..predictor.registry import served_as_predictor
from .nodes import EnsembleNode, EstimatorNode, Function, SkopsNode
from .record import PipelineRecord
from .request import column_array, is_request, request_columns
from .table import KINDS

_FLOAT = (np.dtype("float64"), np.dtype("float32"), np.dtype("float16"))


# --------------------------------------------------------------------------- input
def _is_dataframe(X: Any) -> bool:
    return hasattr(X, "iloc") and hasattr(X, "columns") and getattr(X, "ndim", 0) == 2


class _Table:
    """A DataFrame's columns as numpy arrays, each read once (``np.asarray`` of the column, as
    sklearn reads it) and shared by every step: selecting columns through pandas costs more
    than the rest of a one-row prediction."""

    def __init__(self, frame: Any, columns: list[np.ndarray | None] | None = None, names: list[str] | None = None) -> None:
        self.frame = frame
        self.names = [str(c) for c in frame.columns] if names is None else names
        self._columns: list[np.ndarray | None] = [None] * len(self.names) if columns is None else columns
        self._positions = list(range(len(self.names)))
        self.shape = (len(frame), len(self.names))

    def _read(self, position: int) -> np.ndarray:
        # DataFrame._get_column_array skips building a Series (pandas >= 1.3); public fallback otherwise.
        get = getattr(self.frame, "_get_column_array", None)
        return np.asarray(get(position) if get is not None else self.frame.iloc[:, position])

    @property
    def columns(self) -> list[str]:
        return self.names

    def __len__(self) -> int:
        return self.shape[0]

    def column(self, i: int) -> np.ndarray:
        array = self._columns[i]
        if array is None:
            array = self._columns[i] = self._read(self._positions[i])
        return array

    def select(self, indices: Any) -> _Table:
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.names = [self.names[i] for i in indices]
        for i in indices:
            self.column(i)
        out._columns = [self._columns[i] for i in indices]
        out._positions = [self._positions[i] for i in indices]
        out.shape = (self.shape[0], len(out.names))
        return out

    def select_names(self, names: list[str]) -> _Table:
        where = {name: i for i, name in enumerate(self.names)}
        return self.select([where[name] for name in names])

    def to_array(self) -> np.ndarray:
        if not self.names:
            return np.empty((self.shape[0], 0))
        columns = [self.column(i) for i in range(len(self.names))]
        return np.column_stack(columns) if len({c.dtype for c in columns}) == 1 else np.asarray(self.frame.iloc[:, self._positions])

    def original(self) -> Any:
        """The DataFrame itself when no column was dropped (for an ensemble's own feature-name checks)."""
        return self.frame if self._positions == list(range(self.frame.shape[1])) else self.to_array()


class _RequestTable(_Table):
    """A JSON-style request (:mod:`treeshard.pipeline.request`) as a table: each column converted on
    first use with the kind the fitted pipeline reads it as; columns no step reads are never converted."""

    def __init__(self, columns: dict[str, Any], n_rows: int, kinds: dict[str, str]) -> None:
        self.frame = None
        self.raw = list(columns.items())
        self.kinds = kinds
        self.names = [name for name, _ in self.raw]
        self._columns = [None] * len(self.names)
        self._positions = list(range(len(self.names)))
        self.shape = (n_rows, len(self.names))

    def _read(self, position: int) -> np.ndarray:
        name, values = self.raw[position]
        return column_array(name, self.kinds.get(name, "any"), values)

    def to_array(self) -> np.ndarray:
        if not self.names:
            return np.empty((self.shape[0], 0))
        columns = [self.column(i) for i in range(len(self.names))]
        kinds = {c.dtype.kind for c in columns}
        if len({c.dtype for c in columns}) > 1 and not kinds <= set("iuf"):
            columns = [c.astype(object) for c in columns]  # as np.asarray(DataFrame) does for mixed dtypes
        return np.column_stack(columns)

    def original(self) -> Any:
        return self.to_array()


def _is_frame(X: Any) -> bool:
    return isinstance(X, _Table)


def _n_columns(X: Any) -> int:
    return int(X.shape[1])


def _as_array(X: Any, dtype: Any = None) -> np.ndarray:
    if isinstance(X, np.ndarray) and X.ndim == 2 and dtype is None:
        return X
    if isinstance(X, _Table):
        X = X.to_array()
        if dtype is None:
            return X
    X = np.asarray(X, dtype=dtype)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array, got {X.ndim}D array instead")
    return X


def _check_dense(X: np.ndarray, root: Step) -> None:
    """The ValueError sklearn's first step raises for complex ``X`` or ``X`` that is not 2-D."""
    if np.iscomplexobj(X):
        raise ValueError(f"Complex data not supported\n{X}\n")
    if X.ndim < 2:
        raise ValueError(
            f"Expected 2D array, got {'scalar' if X.ndim == 0 else '1D'} array instead:\narray={X}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    if X.ndim > 2:
        raise ValueError(f"Found array with dim {X.ndim}, while dim <= 2 is required by {_first_step(root).name}.")


def _as_float(X: Any) -> np.ndarray:
    """A copy of ``X`` as sklearn's ``dtype=FLOAT_DTYPES`` makes it (float16/32/64 kept, else float64)."""
    array = _as_array(X)
    out = array.copy() if array.dtype in _FLOAT else array.astype(np.float64)
    if np.isinf(out).any():
        raise ValueError(f"Input X contains infinity or a value too large for {out.dtype!r}.")
    return out


def _columns_of(X: Any) -> list[np.ndarray]:
    """Each column as sklearn's encoders read it (a DataFrame column by column)."""
    if _is_frame(X):
        return [X.column(i) for i in range(_n_columns(X))]
    array = _as_array(X)
    if array.dtype.kind == "U" and not hasattr(X, "dtype"):
        array = array.astype(object)
    return [array[:, i] for i in range(array.shape[1])]


def _missing(values: np.ndarray) -> np.ndarray:
    """sklearn's ``_get_mask(X, np.nan)``: NaN for floats, ``x != x`` for objects."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return values != values
    return np.zeros(values.shape, dtype=bool)


class Step:
    """A compiled node: ``transform`` for transformers, the estimator methods for the last step."""

    sparse_output = False
    n_features_in_: int | None = None
    feature_names_in_: np.ndarray | None = None
    name = "step"

    def check_input(self, X: Any) -> None:
        if self.n_features_in_ is None:
            return
        if _is_frame(X) and self.feature_names_in_ is not None:
            names = X.columns
            if names != list(self.feature_names_in_):
                raise ValueError("The feature names should match those that were passed during fit.")
        n = _n_columns(X)
        if n != self.n_features_in_:
            raise ValueError(f"X has {n} features, but {self.name} is expecting {self.n_features_in_} features as input.")

    def transform(self, X: Any) -> Any:
        raise UnsupportedEstimatorError(f"{self.name} has no transform")


def _fitted_names(node: EstimatorNode) -> tuple[int | None, np.ndarray | None]:
    n = node.fitted.get("n_features_in_")
    return (int(n) if n is not None else None), node.fitted.get("feature_names_in_")


class _Transformer(Step):
    def __init__(self, node: EstimatorNode) -> None:
        self.node = node
        self.name = node.id
        self.params, self.fitted = node.params, node.fitted
        self.n_features_in_, self.feature_names_in_ = _fitted_names(node)
        _check_params(node)


_BOOL = (True, False)
#: The params each step reads, and their allowed values (sklearn validates them when it builds an
#: estimator; the Predictor builds none, so it checks what it uses here).
_PARAMS: dict[str, dict[str, tuple[Any, ...]]] = {
    "StandardScaler": {"with_mean": _BOOL, "with_std": _BOOL},
    "MinMaxScaler": {"clip": _BOOL},
    "MaxAbsScaler": {"clip": _BOOL},
    "RobustScaler": {"with_centering": _BOOL, "with_scaling": _BOOL},
    "MissingIndicator": {"features": ("missing-only", "all"), "error_on_new": _BOOL, "sparse": ("auto", False, True)},
    "SimpleImputer": {"strategy": ("mean", "median", "most_frequent", "constant"), "keep_empty_features": _BOOL, "add_indicator": _BOOL},
    "OneHotEncoder": {"handle_unknown": ("error", "ignore", "infrequent_if_exist", "warn")},
    "OrdinalEncoder": {"handle_unknown": ("error", "use_encoded_value")},
    "FunctionTransformer": {"validate": _BOOL},
}


def _check_params(node: EstimatorNode) -> None:
    from ..errors import ConfigError

    for name, allowed in _PARAMS.get(node.id, {}).items():
        if name in node.params and not any(node.params[name] is v or (type(node.params[name]) is type(v) and node.params[name] == v) for v in allowed):
            raise ConfigError(f"{node.where}.params.{name}: {str(node.params[name])[:60]!r} is not one of {list(allowed)}")
    if node.id == "MinMaxScaler":
        low_high = node.params.get("feature_range", (0, 1))
        if not (isinstance(low_high, (tuple, list)) and len(low_high) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in low_high) and low_high[0] < low_high[1]):
            raise ConfigError(f"{node.where}.params.feature_range: expected (min, max) numbers")
    if node.id == "VarianceThreshold":
        threshold = node.params.get("threshold", 0.0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
            raise ConfigError(f"{node.where}.params.threshold: expected a number >= 0")


# --------------------------------------------------------------------------- scalers
class _StandardScaler(_Transformer):
    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_float(X)
        if self.params.get("with_mean", True):
            X -= self.fitted["mean_"].astype(X.dtype)
        if self.params.get("with_std", True):
            X /= self.fitted["scale_"].astype(X.dtype)
        return X


class _MinMaxScaler(_Transformer):
    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_float(X)
        X *= self.fitted["scale_"]
        X += self.fitted["min_"]
        if self.params.get("clip", False):
            low, high = self.params["feature_range"]
            np.clip(X, np.asarray(low, dtype=X.dtype), np.asarray(high, dtype=X.dtype), out=X)
        return X


class _MaxAbsScaler(_Transformer):
    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_float(X)
        X /= self.fitted["scale_"]
        if self.params.get("clip", False):
            np.clip(X, np.asarray(-1.0, dtype=X.dtype), np.asarray(1.0, dtype=X.dtype), out=X)
        return X


class _RobustScaler(_Transformer):
    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_float(X)
        if self.params.get("with_centering", True):
            X -= self.fitted["center_"]
        if self.params.get("with_scaling", True):
            X /= self.fitted["scale_"]
        return X


# --------------------------------------------------------------------------- missing values
class _MissingIndicator(_Transformer):
    def __init__(self, node: EstimatorNode) -> None:
        super().__init__(node)
        _nan_only(node)
        if node.params.get("sparse") is True:
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor does not serve sparse=True")

    def mask(self, X: Any) -> np.ndarray:
        """The indicator of a precomputed mask or of ``X``."""
        if self.fitted.get("_precomputed", False):
            mask = X
        else:
            self.check_input(X)
            array = _as_array(X)
            if array.dtype.kind not in "iufO":
                raise ValueError(f"MissingIndicator does not support data with dtype {array.dtype}.")
            mask = _missing(array)
        features = self.fitted["features_"]
        if self.params.get("features", "missing-only") == "missing-only":
            new = np.setdiff1d(np.flatnonzero(mask.sum(axis=0)), features)
            if self.params.get("error_on_new", True) and new.size > 0:
                raise ValueError(f"The features {new} have missing values in transform but have no missing values in fit.")
            if features.size < self.fitted["_n_features"]:
                mask = mask[:, features]
        return mask

    def transform(self, X: Any) -> np.ndarray:
        return self.mask(X)


def _nan_only(node: EstimatorNode) -> None:
    value = node.params.get("missing_values", np.nan)
    if not (isinstance(value, float) and value != value):
        raise UnsupportedEstimatorError(f"{node.where}: the Predictor serves missing_values=nan only, not {value!r}")


class _SimpleImputer(_Transformer):
    def __init__(self, node: EstimatorNode, compile_node: Any) -> None:
        super().__init__(node)
        _nan_only(node)
        indicator = node.fitted.get("indicator_")
        self.indicator = compile_node(indicator) if indicator is not None else None

    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        strategy = self.params.get("strategy", "mean")
        fit_dtype = self.fitted["_fit_dtype"]
        if fit_dtype.kind == "O":
            X = _as_array(X, dtype=object).copy()
        elif strategy in ("mean", "median"):
            X = _as_float(X)
        else:
            X = _as_array(X).copy()
        if X.dtype.kind not in "iufO":
            raise ValueError(f"SimpleImputer does not support data with dtype {X.dtype}.")
        statistics = self.fitted["statistics_"]
        fill_dtype = self.fitted.get("_fill_dtype", statistics.dtype)
        missing_mask = _missing(X)
        if self.params.get("keep_empty_features", False):
            valid_statistics, indexes = statistics.astype(fill_dtype, copy=False), None
        else:
            valid = ~_missing(statistics)
            valid_statistics, indexes = statistics[valid].astype(fill_dtype, copy=False), np.flatnonzero(valid)
            if not valid.all():
                X = X[:, indexes]
        mask = missing_mask if indexes is None or len(indexes) == missing_mask.shape[1] else missing_mask[:, indexes]
        n_missing = np.sum(mask, axis=0)
        values = np.repeat(valid_statistics, n_missing)
        coordinates = np.where(mask.transpose())[::-1]
        X[coordinates] = values
        if self.params.get("add_indicator", False):
            return np.hstack((X, self.indicator.mask(missing_mask)))
        return X


# --------------------------------------------------------------------------- encoders
def _codes(values: np.ndarray, categories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's index in ``categories`` and whether it is known (sklearn's ``_check_unknown`` + ``_encode``)."""
    n = len(values)
    codes = np.zeros(n, dtype=np.intp)
    if categories.dtype.kind == "O" or values.dtype.kind in "OU":
        index: dict[Any, int] = {}
        none_at = nan_at = -1
        for i, category in enumerate(categories.tolist()):
            if category is None:
                none_at = i
            elif isinstance(category, float) and category != category:
                nan_at = i
            else:
                index[category] = i
        valid = np.ones(n, dtype=bool)
        uniques, inverse = _unique_objects(values)
        found = np.empty(len(uniques), dtype=np.intp)
        for k, value in enumerate(uniques):
            if value is None:
                found[k] = none_at
            elif isinstance(value, float) and value != value:
                found[k] = nan_at
            else:
                found[k] = index.get(value, -1)
        codes = found[inverse]
        valid = codes >= 0
        codes[~valid] = 0
        return codes, valid
    nan_values = np.isnan(values) if values.dtype.kind == "f" else np.zeros(n, dtype=bool)
    has_nan = categories.dtype.kind == "f" and len(categories) and np.isnan(categories[-1])
    known = categories[:-1] if has_nan else categories
    position = np.searchsorted(known, values)
    inside = position < len(known)
    valid = np.zeros(n, dtype=bool)
    valid[inside] = known[position[inside]] == values[inside]
    codes[valid] = position[valid]
    if has_nan:
        valid[nan_values] = True
        codes[nan_values] = len(categories) - 1
    return codes, valid


def _unique_objects(values: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """Distinct values (by equality and hash, as a dict sees them) and each value's index among them."""
    seen: dict[Any, int] = {}
    nan_key = object()
    inverse = np.empty(len(values), dtype=np.intp)
    uniques: list[Any] = []
    for i, value in enumerate(values.tolist()):
        key = nan_key if isinstance(value, float) and value != value else value
        k = seen.get(key)
        if k is None:
            k = seen[key] = len(uniques)
            uniques.append(value)
        inverse[i] = k
    return uniques, inverse


class _Encoder(_Transformer):
    def _transform(self, X: Any, handle_unknown: str, ignore: dict[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        columns = _columns_of(X)
        self.check_input(X)
        n = len(columns[0]) if columns else 0
        X_int = np.zeros((n, len(columns)), dtype=int)
        X_mask = np.ones((n, len(columns)), dtype=bool)
        for i, (values, categories) in enumerate(zip(columns, self.fitted["categories_"], strict=True)):
            codes, valid = _codes(values, categories)
            if not valid.all():
                if handle_unknown == "error":
                    unknown = values[~valid]
                    unknown = list(np.unique(unknown)) if unknown.dtype.kind in "iuf" else sorted({v for v in unknown.tolist()}, key=str)
                    raise ValueError(f"Found unknown categories {unknown} in column {i} during transform")
                X_mask[:, i] = valid
                codes[~valid] = 0
            X_int[:, i] = codes
        if self.fitted.get("_infrequent_enabled", False):
            ignore = ignore or {}
            for i, infrequent in enumerate(self.fitted["_infrequent_indices"]):
                if infrequent is None:
                    continue
                X_int[~X_mask[:, i], i] = infrequent[0]
                if self.params.get("handle_unknown") in ("infrequent_if_exist", "warn"):
                    X_mask[:, i] = True
            for i, mapping in enumerate(self.fitted["_default_to_infrequent_mappings"]):
                if mapping is None:
                    continue
                rows = X_int[:, i] != ignore[i] if i in ignore else slice(None)
                X_int[rows, i] = np.take(mapping, X_int[rows, i])
        return X_int, X_mask


class _OneHotEncoder(_Encoder):
    def __init__(self, node: EstimatorNode) -> None:
        super().__init__(node)
        self.sparse_output = node.params.get("sparse_output", node.params.get("sparse", True))
        if not isinstance(self.sparse_output, bool):
            from ..errors import ConfigError

            raise ConfigError(f"{node.where}.params.sparse_output: expected true or false")

    def transform(self, X: Any, *, dtype: Any = None) -> np.ndarray:
        handle_unknown = self.params.get("handle_unknown", "error")
        if handle_unknown == "warn":
            handle_unknown = "infrequent_if_exist"
        X_int, X_mask = self._transform(X, handle_unknown, None)
        n_samples = X_int.shape[0]
        drop = self.fitted.get("_drop_idx_after_grouping")
        if drop is not None:
            to_drop = drop.copy()
            keep_cells = X_int != to_drop
            for i, categories in enumerate(self.fitted["categories_"]):
                if to_drop[i] is None:
                    to_drop[i] = len(categories)
            to_drop = to_drop.reshape(1, -1)
            X_int[X_int > to_drop] -= 1
            X_mask &= keep_cells
        offsets = np.cumsum([0] + list(self.fitted["_n_features_outs"]))
        out = np.zeros((n_samples, int(offsets[-1])), dtype=dtype if dtype is not None else self.params.get("dtype", np.float64))
        rows, cols = np.nonzero(X_mask)
        out[rows, X_int[rows, cols] + offsets[cols]] = 1
        return out


class _OrdinalEncoder(_Encoder):
    def transform(self, X: Any) -> np.ndarray:
        missing_indices = self.fitted.get("_missing_indices", {})
        X_int, X_mask = self._transform(X, self.params.get("handle_unknown", "error"), missing_indices)
        X_trans = X_int.astype(self.params.get("dtype", np.float64), copy=False)
        for i, missing_at in missing_indices.items():
            X_trans[X_int[:, i] == missing_at, i] = self.params.get("encoded_missing_value", np.nan)
        if self.params.get("handle_unknown") == "use_encoded_value":
            X_trans[~X_mask] = self.params.get("unknown_value")
        return X_trans


class _TargetEncoder(_Encoder):
    """Each category's stored encoding (the target mean for unknown ones): lookups, no arithmetic."""

    def transform(self, X: Any) -> np.ndarray:
        X_ordinal, X_known_mask = self._transform(X, "ignore", None)
        unknown = ~X_known_mask
        encodings, target_mean = self.fitted["encodings_"], self.fitted["target_mean_"]
        multiclass = self.fitted["target_type_"] == "multiclass"
        n_classes = len(self.fitted["classes_"]) if multiclass else 1
        X_out = np.empty((X_ordinal.shape[0], X_ordinal.shape[1] * n_classes), dtype=np.float64)
        for e_idx, encoding in enumerate(encodings):
            feature = e_idx // n_classes
            X_out[:, e_idx] = encoding[X_ordinal[:, feature]]
            X_out[unknown[:, feature], e_idx] = target_mean[e_idx % n_classes] if multiclass else target_mean
        return X_out


class _FunctionTransformer(_Transformer):
    def __init__(self, node: EstimatorNode) -> None:
        super().__init__(node)
        func = node.params.get("func")
        if node.params.get("validate", False) or node.params.get("kw_args") or not (func is None or isinstance(func, Function)):
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor serves a FunctionTransformer with no function or an allow-listed one only")
        self.func = None if func is None else func

    def transform(self, X: Any) -> Any:
        from .table import function_of

        if self.func is None:
            return X
        return function_of(self.func.id)(X.to_array() if _is_frame(X) else X)


class _KBinsDiscretizer(_Transformer):
    def __init__(self, node: EstimatorNode, compile_node: Any) -> None:
        from ..errors import ConfigError

        super().__init__(node)
        self.encode = node.params.get("encode", "onehot")
        if self.encode not in ("onehot", "onehot-dense", "ordinal"):
            raise ConfigError(f"{node.where}.params.encode: {str(self.encode)[:40]!r} is not one of ['onehot', 'onehot-dense', 'ordinal']")
        self.dtype = node.params.get("dtype")
        if self.dtype not in (None, np.float64, np.float32):
            raise ConfigError(f"{node.where}.params.dtype: expected None, float64 or float32")
        encoder = node.fitted.get("_encoder")
        self.encoder = None if self.encode == "ordinal" else compile_node(encoder) if isinstance(encoder, EstimatorNode) else None
        if self.encode != "ordinal" and not isinstance(self.encoder, _OneHotEncoder):
            raise ConfigError(f"{node.where}.fitted._encoder: a one-hot KBinsDiscretizer needs its OneHotEncoder")
        self.sparse_output = self.encode == "onehot"

    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_array(X)
        if self.dtype is not None:
            X = X.astype(self.dtype)
        elif X.dtype in (np.dtype("float64"), np.dtype("float32")):
            X = X.copy()
        else:
            X = X.astype(np.float64)
        if not np.isfinite(X).all():
            raise ValueError("Input X contains NaN or infinity: KBinsDiscretizer does not accept them.")
        for jj, edges in enumerate(self.fitted["bin_edges_"]):
            X[:, jj] = np.searchsorted(edges[1:-1], X[:, jj], side="right")
        if self.encoder is None:
            return X
        return self.encoder.transform(X, dtype=X.dtype)


class _PolynomialFeatures(_Transformer):
    """sklearn's dense path: each degree's block is the previous one times a column, ``np.multiply(..., out=...)``."""

    def __init__(self, node: EstimatorNode) -> None:
        from ..errors import ConfigError

        super().__init__(node)
        for name in ("interaction_only", "include_bias"):
            if not isinstance(node.params.get(name, False), bool):
                raise ConfigError(f"{node.where}.params.{name}: expected true or false")
        n, full, out = self.n_features_in_, node.fitted.get("_n_out_full"), node.fitted["n_output_features_"]
        if not isinstance(full, int) or isinstance(full, bool) or full != _n_out_full(n, node.fitted["_max_degree"], node.params.get("interaction_only", False), node.params.get("include_bias", True)) or not 0 <= out <= full:
            raise ConfigError(f"{node.where}.fitted._n_out_full: does not match the degrees and features")

    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_array(X)
        X = np.asfortranarray(X if X.dtype in _FLOAT else X.astype(np.float64))
        if not np.isfinite(X).all():
            raise ValueError("Input X contains NaN or infinity: PolynomialFeatures does not accept them.")
        n_samples, n_features = X.shape
        min_degree, max_degree = self.fitted["_min_degree"], self.fitted["_max_degree"]
        interaction_only, include_bias = self.params.get("interaction_only", False), self.params.get("include_bias", True)
        XP = np.empty((n_samples, self.fitted["_n_out_full"]), dtype=X.dtype, order=self.params.get("order", "C"))
        current_col = 1 if include_bias else 0
        if include_bias:
            XP[:, 0] = 1
        if max_degree == 0:
            return XP
        XP[:, current_col : current_col + n_features] = X
        index = list(range(current_col, current_col + n_features))
        current_col += n_features
        index.append(current_col)
        for _ in range(2, max_degree + 1):
            new_index = []
            end = index[-1]
            for feature_idx in range(n_features):
                start = index[feature_idx]
                new_index.append(current_col)
                if interaction_only:
                    start += index[feature_idx + 1] - index[feature_idx]
                next_col = current_col + end - start
                if next_col <= current_col:
                    break
                np.multiply(XP[:, start:end], X[:, feature_idx : feature_idx + 1], out=XP[:, current_col:next_col], casting="no")
                current_col = next_col
            new_index.append(current_col)
            index = new_index
        if min_degree > 1:
            n_XP, n_Xout = self.fitted["_n_out_full"], self.fitted["n_output_features_"]
            if include_bias:
                Xout = np.empty((n_samples, n_Xout), dtype=XP.dtype, order=self.params.get("order", "C"))
                Xout[:, 0] = 1
                Xout[:, 1:] = XP[:, n_XP - n_Xout + 1 :]
            else:
                Xout = XP[:, n_XP - n_Xout :].copy()
            XP = Xout
        return XP


def _n_out_full(n: int | None, degree: Any, interaction_only: bool, include_bias: bool) -> int:
    """Columns of every degree up to ``degree`` (sklearn's ``_num_combinations`` with min_degree 0)."""
    from math import comb

    if n is None or not isinstance(degree, int):
        return -1
    if interaction_only:
        combinations = sum(comb(n, d) for d in range(1, min(n, degree) + 1))
    else:
        combinations = comb(n + degree, degree) - 1
    return combinations + (1 if include_bias else 0)


class _SelectFromModel(Step):
    """``X[:, support]``, the support computed once from the stored ensemble's feature importances."""

    def __init__(self, node: EstimatorNode, compile_node: Any, importances: Any) -> None:
        from ..errors import ConfigError

        self.name = "SelectFromModel"
        estimator = node.fitted.get("estimator_")
        if not isinstance(estimator, EnsembleNode) or node.params.get("importance_getter", "auto") != "auto":
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor serves a SelectFromModel of a fitted ensemble with importance_getter='auto' only")
        max_features = node.fitted.get("max_features_", node.params.get("max_features"))
        if max_features is not None and (isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 0):
            raise ConfigError(f"{node.where}.fitted.max_features_: expected None or a non-negative integer")
        self.n_features_in_ = estimator.config.trees.n_features
        scores = np.abs(importances(estimator))
        threshold = _threshold(f"{node.where}.params.threshold", node.params.get("threshold"), scores)
        if node.params.get("max_features") is not None:
            mask = np.zeros_like(scores, dtype=bool)
            mask[np.argsort(-scores, kind="mergesort")[:max_features]] = True
        else:
            mask = np.ones_like(scores, dtype=bool)
        mask[scores < threshold] = False
        self.mask = mask
        self.allow_nan = estimator.config.estimator.startswith(("RandomForest", "ExtraTrees", "DecisionTree")) or (
            estimator.config.estimator.startswith("ExtraTree") and estimator.config.params.get("splitter") == "random"
        )

    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_array(X)
        if not self.allow_nan and X.dtype.kind == "f" and np.isnan(X).any():
            raise ValueError("Input X contains NaN.")
        if not self.mask.any():
            return np.empty(0, dtype=X.dtype).reshape((X.shape[0], 0))
        return X[:, self.mask]


def _threshold(where: str, threshold: Any, scores: np.ndarray) -> float:
    """sklearn's ``_calculate_threshold`` for an ensemble (never L1-penalized: ``None`` is "mean")."""
    from ..errors import ConfigError

    if threshold is None:
        threshold = "mean"
    if isinstance(threshold, str):
        scale, reference = 1.0, threshold
        if "*" in threshold:
            text, reference = threshold.split("*", 1)
            try:
                scale = float(text.strip())
            except ValueError:
                raise ConfigError(f"{where}: {threshold[:60]!r} is not 'scale*mean' or 'scale*median'") from None
            reference = reference.strip()
        if reference == "median":
            value = np.median(scores)
        elif reference == "mean":
            value = np.mean(scores)
        else:
            raise ConfigError(f"{where}: {threshold[:60]!r} is not 'mean', 'median' or a scaled one")
        return scale * value if "*" in threshold else value
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(f"{where}: expected a number or a string")
    return float(threshold)


class _Binarizer(_Transformer):
    def __init__(self, node: EstimatorNode) -> None:
        from ..errors import ConfigError

        super().__init__(node)
        threshold = node.params.get("threshold", 0.0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ConfigError(f"{node.where}.params.threshold: expected a number")

    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_array(X).copy()
        if X.dtype.kind not in "biuf" or (X.dtype.kind == "f" and not np.isfinite(X).all()):
            raise ValueError("Input X contains NaN, infinity or non-numeric values: Binarizer does not accept them.")
        cond = X > self.params.get("threshold", 0.0)
        not_cond = np.logical_not(cond)
        X[cond] = 1
        X[not_cond] = 0
        return X


class _Normalizer(_Transformer):
    """sklearn's dense ``normalize(X, axis=1)``: the same norm calls, then ``X /= norms[:, None]``."""

    def __init__(self, node: EstimatorNode) -> None:
        from ..errors import ConfigError

        super().__init__(node)
        if node.params.get("norm", "l2") not in ("l1", "l2", "max"):
            raise ConfigError(f"{node.where}.params.norm: expected 'l1', 'l2' or 'max'")

    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_float(X)
        if np.isnan(X).any():
            raise ValueError("Input X contains NaN.")
        norm = self.params.get("norm", "l2")
        if norm == "l1":
            norms = np.sum(np.abs(X), axis=1)
        elif norm == "l2":
            norms = np.sqrt(np.einsum("ij,ij->i", X, X))
        else:
            norms = np.max(np.abs(X), axis=1)
        norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0
        X /= norms[:, None]
        return X


class _QuantileTransformer(_Transformer):
    """sklearn's ``_transform_col`` for a uniform output: two ``np.interp`` averaged, bounds pinned."""

    BOUNDS_THRESHOLD = 1e-7

    def __init__(self, node: EstimatorNode) -> None:
        super().__init__(node)
        if node.params.get("output_distribution", "uniform") != "uniform":
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor serves output_distribution='uniform' only (the normal one needs scipy)")

    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_float(X)
        quantiles_, references = self.fitted["quantiles_"], self.fitted["references_"]
        for feature_idx in range(X.shape[1]):
            X_col, quantiles = X[:, feature_idx], quantiles_[:, feature_idx]
            with np.errstate(invalid="ignore"):
                lower_bounds_idx = X_col == quantiles[0]
                upper_bounds_idx = X_col == quantiles[-1]
            isfinite_mask = ~np.isnan(X_col)
            X_col_finite = X_col[isfinite_mask]
            X_col[isfinite_mask] = 0.5 * (np.interp(X_col_finite, quantiles, references) - np.interp(-X_col_finite, -quantiles[::-1], -references[::-1]))
            X_col[upper_bounds_idx] = 1
            X_col[lower_bounds_idx] = 0
            X[:, feature_idx] = X_col
        return X


class _UnivariateSelector(_Transformer):
    """``SelectKBest``, ``SelectPercentile`` (the highest scores), ``SelectFpr``/``Fdr``/``Fwe`` (p-values under alpha)."""

    def __init__(self, node: EstimatorNode) -> None:
        from .checks import univariate_support

        super().__init__(node)
        self.support = univariate_support(node.id, node.params, node.fitted)

    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_array(X)
        if X.dtype.kind == "f" and not np.isfinite(X).all():  # as sklearn's check_array refuses them
            what = "NaN" if np.isnan(X).any() else "infinity or a value too large for " + repr(X.dtype)
            raise ValueError(f"Input X contains {what}. {self.name} does not accept missing values encoded as NaN natively.")
        return X[:, self.support]


class _VarianceThreshold(_Transformer):
    def transform(self, X: Any) -> np.ndarray:
        self.check_input(X)
        X = _as_array(X)
        return X[:, self.fitted["variances_"] > self.params.get("threshold", 0.0)]


# --------------------------------------------------------------------------- composites
class _Ensemble(Step):
    def __init__(self, node: EnsembleNode, predictor: Any, *, fed_by_frame: bool = False) -> None:
        self.name, self.predictor = node.config.estimator, predictor
        if fed_by_frame:
            # sklearn hands it a DataFrame named as it was fitted; here an array with the same values.
            predictor.__dict__.pop("feature_names_in_", None)
        self.names = getattr(predictor, "feature_names_in_", None)
        #: What scores a JSON-style request holding exactly the fitted columns (an array, as
        #: sklearn's DataFrame of those names would be read): the predictor without its names.
        self.unnamed = predictor
        if self.names is not None:
            self.unnamed = copy.copy(predictor)
            del self.unnamed.feature_names_in_

    def methods(self) -> set[str]:
        return {m for m in ("predict", "predict_proba", "predict_log_proba", "decision_function", "score_samples") if hasattr(self.predictor, m)}


class _Pipeline(Step):
    def __init__(self, node: EstimatorNode, compile_node: Any) -> None:
        self.name = "Pipeline"
        steps = [(name, step) for name, step in node.params["steps"]]
        self.steps = [(name, None if step in (None, "passthrough") else compile_node(step)) for name, step in steps]
        for name, step in self.steps[:-1]:
            if isinstance(step, _Ensemble):
                raise UnsupportedEstimatorError(f"{node.where}: step {name!r} is an ensemble before the last step")
        live = [step for _, step in self.steps if step is not None]
        for before, after in zip(live, live[1:]):
            if before.sparse_output and not isinstance(after, _Ensemble):
                raise UnsupportedEstimatorError(f"{node.where}: the Predictor does not serve sparse output into {after.name}")
        self.final = self.steps[-1][1]
        self.sparse_output = self.final.sparse_output if self.final is not None else False

    def transform_head(self, X: Any) -> Any:
        for _, step in self.steps[:-1]:
            if step is not None:
                X = _sparse_checked(step.transform(X), step)
        return X

    def transform(self, X: Any) -> Any:
        X = self.transform_head(X)
        return X if self.final is None else self.final.transform(X)


def _sparse_checked(X: Any, step: Step) -> Any:
    """What an ensemble scoring sklearn's sparse output would refuse: NaN (sparse X may not hold it)."""
    if step.sparse_output and isinstance(X, np.ndarray) and X.dtype.kind == "f" and np.isnan(X).any():
        raise ValueError("Input X contains NaN.")
    return X


class _ColumnTransformer(Step):
    def __init__(self, node: EstimatorNode, compile_node: Any) -> None:
        self.name = "ColumnTransformer"
        self.n_features_in_, self.feature_names_in_ = _fitted_names(node)
        if node.params.get("transformer_weights"):
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor does not serve transformer_weights")
        self.sparse_output = bool(node.fitted["sparse_output_"])
        indices = node.fitted["_transformer_to_input_indices"]
        self.parts = []
        for name, transformer, columns in node.fitted["transformers_"]:
            if transformer == "drop" or _empty(columns):
                continue
            if np.isscalar(columns) or isinstance(columns, str):
                raise UnsupportedEstimatorError(f"{node.where}: {name!r} selects one column as 1-D; the Predictor needs a list")
            step = None if transformer == "passthrough" else compile_node(transformer)
            by_name = isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)
            self.parts.append((name, step, np.asarray(indices[name], dtype=np.intp), by_name))

    def transform(self, X: Any) -> np.ndarray:
        frame = _is_frame(X) and self.feature_names_in_ is not None
        if frame:
            present = set(X.columns)
            needed = {str(self.feature_names_in_[i]) for _, _, idx, _ in self.parts for i in idx}
            if needed - present:
                raise ValueError(f"columns are missing: {needed - present}")
        else:
            self.check_input(X)
        outputs = []
        for _, step, idx, by_name in self.parts:
            if frame:
                part = X.select_names(list(self.feature_names_in_[idx]))
            elif _is_frame(X):
                part = X.select(idx)
            else:
                if by_name:
                    raise ValueError("Specifying the columns using strings is only supported for dataframes.")
                part = _as_array(X)[:, idx]
            outputs.append(_as_array(part) if step is None else _as_array(step.transform(part)))
        if not outputs:
            return np.zeros((len(X), 0))
        if self.sparse_output and any(o.dtype.kind not in "biuf" for o in outputs):
            raise ValueError("For a sparse output, all columns should be a numeric or convertible to a numeric.")
        return np.hstack(outputs)


def _empty(columns: Any) -> bool:
    if isinstance(columns, np.ndarray) and columns.dtype.kind == "b":
        return not columns.any()
    if isinstance(columns, (list, tuple, np.ndarray)):
        if len(columns) and all(isinstance(c, (bool, np.bool_)) for c in columns):
            return not any(columns)
        return len(columns) == 0
    return False


class _FeatureUnion(Step):
    def __init__(self, node: EstimatorNode, compile_node: Any) -> None:
        self.name = "FeatureUnion"
        if node.params.get("transformer_weights"):
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor does not serve transformer_weights")
        self.parts = [compile_node(t) for _, t in node.params["transformer_list"] if t != "drop"]
        if any(p.sparse_output for p in self.parts):
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor does not serve sparse output in a FeatureUnion")

    def transform(self, X: Any) -> np.ndarray:
        outputs = [_as_array(p.transform(X)) for p in self.parts]
        if not outputs:
            return np.zeros((len(X), 0))
        return np.hstack(outputs)


class _TransformedTarget(Step):
    def __init__(self, node: EstimatorNode, compile_node: Any) -> None:
        self.name = "TransformedTargetRegressor"
        self.regressor = compile_node(node.fitted["regressor_"])
        self.transformer = node.fitted["transformer_"]
        self.training_dim = node.fitted["_training_dim"]
        if not isinstance(self.transformer, EstimatorNode):
            raise UnsupportedEstimatorError(f"{node.where}: unexpected transformer_")
        if self.transformer.id == "StandardScaler":
            self.inverse = self._inverse_standard
        elif self.transformer.id == "FunctionTransformer" and not self.transformer.params.get("inverse_kw_args"):
            inverse = self.transformer.params.get("inverse_func")
            if inverse is not None and not isinstance(inverse, Function):
                raise UnsupportedEstimatorError(f"{node.where}: inverse_func is not an allow-listed function")
            self.inverse = self._inverse_function
        else:
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor does not serve a {self.transformer.id} target transformer")

    def _inverse_standard(self, y: np.ndarray) -> np.ndarray:
        y = _as_float(y)
        params, fitted = self.transformer.params, self.transformer.fitted
        if params.get("with_std", True):
            y *= fitted["scale_"].astype(y.dtype)
        if params.get("with_mean", True):
            y += fitted["mean_"].astype(y.dtype)
        return y

    def _inverse_function(self, y: np.ndarray) -> np.ndarray:
        from .table import function_of

        inverse = self.transformer.params.get("inverse_func")
        y = _as_array(y, dtype=None)
        if self.transformer.params.get("validate", False):
            y = _as_float(y) if y.dtype.kind not in "f" else y
        return y if inverse is None else function_of(inverse.id)(y)

    def predict(self, X: Any) -> np.ndarray:
        prediction = _call(self.regressor, "predict", X)
        out = self.inverse(prediction.reshape(-1, 1) if prediction.ndim == 1 else prediction)
        if self.training_dim == 1 and out.ndim == 2 and out.shape[1] == 1:
            out = out.squeeze(axis=1)
        return out


def _first_step(step: Step) -> Step:
    """The step that reads the pipeline's input (a Pipeline's first step that is not 'passthrough')."""
    while isinstance(step, _Pipeline):
        live = [s for _, s in step.steps if s is not None]
        if not live:
            break
        step = live[0]
    return step


def _call(step: Step, method: str, X: Any) -> Any:
    if isinstance(step, _Ensemble):
        if isinstance(X, _RequestTable) and step.names is not None and X.names == list(step.names):
            return getattr(step.unnamed, method)(X.original())
        return getattr(step.predictor, method)(X.original() if isinstance(X, _Table) else X)
    if isinstance(step, _Pipeline):
        head = step.transform_head(X)
        if step.final is None:
            raise AttributeError(f"the pipeline's last step is 'passthrough': no {method}")
        return _call(step.final, method, head)
    if isinstance(step, _TransformedTarget) and method == "predict":
        return step.predict(X)
    raise AttributeError(f"{step.name} has no {method}")


def _importances(reader: Any, node: EnsembleNode) -> np.ndarray:
    """The stored ensemble's ``feature_importances_``, from every node column (validated as a load validates)."""
    from ..validate import check_trees, validate_tree_ptr
    from .importances import feature_importances

    step = reader.for_model(node.group, node.config)
    try:
        layout = step.config.trees
        columns = step.read_nodes(0, layout.n_trees)
        validate_tree_ptr(columns.tree_ptr, n_trees=layout.n_trees, n_nodes=layout.n_nodes)
        check_trees(columns, layout)
    finally:
        step.close()
    return feature_importances(node.config.estimator, columns, layout.n_features)


_SIMPLE = {
    "StandardScaler": _StandardScaler,
    "MinMaxScaler": _MinMaxScaler,
    "MaxAbsScaler": _MaxAbsScaler,
    "RobustScaler": _RobustScaler,
    "MissingIndicator": _MissingIndicator,
    "OneHotEncoder": _OneHotEncoder,
    "OrdinalEncoder": _OrdinalEncoder,
    "FunctionTransformer": _FunctionTransformer,
    "VarianceThreshold": _VarianceThreshold,
    "SelectKBest": _UnivariateSelector,
    "SelectPercentile": _UnivariateSelector,
    "SelectFpr": _UnivariateSelector,
    "SelectFdr": _UnivariateSelector,
    "SelectFwe": _UnivariateSelector,
    "GenericUnivariateSelect": _UnivariateSelector,
    "PolynomialFeatures": _PolynomialFeatures,
    "Binarizer": _Binarizer,
    "TargetEncoder": _TargetEncoder,
    "Normalizer": _Normalizer,
    "QuantileTransformer": _QuantileTransformer,
}
_COMPOSITE = {
    "Pipeline": _Pipeline,
    "ColumnTransformer": _ColumnTransformer,
    "FeatureUnion": _FeatureUnion,
    "TransformedTargetRegressor": _TransformedTarget,
    "SimpleImputer": _SimpleImputer,
    "KBinsDiscretizer": _KBinsDiscretizer,
}


def compile_record(record: PipelineRecord, ensemble: Any, importances: Any = None) -> Step:
    """Steps for every node of ``record``; ``ensemble(node)`` builds the Predictor of an ensemble node,
    ``importances(node)`` its feature importances (for ``SelectFromModel``)."""
    built: dict[str, Step] = {}
    feeders, framed = _ensemble_feeders(record.root)

    def compile_node(node: Any) -> Step:
        if isinstance(node, EnsembleNode):
            if node.group not in built:
                built[node.group] = _Ensemble(node, ensemble(node), fed_by_frame=node.group in framed)
            return built[node.group]
        if isinstance(node, SkopsNode):
            raise UnsupportedEstimatorError(
                f"{node.where}: {node.qualname} is stored with skops, which needs scikit-learn: the Predictor "
                "refuses a pipeline with a skops step (load it with treeshard.load)"
            )
        if not isinstance(node, EstimatorNode):
            raise UnsupportedEstimatorError(f"the Predictor cannot serve {node!r}")
        output = node.fitted.get("_sklearn_output_config") or {}
        allowed = (None, "default", "pandas") if id(node) in feeders else (None, "default")
        if any(value not in allowed for value in output.values()):
            raise UnsupportedEstimatorError(f"{node.where}: the Predictor does not serve set_output containers ({output})")
        if node.id in _SIMPLE:
            return _SIMPLE[node.id](node)
        if node.id in _COMPOSITE:
            return _COMPOSITE[node.id](node, compile_node)
        if node.id == "SelectFromModel" and node.is_fitted and importances is not None:
            return _SelectFromModel(node, compile_node, importances)
        what = "an unfitted template" if node.id not in KINDS else f"a {node.id}"
        raise UnsupportedEstimatorError(f"{node.where}: the Predictor cannot serve {what} (no numpy transform); load it with treeshard.load")

    return compile_node(record.root)


def _ensemble_feeders(root: Any) -> tuple[set[int], set[str]]:
    """``(ids of the nodes that may have set_output pandas, groups of the ensembles fed a DataFrame)``.

    A feeder is a Pipeline's last live step before its final ensemble; it and
    every node inside it may output pandas (a composite stacks its parts'
    values, the same in an array; a step reading a part's column names from
    an array raises, as it would have no names). The ensemble is fed a
    DataFrame when the feeder (for a Pipeline, its last live step) outputs pandas.
    """
    feeders: set[int] = set()
    framed: set[str] = set()

    def live_steps(node: EstimatorNode) -> list[Any]:
        return [step for _, step in node.params.get("steps", ()) if step not in (None, "passthrough")]

    def children(value: Any) -> list[Any]:
        if isinstance(value, EstimatorNode):
            return [*value.params.values(), *value.fitted.values()]
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, dict):
            return list(value.values())
        return []

    def inside(value: Any) -> None:
        if isinstance(value, EstimatorNode):
            feeders.add(id(value))
        for item in children(value):
            inside(item)

    def frames(node: Any) -> bool:
        if not isinstance(node, EstimatorNode):
            return False
        if node.id == "Pipeline":
            inner = live_steps(node)
            return bool(inner) and frames(inner[-1])
        return (node.fitted.get("_sklearn_output_config") or {}).get("transform") == "pandas"

    def visit(value: Any) -> None:
        if isinstance(value, EstimatorNode) and value.id == "Pipeline":
            steps = live_steps(value)
            if len(steps) >= 2 and isinstance(steps[-1], EnsembleNode):
                inside(steps[-2])
                if frames(steps[-2]):
                    framed.add(steps[-1].group)
        for item in children(value):
            visit(item)

    visit(root)
    return feeders, framed


class _FinalMethod:
    """A method a pipeline has when its final ensemble has it (sklearn's ``available_if``):
    ``hasattr(predictor, "score_samples")`` is true for an IsolationForest pipeline only."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        if not instance._has(self.name):
            raise AttributeError(f"this {instance.estimator}'s final step has no {self.name}")
        return lambda X: instance._method(self.name, X)


def _input_names(step: Step | None) -> np.ndarray | None:
    """The column names the pipeline was fitted on (sklearn's ``Pipeline.feature_names_in_``: its first step's)."""
    while isinstance(step, (_Pipeline, _TransformedTarget)):
        if isinstance(step, _TransformedTarget):
            step = step.regressor
        else:
            live = [s for _, s in step.steps if s is not None]
            step = live[0] if live else None
    if isinstance(step, _Ensemble):
        return getattr(step.predictor, "feature_names_in_", None)
    return None if step is None else step.feature_names_in_


def _kind_of_dtype(dtype: np.dtype) -> str:
    return {"O": "object", "U": "object", "S": "object", "i": "int", "u": "int", "f": "float"}.get(dtype.kind, "any")


def input_kinds(step: Step | None, n: int) -> list[str]:
    """How each of the ``n`` columns fed to ``step`` is read (:mod:`treeshard.pipeline.request`):
    from the fitted state of the first step that reads it; ``"unused"`` when no step does."""
    if step is None or (isinstance(step, _FunctionTransformer) and step.func is None):
        return ["any"] * n
    if isinstance(step, _Pipeline):
        live = [s for _, s in step.steps if s is not None]
        return input_kinds(live[0] if live else None, n)
    if isinstance(step, _TransformedTarget):
        return input_kinds(step.regressor, n)
    if isinstance(step, _Encoder):
        return [_kind_of_dtype(c.dtype) for c in step.fitted["categories_"]]
    if isinstance(step, _SimpleImputer):
        return [_kind_of_dtype(step.fitted["_fit_dtype"])] * n
    if isinstance(step, _MissingIndicator):
        return ["any"] * n
    if isinstance(step, _ColumnTransformer):
        kinds = ["unused"] * n
        for _, part, idx, _ in step.parts:
            for i, kind in zip(idx.tolist(), _widths(input_kinds(part, len(idx)), len(idx)), strict=True):
                if 0 <= i < n and kinds[i] in ("unused", "any"):
                    kinds[i] = kind
        return kinds
    if isinstance(step, _Ensemble):  # a histogram booster's own categorical columns: as its categories
        kinds = ["float"] * n
        for feature, kind in getattr(step.predictor, "_category_kinds", {}).items():
            if feature < n:
                kinds[feature] = kind
        return kinds
    if isinstance(step, _FeatureUnion):
        kinds = ["unused"] * n
        for part in step.parts:
            kinds = [k if k not in ("unused", "any") else other for k, other in zip(kinds, _widths(input_kinds(part, n), n), strict=True)]
        return kinds
    return ["float"] * n


def _widths(kinds: list[str], n: int) -> list[str]:
    """``kinds`` when there is one per column; else (a step whose width the Predictor refuses when
    it is called, as sklearn would) every column read as pandas would."""
    return kinds if len(kinds) == n else ["any"] * n


@served_as_predictor
class PipelinePredictor:
    """A pipeline served with numpy only: what ``treeshard.Predictor(store)`` is for a pipeline store.

    Methods follow the pipeline's last step: ``predict`` (and ``predict_proba``,
    ``predict_log_proba``, ``decision_function``, ``score_samples`` when the
    final ensemble has them: ``score_samples`` for an ``IsolationForest``) or
    ``transform`` for a pipeline of transformers. Every output equals the
    sklearn pipeline's, bit for bit.

    ``X`` is a DataFrame, an array, or, for a pipeline fitted on named columns,
    a JSON-style request without pandas: a mapping of column name -> list (or
    1-D array) of values, or a list of records (mappings). Each column is read
    as the fitted step that reads it expects (see ``input_kinds_``): float64
    for numeric steps (``None`` is NaN), the values as objects for encoders of
    string categories, int64 for integer categories. Columns no step reads may
    be left out; unknown ones are refused (:class:`~treeshard.errors.RequestError`).

    >>> import os, tempfile, numpy as np, pandas as pd, treeshard
    >>> from sklearn.compose import make_column_transformer
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import OneHotEncoder
    >>> frame = pd.DataFrame({"x": [0.5, 1.5, 2.5, 3.5], "city": ["a", "b", "a", "b"]})
    >>> model = make_pipeline(make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"),
    ...                       RandomForestClassifier(n_estimators=3, random_state=0)).fit(frame, [0, 1, 0, 1])
    >>> path = os.path.join(tempfile.mkdtemp(), "pipe.zip")
    >>> treeshard.save(model, path)
    >>> predictor = treeshard.Predictor(path)
    >>> predictor.predict({"x": [0.5, None], "city": ["b", "a"]}).tolist()
    [1, 0]
    >>> predictor.predict([{"x": 0.5, "city": "b"}]).tolist()
    [1]
    """

    def __init__(self, record: PipelineRecord, ensemble: Any, reader: Any = None) -> None:
        self.record = record
        self.estimator = record.root.id
        self._root = compile_record(record, ensemble, None if reader is None else lambda node: _importances(reader, node))
        self.n_features_in_, names = _fitted_names(record.root)
        if names is not None:
            self.feature_names_in_ = names
        final = self._final_estimator()
        if isinstance(final, _Ensemble) and hasattr(final.predictor, "classes_"):
            self.classes_ = final.predictor.classes_
        names = _input_names(self._root)
        if names is not None:
            kinds = _widths(input_kinds(self._root, len(names)), len(names))
            self.input_kinds_ = {str(name): kind for name, kind in zip(list(names), kinds, strict=True)}

    def _final_estimator(self) -> Step | None:
        step: Step | None = self._root
        while isinstance(step, _Pipeline):
            step = step.final
        return step

    def _check(self, X: Any) -> Any:
        if isinstance(X, list) and not X and hasattr(self, "input_kinds_"):  # "[]": a JSON list of no records
            from ..errors import RequestError

            raise RequestError("the request has no rows")
        if is_request(X):
            kinds = getattr(self, "input_kinds_", None)
            if kinds is None:
                from ..errors import RequestError

                raise RequestError("this pipeline was fitted without column names (no feature_names_in_): pass a 2-D array, not columns or records")
            columns, n_rows = request_columns(X, list(kinds), {name for name, kind in kinds.items() if kind != "unused"})
            return _RequestTable(columns, n_rows, kinds)
        if isinstance(X, list):
            X = np.asarray(X)
        if _is_dataframe(X):
            X = _Table(X)
        elif not hasattr(X, "shape"):  # a scalar, None, a string, a tuple
            X = np.asarray(X)
        if isinstance(X, np.ndarray):
            _check_dense(X, self._root)
        return X

    def predict(self, X: Any) -> np.ndarray:
        return _call(self._root, "predict", self._check(X))

    def _has(self, method: str) -> bool:
        final = self._final_estimator()
        return isinstance(final, _Ensemble) and hasattr(final.predictor, method)

    def _method(self, method: str, X: Any) -> np.ndarray:
        return _call(self._root, method, self._check(X))

    predict_proba = _FinalMethod()
    predict_log_proba = _FinalMethod()
    decision_function = _FinalMethod()
    score_samples = _FinalMethod()

    def transform(self, X: Any) -> np.ndarray:
        if self._root.sparse_output:
            raise UnsupportedEstimatorError("this pipeline's transform returns a scipy sparse matrix: load it with treeshard.load")
        return self._root.transform(self._check(X))

    def __repr__(self) -> str:
        return f"<treeshard.Predictor {self.estimator} pipeline of {len(self.record.ensembles)} ensemble(s)>"
