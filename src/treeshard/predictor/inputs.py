"""Input conversion: ``X`` checked and converted as sklearn's ``validate_data`` does.

Dense ``X`` becomes C-contiguous float32. Sparse ``X`` (any scipy.sparse matrix
or array) is converted by the same scipy calls as sklearn's
(``asformat("csr")``, then ``astype(float32)``, which sums duplicate entries in
float32) and densified a block of rows at a time (at most
``SPARSE_BLOCK_BYTES``), holding what sklearn's CSR traversal reads. scipy is
imported only when ``X`` is a scipy object. Feature names of a DataFrame are
checked with sklearn's warnings and messages.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

#: Sparse X is densified one block of rows at a time; a dense block takes at most this many bytes (or one row).
SPARSE_BLOCK_BYTES = 1 << 24


def as_float32(X: Any, *, name: str, n_features_in: int, allow_nan: bool, finite: bool = True) -> Any:
    """``X`` as a C-contiguous float32 array, checked like sklearn's ``validate_data``;
    ``name`` is the estimator sklearn's messages name; ``finite=False``: dense ``X`` may hold
    NaN and infinity (sklearn's ``ensure_all_finite=False``, IsolationForest).

    Sparse ``X`` (scipy, or a DataFrame of sparse columns) comes back as a
    :class:`SparseRows`, which :func:`blocks` densifies a block of rows at a time.
    """
    if type(X) is np.ndarray and X.ndim == 2 and X.shape[0] and X.shape[1] and X.dtype.kind in "fiu":
        # The common case (a real 2-D array), without the general checks' microseconds: one row's latency.
        X32 = np.ascontiguousarray(X, dtype=np.float32)
    else:
        sparse, from_frame = as_sparse(X)
        if sparse is not None:  # sklearn refuses NaN in sparse X, unless it came from a DataFrame
            return sparse_rows(sparse, name=name, n_features_in=n_features_in, allow_nan=allow_nan and from_frame)
        X32 = _dense_float32(X, name=name)
    if finite:
        check_finite(X32.reshape(-1), name, allow_nan)
    if X32.shape[1] != n_features_in:
        raise ValueError(f"X has {X32.shape[1]} features, but {name} is expecting {n_features_in} features as input.")
    return X32


def _dense_float32(X: Any, *, name: str) -> np.ndarray:
    """Dense ``X`` as a C-contiguous 2-D float32 array with rows and features, or the
    ValueError sklearn raises."""
    if np.iscomplexobj(X):
        raise ValueError(f"Complex data not supported\n{X}\n")
    try:
        X32 = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"could not convert X to float32: {exc}") from None
    if X32.ndim == 0:
        raise ValueError(
            f"Expected 2D array, got scalar array instead:\narray={X!r}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    if X32.ndim == 1:
        raise ValueError(
            f"Expected 2D array, got 1D array instead:\narray={X32!r}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    if X32.ndim > 2:
        raise ValueError(f"Found array with dim {X32.ndim}. {name} expected <= 2.")
    if X32.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={X32.shape}) while a minimum of 1 is required by {name}.")
    if X32.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X32.shape}) while a minimum of 1 is required by {name}.")
    return np.ascontiguousarray(X32)


def request_columns(X: Any, names: np.ndarray | None, kinds: list[str]) -> list[np.ndarray] | None:
    """A JSON-style request (a mapping of column name -> values, or a list of records) as one 1-D
    array per fitted column in ``names`` order, each read as its kind (``"float"``: numbers, None
    as NaN; see :mod:`treeshard.pipeline.request`); None when ``X`` is not a request."""
    if type(X) is np.ndarray:  # the common case, without an import on every call
        return None
    from ..pipeline.request import column_array, is_request
    from ..pipeline.request import request_columns as named_columns

    if not is_request(X):
        return None
    if names is None:
        from ..errors import RequestError

        raise RequestError("this model was fitted without column names (no feature_names_in_): pass a 2-D array, not columns or records")
    fitted = [str(name) for name in names]
    columns, _ = named_columns(X, fitted, set(fitted), what="model")
    return [column_array(name, kind, columns[name]) for name, kind in zip(fitted, kinds, strict=True)]


def check_feature_names(X: Any, fitted: np.ndarray | None, estimator: str) -> None:
    """Warn or raise as sklearn's ``_check_feature_names`` when ``X``'s column names differ from
    ``fitted``, those the model was fitted on (None: none); the caller is two frames below the user's."""
    given = feature_names(X)
    if fitted is None and given is None:
        return
    if fitted is None:
        warnings.warn(f"X has feature names, but {estimator} was fitted without feature names", UserWarning, stacklevel=4)
        return
    if given is None:
        warnings.warn(f"X does not have valid feature names, but {estimator} was fitted with feature names", UserWarning, stacklevel=4)
        return
    if len(fitted) == len(given) and not np.any(fitted != given):
        return
    message = "The feature names should match those that were passed during fit.\n"
    unexpected = sorted(set(given) - set(fitted))
    missing = sorted(set(fitted) - set(given))

    def listing(names: list[str]) -> str:
        shown = "".join(f"- {n}\n" for n in names[:5])
        return shown + ("- ...\n" if len(names) > 5 else "")

    if unexpected:
        message += "Feature names unseen at fit time:\n" + listing(unexpected)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + listing(missing)
    if not unexpected and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def feature_names(X: Any) -> np.ndarray | None:
    """String column names of a DataFrame-like ``X`` (as sklearn's ``_get_feature_names``)."""
    if isinstance(X, np.ndarray) or not hasattr(X, "columns") or not hasattr(X, "shape"):
        return None
    names = np.asarray(list(X.columns), dtype=object)
    if len(names) == 0:
        return None
    types = sorted(t.__qualname__ for t in {type(v) for v in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. "
            "If you want feature names to be stored and validated, you must convert "
            "them all to strings, by using X.columns = X.columns.astype(str) for "
            "example. Otherwise you can remove feature / column names from your input "
            "data, or convert them all to a non-string data type."
        )
    return names if types == ["str"] else None


_NAN_MESSAGE = (
    "Input X contains NaN.\n{} does not accept missing values encoded as NaN natively. For supervised "
    "learning, you might want to consider sklearn.ensemble.HistGradientBoostingClassifier and Regressor "
    "which accept missing values encoded as NaNs natively. Alternatively, it is possible to preprocess the "
    "data, for instance by using an imputer transformer in a pipeline or drop samples with missing values. "
    "See https://scikit-learn.org/stable/modules/impute.html You can find a list of all estimators that "
    "handle NaN values at the following page: "
    "https://scikit-learn.org/stable/modules/impute.html#estimators-that-handle-nan-values"
)
_RESHAPE_HINT = (
    "Reshape your data either using array.reshape(-1, 1) if your data has a single "
    "feature or array.reshape(1, -1) if it contains a single sample."
)


def check_finite(values: np.ndarray, name: str, allow_nan: bool) -> None:
    """sklearn's ``_assert_all_finite`` on float32 ``values`` (X, or a sparse matrix's ``data``):
    a forbidden NaN is reported before infinity.

    >>> check_finite(np.array([1.0, np.inf, np.nan], dtype=np.float32), "Model", True)
    Traceback (most recent call last):
    ...
    ValueError: Input X contains infinity or a value too large for dtype('float32').
    """
    if math.isfinite(np.add.reduce(values, dtype=np.float64)):  # as sklearn, a sum first: float32 sums never overflow float64
        return
    if not allow_nan and np.isnan(values).any():
        raise ValueError(_NAN_MESSAGE.format(name))
    if np.isinf(values).any():
        raise ValueError("Input X contains infinity or a value too large for dtype('float32').")


def as_sparse(X: Any) -> tuple[Any, bool]:
    """``(sparse, from_frame)``: ``X`` if it is a scipy.sparse matrix or array, a pandas
    DataFrame whose columns are all sparse converted with ``X.sparse.to_coo()`` (as sklearn's
    ``check_array`` does), else ``(None, False)``. scipy is imported only for a scipy object.
    """
    mro = type(X).__mro__
    if any(cls.__module__.startswith("scipy.sparse") for cls in mro):
        import scipy.sparse

        return (X, False) if scipy.sparse.issparse(X) else (None, False)
    if (
        any(cls.__module__.startswith("pandas") for cls in mro)
        and getattr(X, "ndim", 0) == 2
        and all(type(dtype).__name__ == "SparseDtype" for dtype in getattr(X, "dtypes", [None]))
        and hasattr(X, "sparse")  # pandas' own check that every column is sparse
    ):
        return X.sparse.to_coo(), True
    return None, False


def sparse_rows(X: Any, *, name: str, n_features_in: int, allow_nan: bool) -> SparseRows:
    """Sparse ``X`` checked and converted as sklearn's ``validate_data(X, dtype=float32,
    accept_sparse="csr")`` followed by the trees' index check, with the same scipy calls
    (``asformat("csr")``, ``astype(float32)``), so duplicate entries add up as in sklearn.

    sklearn refuses NaN in sparse ``X`` for every estimator (its sparse traversal has no
    missing-value support), except in a sparse DataFrame given to an estimator that takes
    NaN: then a NaN goes right at every split whatever ``missing_go_to_left`` says, which the
    predictor does not reproduce, so it refuses that X (``allow_nan`` is only ever true here).
    """
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported\n{X}\n")
    if X.format != "csr":
        X = X.asformat("csr")
    if X.dtype != np.float32:
        X = X.astype(np.float32)  # scipy sums duplicate entries after the cast, in float32
    check_finite(X.data, name, allow_nan)
    if X.ndim < 2:
        raise ValueError(f"Expected 2D input, got input with shape {X.shape}.\n{_RESHAPE_HINT}")
    n_rows, n_features = X.shape
    if n_rows < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required by {name}.")
    if n_features < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required by {name}.")
    if n_features != n_features_in:
        raise ValueError(f"X has {n_features} features, but {name} is expecting {n_features_in} features as input.")
    indices, indptr = X.indices, X.indptr
    if indices.dtype != np.intc or indptr.dtype != np.intc:
        raise ValueError("No support for np.int64 index based sparse matrices")
    if allow_nan and np.isnan(X.data).any():
        raise ValueError(
            f"Input X contains NaN in a sparse DataFrame: {name} sends NaN right at every split on sparse input, "
            "whatever missing_go_to_left says, and the Predictor does not reproduce that; "
            "densify X first (X.sparse.to_dense())."
        )
    # sklearn's Cython reads these without bounds checks; here they index a dense block.
    counts = np.diff(indptr)
    if indptr.shape != (n_rows + 1,) or indptr[0] < 0 or counts.min() < 0 or indptr[-1] > min(len(indices), len(X.data)):
        raise ValueError("sparse X is malformed: its indptr does not describe its indices and data")
    stored = indices[indptr[0] : indptr[-1]]
    if stored.size and (stored.min() < 0 or stored.max() >= n_features):
        raise ValueError(f"sparse X is malformed: column indices outside [0, {n_features})")
    return SparseRows(X.data, indices, indptr, (n_rows, n_features))


class SparseRows:
    """Validated sparse ``X`` (CSR arrays: float32 data, int32 indices) that hands out dense
    float32 row blocks, ``X[start:stop]``, of at most :data:`SPARSE_BLOCK_BYTES`.

    A block holds exactly what sklearn's CSR traversal reads: the stored value of a
    (row, feature) entry, 0.0 for an absent one, and for an entry stored more than once
    the one stored last (sklearn writes a row's entries into its buffer in stored order).

    >>> rows = SparseRows(np.array([1, 2, 3], np.float32), np.array([1, 1, 0], np.intc), np.array([0, 2, 3], np.intc), (2, 2))
    >>> rows[0:2].tolist()
    [[0.0, 2.0], [3.0, 0.0]]
    """

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> None:
        self.data, self.indices, self.indptr, self.shape = data, indices, indptr, shape
        self.max_rows = max(1, SPARSE_BLOCK_BYTES // (4 * shape[1]))

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        n_features = self.shape[1]
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        starts = np.arange(0, (stop - start) * n_features, n_features, dtype=np.intp)
        flat = np.repeat(starts, np.diff(self.indptr[start : stop + 1]))
        flat += self.indices[lo:hi]
        values = self.data[lo:hi]
        if flat.size > 1 and not (flat[1:] > flat[:-1]).all():
            # Unsorted or repeated entries: keep the last stored of each (a stable sort keeps their order).
            order = np.argsort(flat, kind="stable")
            flat, values = flat[order], values[order]
            last = np.append(flat[1:] != flat[:-1], True)
            flat, values = flat[last], values[last]
        dense = np.zeros((stop - start, n_features), dtype=np.float32)
        dense.reshape(-1)[flat] = values
        return dense


def blocks(X32: Any) -> Iterator[np.ndarray]:
    """Dense ``X32`` itself, or sparse ``X`` densified a block of at most ``SPARSE_BLOCK_BYTES`` at a time."""
    if not isinstance(X32, SparseRows):
        return iter((X32,))
    rows = X32.max_rows
    return (X32[i : i + rows] for i in range(0, X32.shape[0], rows))
