"""JSON-style requests for a pipeline Predictor: a mapping of column -> values, or a list of records.

A serverless handler receives its request as JSON; it should not need pandas
to build a DataFrame first. :func:`request_columns` checks the request's shape
(names, lengths) and :func:`column_array` converts one column's values with the
dtype the fitted pipeline reads that column as (its *kind*, derived from the
stored fitted state by :mod:`treeshard.pipeline.serve`):

- ``"float"`` (a numeric transformer or the ensemble reads it): numbers and
  ``None`` -> float64, ``None`` as NaN; ``decimal.Decimal`` values too (what
  boto3 returns for DynamoDB numbers), converted by ``float()`` as numpy does;
- ``"int"`` (an encoder with integer categories): integers -> int64, and
  float64 as soon as a value is a float or ``None`` (NaN), as pandas does;
- ``"object"`` (an encoder with string categories, or an imputer fitted on
  objects): the values as they are (str, numbers) in an object array, ``None``
  as NaN: a missing value, as pandas (>= 3) reads null in a column of strings
  and as sklearn's imputers and encoders expect by default (``missing_values=nan``);
- ``"any"`` (a passthrough column): what ``pandas.DataFrame`` infers from the
  values (all ints -> int64, numbers or ``None`` -> float64, all bools -> bool,
  strings or ``None`` -> object with NaN, anything else -> object).

A 1-D numpy array is taken as it is. Every problem is a
:class:`~treeshard.errors.RequestError` naming the column (and row).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import RequestError

_NUMBER = (int, float, np.integer, np.floating)
_SCALAR = (str, bool, int, float, np.generic, type(None))
_TYPE_NAMES = {"float": "a number or null", "int": "a number or null", "object": "a string, number or null", "any": "a string, number, boolean or null"}


def is_request(X: Any) -> bool:
    """``X`` is a mapping of columns or a non-empty list of records (mappings); not a scipy
    ``dok`` matrix, which is a dict too."""
    if type(X).__module__.startswith("scipy."):
        return False
    return isinstance(X, Mapping) or (isinstance(X, list) and len(X) > 0 and isinstance(X[0], Mapping))


def request_columns(X: Any, names: list[str], needed: set[str], *, what: str = "pipeline") -> tuple[dict[str, Any], int]:
    """The request's columns by name (in fit order, only those prediction reads) and its row count.

    ``names`` are the pipeline's ``feature_names_in_``; ``needed`` the ones its
    steps read (a ``ColumnTransformer`` may drop some: they may be left out,
    and when given they are neither checked nor converted); ``what`` the messages name (a single
    model's Predictor takes requests too).
    """
    known = set(names)
    if isinstance(X, Mapping):
        given = X
        keys = list(X)
    else:
        given = None
        keys = []
        for i, record in enumerate(X):
            if not isinstance(record, Mapping):
                raise RequestError(f"record {i}: expected a mapping of column -> value, got {type(record).__name__}")
        keys = list(X[0])
    extra = [str(k) for k in keys if k not in known]
    if extra:
        raise RequestError(f"unknown column(s) {extra[:10]}: the {what} was fitted on {len(names)} columns (its feature_names_in_)")
    missing = [name for name in names if name in needed and name not in keys]
    if missing:
        raise RequestError(f"missing column(s) {missing[:10]}: the {what} reads them")
    if given is not None:
        columns = {name: given[name] for name in names if name in given and name in needed}
        for name, values in columns.items():
            _check_sequence(name, values)
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            (a, la), (b, lb) = _two_lengths(lengths)
            raise RequestError(f"columns of different lengths: {a!r} has {la} values, {b!r} has {lb}")
        n_rows = next(iter(lengths.values()), 0)
    else:
        first = set(keys)
        for i, record in enumerate(X):
            if record.keys() != first:
                differ = sorted(str(k) for k in set(record) ^ first)
                raise RequestError(f"record {i} has other columns than record 0: {differ[:10]}")
        columns = {name: [record[name] for record in X] for name in names if name in first and name in needed}
        n_rows = len(X)
    if n_rows == 0:
        raise RequestError("the request has no rows")
    return columns, n_rows


def _check_sequence(name: str, values: Any) -> None:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise RequestError(f"column {name!r}: expected a 1-D array, got a {values.ndim}-D array")
    elif not isinstance(values, (list, tuple)):
        raise RequestError(f"column {name!r}: expected a list or 1-D array of values, got {type(values).__name__} (one row is a list of one value)")


def _two_lengths(lengths: dict[str, int]) -> tuple[tuple[str, int], tuple[str, int]]:
    items = list(lengths.items())
    first = items[0]
    other = next(item for item in items if item[1] != first[1])
    return first, other


def column_array(name: str, kind: str, values: Any) -> np.ndarray:
    """One column's values as the array the fitted pipeline reads (see the module docstring)."""
    if isinstance(values, np.ndarray):
        return values
    try:
        return _converted(name, kind, values)
    except OverflowError:  # an integer beyond int64 (or beyond float64 for a float column)
        dtype = "float64" if kind == "float" else "int64"
        raise RequestError(f"column {name!r}: an integer is out of the {dtype} range") from None


def _converted(name: str, kind: str, values: Any) -> np.ndarray:
    types = set(map(type, values))
    if kind == "float" and types <= {float, int, type(None)}:
        return np.array(values, dtype=np.float64)  # None -> NaN
    for row, value in enumerate(values):
        if kind == "float" and _is_decimal(value):
            continue
        ok = isinstance(value, _SCALAR) and not (kind in ("float", "int") and (isinstance(value, (str, bool, np.bool_)) or not isinstance(value, (*_NUMBER, type(None)))))
        if not ok:
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise RequestError(f"column {name!r}, row {row}: expected {_TYPE_NAMES[kind]}, got {type(value).__name__} {shown}")
    if kind == "float":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "object":
        return _objects(values, missing=np.nan)
    if kind == "int":
        if all(isinstance(v, (int, np.integer)) for v in values):
            return np.array(values, dtype=np.int64)
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return _inferred(values)


def _is_decimal(value: Any) -> bool:
    """A ``decimal.Decimal`` (recognised without importing :mod:`decimal` on the serving path)."""
    return type(value).__name__ == "Decimal" and type(value).__module__ in ("decimal", "_decimal", "_pydecimal")


def _inferred(values: list[Any]) -> np.ndarray:
    """What ``pandas.DataFrame`` makes of a list of JSON values."""
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.array(values, dtype=bool)
    if values and all(v is None or (isinstance(v, _NUMBER) and not isinstance(v, (bool, np.bool_))) for v in values) and any(v is not None for v in values):
        if all(isinstance(v, (int, np.integer)) for v in values):
            return np.array(values, dtype=np.int64)
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    strings = any(isinstance(v, str) for v in values) and all(v is None or isinstance(v, str) for v in values)
    return _objects(values, missing=np.nan if strings else None)


def _objects(values: list[Any], *, missing: Any) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values if missing is None else [missing if v is None else v for v in values]
    return out
