"""The :class:`~treeshard.Predictor` for histogram gradient boosting, without sklearn.

Reproduces ``HistGradientBoosting*`` predictions bit for bit
(``docs/FORMAT.md``, section 6.2):

- ``X`` is converted to float64 (sklearn's ``X_DTYPE``, not float32), NaN and
  infinity allowed; with a categorical preprocessor, each categorical column
  is encoded as its category's index (unknown categories and missing values
  become NaN) and moved first, as sklearn's ``ColumnTransformer`` does.
- Each row walks each tree in the compiled kernel
  (:func:`treeshard._kernels.hist_sum`, without the GIL, row blocks over
  ``n_jobs`` threads): numerical splits send ``x <= num_threshold`` left,
  NaN goes by ``missing_go_to_left``, categorical splits test the raw
  bitset, then the feature's known categories (unknown ones and negative
  values go where NaN goes), with the category ``(uint8) x`` as sklearn's
  Cython casts it. :meth:`HistPredictor._raw_numpy` is the same walk in
  numpy (every tree at once, a level at a time), the reference it is tested
  against.
- Raw predictions start from ``_baseline_prediction`` (added to zeros, as
  sklearn does) and add each iteration's tree values in iteration order,
  as sklearn's loop.
- The inverse link is sklearn's: identity, ``np.exp`` for poisson and gamma,
  scipy's ``expit`` (through :mod:`math`, as the forest predictor) for
  binary, and sklearn's ``softmax`` on the F-ordered raw predictions for
  multiclass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..adapters.base import decode_param, decode_value
from ..adapters.checks import check_labels
from ..adapters.families import ESTIMATORS
from ..adapters.hist_gradient_boosting import check_bin_mapper, check_categories_match, check_loss, check_preprocessor, loss_class, remapped
from ..errors import ArrayError, ConfigError
from ..hist_columns import (
    BITSET_WORDS,
    HistColumns,
    check_bin_thresholds,
    known_category_bitsets,
    validate_hist_columns,
)
from .inputs import check_feature_names, request_columns
from .links import expit
from .registry import PredictorMethod, served_as_predictor
from .traversal import Traversal

#: Rows walked through every tree at once by the numpy reference (bounds its (rows, trees) arrays).
HIST_BLOCK_PAIRS = 1 << 20
_LOG_LINK = ("HalfPoissonLoss", "HalfGammaLoss")


@served_as_predictor
class HistPredictor(Traversal):
    """What ``treeshard.Predictor(store)`` makes of a ``HistGradientBoosting*`` store.

    The same interface as :class:`~treeshard.Predictor` (``predict``, and
    ``predict_proba`` and ``decision_function`` for classifiers; ``n_jobs``,
    ``n_features_in_``, ``feature_names_in_``, ``classes_``), plus ``n_iter_``.
    Not a subclass of it: :mod:`.core` imports this module, never the other
    way round; both share :class:`~.traversal.Traversal` (threads).
    """

    n_jobs: int | None = -1

    @classmethod
    def from_parts(cls, config: Any, cols: HistColumns, arrays: dict[str, np.ndarray], *, n_jobs: int | None = -1) -> HistPredictor:
        """The predictor of a store's config, node columns (all trees) and fitted arrays, already
        read (what a model loaded by ``treeshard.load`` scores with; see :mod:`treeshard.dispatch`).
        Everything is checked again, as when read from a store."""
        self = cls.__new__(cls)
        self.n_jobs = n_jobs
        self._setup_hist(config, lambda: cols, arrays.get)
        return self

    def _setup_hist(self, config: Any, read_columns: Any, read_extra: Any) -> None:
        """Set up from ``config``, ``read_columns()`` (the node columns of every tree) and
        ``read_extra(name)`` (a fitted array, or None)."""
        self.config = config
        self.estimator = config.estimator
        self._layout = layout = config.trees
        self._is_classifier = ESTIMATORS[config.estimator].is_classifier
        fitted = config.fitted

        def get(name: str) -> Any:
            if name not in fitted:
                raise ConfigError(f"config.fitted: missing required key {name!r}")
            return decode_value(f"config.fitted.{name}", fitted[name])

        n_features = layout.n_features
        n_in = get("n_features_in_")
        if isinstance(n_in, bool) or not isinstance(n_in, (int, np.integer)) or n_in != n_features or get("_n_features") != n_features:
            raise ConfigError(f"config.fitted.n_features_in_: {n_in!r}, but trees have {n_features} features")
        self.n_features_in_ = int(n_in)
        if "feature_names_in_" in fitted:
            names = get("feature_names_in_")
            if not (isinstance(names, np.ndarray) and names.shape == (n_features,) and all(isinstance(v, str) for v in names.tolist())):
                raise ConfigError(f"config.fitted.feature_names_in_: expected {n_features} strings")
            self.feature_names_in_ = names.astype(object)
        k = get("n_trees_per_iteration_")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or layout.n_trees % k:
            raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k!r} does not divide {layout.n_trees} trees")
        self._k = k
        self.n_estimators = self.n_iter_ = layout.n_trees // k
        self.n_outputs_ = 1
        loss = check_loss(fitted.get("_loss"), quantile=_param_float(config, "quantile"))
        self._loss_name = loss["name"]
        if self._is_classifier:
            classes = get("classes_")
            n_classes = len(classes) if isinstance(classes, np.ndarray) and classes.ndim == 1 else 0
            check_labels("config.fitted.classes_", classes, max(n_classes, 2))
            if k != (1 if n_classes == 2 else n_classes):
                raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k} does not fit {n_classes} classes")
            self.classes_ = classes
        elif k != 1:
            raise ConfigError(f"config.fitted.n_trees_per_iteration_: {k}, a regressor has 1")
        loss_param = decode_param("config.params.loss", config.params.get("loss"))
        expected_loss = loss_class(config.estimator, loss_param if isinstance(loss_param, str) else "", k)
        if self._loss_name != expected_loss:
            raise ConfigError(f"config.fitted._loss: {self._loss_name!r}, but {config.estimator}(loss={loss_param!r}) makes {expected_loss}")
        baseline = get("_baseline_prediction")
        if not (isinstance(baseline, np.ndarray) and baseline.dtype == np.float64 and baseline.shape == (1, k)):
            raise ConfigError(f"config.fitted._baseline_prediction: expected a float64 array of shape (1, {k})")
        self._baseline = baseline
        is_categorical = get("is_categorical_")
        if is_categorical is not None and not (isinstance(is_categorical, np.ndarray) and is_categorical.dtype == bool and is_categorical.shape == (n_features,)):
            raise ConfigError(f"config.fitted.is_categorical_: expected null or a bool array of {n_features}")
        max_bins = _param_int(config, "max_bins", default=255)
        bin_mapper = check_bin_mapper(fitted.get("_bin_mapper"), max_bins=max_bins, n_features=n_features)
        preprocessor = check_preprocessor(fitted.get("_preprocessor"), is_categorical, max_bins=max_bins)
        binned_categorical = remapped(is_categorical, preprocessor is not None, n_features)
        if not np.array_equal(bin_mapper["is_categorical_"].astype(bool), binned_categorical):
            raise ConfigError("config.fitted._bin_mapper.is_categorical_: does not match is_categorical_ and the preprocessor")
        thresholds, ptr = read_extra("bin_thresholds"), read_extra("bin_thresholds_ptr")
        if thresholds is None or ptr is None:
            raise ArrayError(f"fitted/{'bin_thresholds' if thresholds is None else 'bin_thresholds_ptr'}: missing")
        per_feature = check_bin_thresholds(thresholds, ptr, n_features=n_features, is_categorical=binned_categorical, max_bins=max_bins)
        self._preprocessor = None
        #: How a JSON-style request's column is read (a pipeline's input kinds): categories as stored.
        self._category_kinds: dict[int, str] = {}
        check_categories_match(preprocessor, per_feature, binned_categorical)
        if preprocessor is not None:
            categorical = np.flatnonzero(is_categorical)
            lookups = [_category_lookup(entry["values"]) for entry in preprocessor["categories"]]
            self._preprocessor = (categorical, np.flatnonzero(~is_categorical), lookups)
            kinds = ("object" if entry["values"].dtype == object else "float" for entry in preprocessor["categories"])
            self._category_kinds = dict(zip(categorical.tolist(), kinds, strict=True))
        cols = read_columns()
        if cols.n_trees != layout.n_trees:
            raise ArrayError(f"nodes/tree_ptr: {cols.n_trees} trees, expected {layout.n_trees}")
        depth = validate_hist_columns(cols, n_features=n_features, is_categorical=binned_categorical)
        known, f_idx_map = known_category_bitsets(per_feature, binned_categorical, n_features)
        self._setup_walk(cols, depth, known, f_idx_map)

    def _setup_walk(self, cols: HistColumns, depth: int, known: np.ndarray, f_idx_map: np.ndarray) -> None:
        """Global node arrays for the level-by-level walk (leaves point at themselves)."""
        counts = np.diff(cols.tree_ptr)
        starts = np.repeat(cols.tree_ptr[:-1], counts)
        nodes = cols.nodes
        split = nodes["is_leaf"] == 0
        ids = np.arange(cols.n_nodes, dtype=np.int64)
        self._roots = cols.tree_ptr[:-1].astype(np.intp)
        self._left = np.where(split, starts + nodes["left"], ids).astype(np.intp)
        self._right = np.where(split, starts + nodes["right"], ids).astype(np.intp)
        self._feature = np.where(split, nodes["feature_idx"], 0).astype(np.intp)
        self._threshold = nodes["num_threshold"].copy()
        self._missing_left = nodes["missing_go_to_left"].astype(bool)
        self._value = nodes["value"].copy()
        self._categorical = split & (nodes["is_categorical"] == 1)
        self._has_categorical = bool(self._categorical.any())
        bitset_rows = np.repeat(cols.bitset_ptr[:-1], counts) + nodes["bitset_idx"]
        self._raw_row = np.where(self._categorical, bitset_rows, 0).astype(np.intp)
        self._raw_bitsets = np.ascontiguousarray(cols.raw_left_cat_bitsets, dtype=np.uint32).reshape(-1, BITSET_WORDS)
        self._known_row = f_idx_map.astype(np.intp)[self._feature]
        self._known_bitsets = known
        self._depth = depth
        flags = np.where(split, 0, 1) | np.where(self._missing_left, 2, 0) | np.where(self._categorical, 4, 0)
        self._kernel_nodes = (
            self._roots.astype(np.int64),
            self._left.astype(np.int64),
            self._right.astype(np.int64),
            self._feature.astype(np.int64),
            self._threshold,
            flags.astype(np.uint8),
            self._raw_row.astype(np.int64),
            self._raw_bitsets if len(self._raw_bitsets) else np.zeros((1, BITSET_WORDS), np.uint32),
            self._known_row.astype(np.int64),
            known if len(known) else np.zeros((1, BITSET_WORDS), np.uint32),
            self._value,
        )

    # ------------------------------------------------------------------ input
    def _validate_hist(self, X: Any) -> np.ndarray:
        """``X`` as sklearn's ``_preprocess_X`` makes it: float64, categorical columns encoded and first."""
        name = self.estimator
        if hasattr(X, "tocsr") or hasattr(X, "sparse"):
            raise TypeError("Sparse data was passed for X, but dense data is required. Use '.toarray()' to convert to a dense numpy array.")
        names = getattr(self, "feature_names_in_", None)
        kinds = None if type(X) is np.ndarray else [self._category_kinds.get(i, "float") for i in range(self.n_features_in_)]
        request = None if kinds is None else request_columns(X, names, kinds)
        if request is None:
            check_feature_names(X, names, self.estimator)
        elif self._preprocessor is None:
            X = np.column_stack(request)
        if self._preprocessor is None:
            try:
                X64 = np.asarray(X, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"could not convert X to float64: {exc}") from None
            _check_shape(X64, name)
            if X64.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X64.shape[1]} features, but {name} is expecting {self.n_features_in_} features as input.")
            return np.ascontiguousarray(X64)
        categorical, numerical, lookups = self._preprocessor
        columns = request if request is not None else _columns(X)
        if len(columns) != self.n_features_in_:
            raise ValueError(f"X has {len(columns)} features, but ColumnTransformer is expecting {self.n_features_in_} features as input.")
        n_rows = len(columns[0]) if columns else 0
        out = np.empty((n_rows, self.n_features_in_), dtype=np.float64)
        for j, f in enumerate(categorical.tolist()):
            out[:, j] = lookups[j](columns[f])
        for j, f in enumerate(numerical.tolist(), start=len(categorical)):
            try:
                out[:, j] = np.asarray(columns[f], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"could not convert column {f} of X to float64: {exc}") from None
        _check_shape(out, name)
        return out

    # ------------------------------------------------------------------ traversal
    def _tree_values(self, X64: np.ndarray) -> np.ndarray:
        """Leaf value of every row in every tree, (n_rows, n_trees)."""
        n, t = X64.shape[0], len(self._roots)
        nodes = np.empty((n, t), dtype=np.intp)
        nodes[...] = self._roots
        rows = np.arange(n, dtype=np.intp)[:, None]
        for _ in range(self._depth):
            x = X64[rows, self._feature[nodes]]
            go_left = x <= self._threshold[nodes]
            nan = np.isnan(x)
            if nan.any():
                go_left[nan] = self._missing_left[nodes[nan]]
            if self._has_categorical:
                categorical = self._categorical[nodes] & ~nan
                if categorical.any():
                    go_left[categorical] = self._categorical_left(x[categorical], nodes[categorical])
            nodes = np.where(go_left, self._left[nodes], self._right[nodes])
        return self._value[nodes]

    def _categorical_left(self, x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """sklearn's categorical test: raw bitset, then known categories, else where NaN goes."""
        missing_left = self._missing_left[nodes]
        negative = x < 0
        # sklearn casts the double to uint8 in C: truncation, then the low byte.
        category = np.where(negative, 0, np.trunc(np.where(negative, 0, x))).astype(np.int64) & 0xFF
        word, bit = category >> 5, (category & 31).astype(np.uint32)
        in_raw = (self._raw_bitsets[self._raw_row[nodes], word] >> bit) & 1
        in_known = (self._known_bitsets[self._known_row[nodes], word] >> bit) & 1 if len(self._known_bitsets) else np.zeros_like(in_raw)
        return np.where(negative, missing_left, np.where(in_raw == 1, True, np.where(in_known == 1, False, missing_left)))

    def _raw(self, X: Any) -> np.ndarray:
        """Raw predictions (n_rows, K): the compiled walk (:func:`treeshard._kernels.hist_sum`),
        row blocks spread over ``n_jobs`` threads."""
        from .._kernels import hist_sum

        X64 = self._validate_hist(X)
        raw = np.zeros((X64.shape[0], self._k), dtype=np.float64)
        raw += self._baseline
        self._parallel(lambda start, stop: hist_sum(X64, *self._kernel_nodes, self._k, raw, start, stop), X64.shape[0])
        return raw

    def _raw_numpy(self, X: Any) -> np.ndarray:
        """:meth:`_raw` in numpy (every tree walked at once a level at a time): the reference the
        compiled walk is tested against."""
        X64 = self._validate_hist(X)
        n, k = X64.shape[0], self._k
        raw = np.zeros((n, k), dtype=np.float64, order="F")
        raw += self._baseline
        block = max(1, HIST_BLOCK_PAIRS // max(1, len(self._roots)))
        for start in range(0, n, block):
            values = self._tree_values(X64[start : start + block])
            m = values.shape[0]
            # (rows, K, start + iterations): a sequential sum per row and class, as sklearn's loop.
            terms = np.empty((m, k, self.n_iter_ + 1), dtype=np.float64)
            terms[:, :, 0] = raw[start : start + m]
            terms[:, :, 1:] = values.reshape(m, self.n_iter_, k).transpose(0, 2, 1)
            raw[start : start + m] = np.cumsum(terms, axis=2)[:, :, -1]
        return raw

    # ------------------------------------------------------------------ public methods
    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels or values, as the estimator's ``predict``."""
        raw = self._raw(X)
        if self._is_classifier:
            encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
            return self.classes_[encoded]
        values = raw.ravel()
        return np.exp(values) if self._loss_name in _LOG_LINK else values

    @PredictorMethod("_is_classifier")
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, as the estimator's ``predict_proba`` (classifiers only)."""
        raw = self._raw(X)
        if raw.shape[1] == 1:
            proba = np.empty((raw.shape[0], 2), dtype=np.float64)
            proba[:, 1] = expit(raw.ravel())
            proba[:, 0] = 1 - proba[:, 1]
            return proba
        return _softmax_f(np.asfortranarray(raw))

    @PredictorMethod("_is_classifier")
    def decision_function(self, X: Any) -> np.ndarray:
        """Raw scores, as ``decision_function``: (n,) for binary, (n, K) otherwise (classifiers only)."""
        raw = self._raw(X)
        return raw.ravel() if raw.shape[1] == 1 else raw

    def __repr__(self) -> str:
        return f"<treeshard.Predictor {self.estimator} n_iter_={self.n_iter_} n_features={self.n_features_in_}>"


def _softmax_f(raw: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax, operation for operation, on the F-ordered raw predictions."""
    X = np.asarray(raw, order="F").copy(order="K")
    X -= np.max(X, axis=1).reshape(-1, 1)
    np.exp(X, out=X)
    X /= np.sum(X, axis=1).reshape(-1, 1)
    return X


def _check_shape(X: np.ndarray, name: str) -> None:
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead. Reshape your data either using array.reshape(-1, 1) "
            "if your data has a single feature or array.reshape(1, -1) if it contains a single sample."
        )
    if X.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required by {name}.")


def _columns(X: Any) -> list[np.ndarray]:
    """The columns of a DataFrame (pandas: each as its own numpy array) or of an array."""
    if hasattr(X, "iloc") and hasattr(X, "columns"):
        return [X.iloc[:, j].to_numpy() for j in range(X.shape[1])]
    array = np.asarray(X, dtype=object) if not isinstance(X, np.ndarray) else X
    if array.ndim != 2:
        _check_shape(array, "ColumnTransformer")
    return [array[:, j] for j in range(array.shape[1])]


def _category_lookup(categories: np.ndarray) -> Any:
    """A column -> category index (float64; unknown and missing: NaN), as sklearn's ``OrdinalEncoder``."""
    index = {value: float(i) for i, value in enumerate(categories.tolist())}
    numeric = categories.dtype != object

    def lookup(column: np.ndarray) -> np.ndarray:
        if numeric and column.dtype.kind in "iufb":
            values = column.astype(np.float64)
            sorted_categories = categories.astype(np.float64)
            position = np.searchsorted(sorted_categories, values)
            position = np.minimum(position, len(sorted_categories) - 1) if len(sorted_categories) else position
            found = (sorted_categories[position] == values) if len(sorted_categories) else np.zeros(len(values), dtype=bool)
            return np.where(found, position.astype(np.float64), np.nan)
        out = np.empty(len(column), dtype=np.float64)
        for i, value in enumerate(column.tolist()):
            try:
                out[i] = index.get(value, np.nan)
            except TypeError:  # unhashable
                out[i] = np.nan
        return out

    return lookup


def _param_int(config: Any, name: str, *, default: int) -> int:
    value = decode_param(f"config.params.{name}", config.params.get(name, default))
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 2 <= value <= 255:
        raise ConfigError(f"config.params.{name}: expected an integer in [2, 255], got {value!r}")
    return int(value)


def _param_float(config: Any, name: str) -> float | None:
    value = decode_param(f"config.params.{name}", config.params.get(name))
    return float(value) if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) else None
