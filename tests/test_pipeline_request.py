"""pipeline/request.py: a pipeline Predictor served JSON-style requests (columns or records), no pandas.

Every request is the JSON of a query DataFrame (floats written by ``json`` so
that they read back exactly, NaN as null); the Predictor's outputs must equal
sklearn's on that DataFrame, bit for bit. Bad requests get a ``RequestError``
with the exact message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from test_pipeline import SERVED, _fitted

import treeshard
from treeshard.errors import RequestError
from treeshard.pipeline.request import column_array


def as_json(query: pd.DataFrame) -> dict[str, list[Any]]:
    """The columns of ``query`` through JSON text: NaN as null, categoricals by value."""
    columns = {str(c): [None if isinstance(v, float) and v != v else v for v in query[c].tolist()] for c in query.columns}
    return json.loads(json.dumps(columns))


def records(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = {}
    for case in SERVED:
        model, _, _, query = _fitted(case)
        path = str(tmp_path_factory.mktemp(case) / "model.zip")
        treeshard.save(model, path)
        out[case] = (model, treeshard.Predictor(path), query)
    return out


@pytest.mark.parametrize("case", SERVED)
def test_columns_and_records_predict_as_sklearn_on_the_frame(case: str, served: dict[str, Any]) -> None:
    model, predictor, query = served[case]
    request = as_json(query)
    methods = [m for m in ("predict", "predict_proba", "predict_log_proba", "decision_function") if hasattr(model, m)]
    for method in methods:
        expected = getattr(model, method)(query)
        for X in (request, records(request), dict(reversed(list(request.items())))):  # any key order
            got = getattr(predictor, method)(X)
            assert got.dtype == expected.dtype, method
            assert np.array_equal(got, expected), method
        # a DataFrame built from the same JSON (pandas reads null in a string column as NaN)
        assert np.array_equal(getattr(model, method)(pd.DataFrame(request)), expected), method
    for i in range(12):  # one row at a time: the serverless request
        row = {name: values[i : i + 1] for name, values in request.items()}
        for X in (row, records(row)):
            assert np.array_equal(predictor.predict(X), model.predict(query.iloc[i : i + 1])), (i, X)


def test_input_kinds_come_from_the_fitted_steps(served: dict[str, Any]) -> None:
    _, predictor, _ = served["pipe_l"]
    assert predictor.input_kinds_ == {
        "x0": "float", "x1": "float", "x2": "float", "count": "float", "color": "object",
        "size": "object", "level": "unused", "region": "object",
    }  # fmt: skip
    _, predictor, _ = served["ordinal_boosting"]  # remainder="passthrough": read as pandas would
    assert predictor.input_kinds_ == {
        "x0": "any", "x1": "float", "x2": "float", "count": "any", "color": "object", "size": "object", "level": "any",
    }  # fmt: skip


def test_columns_no_step_reads_may_be_left_out(served: dict[str, Any]) -> None:
    model, predictor, query = served["pipe_l"]
    request = as_json(query)
    del request["level"]  # dropped by the ColumnTransformer
    assert np.array_equal(predictor.predict_proba(request), model.predict_proba(query))


def _integer_categories(tmp_path: Path) -> tuple[Any, Any, pd.DataFrame]:
    rng = np.random.RandomState(0)
    train = pd.DataFrame({"code": rng.randint(0, 4, size=80), "x": rng.normal(size=80)})
    pre = ColumnTransformer([("code", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2), ["code"]), ("x", StandardScaler(), ["x"])])
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=3, random_state=0))]).fit(train, train["code"] % 2)
    path = str(tmp_path / "ints.zip")
    treeshard.save(model, path)
    return model, treeshard.Predictor(path), train


def test_integer_categories_and_numpy_columns(tmp_path: Path) -> None:
    model, predictor, train = _integer_categories(tmp_path)
    assert predictor.input_kinds_ == {"code": "int", "x": "float"}
    request = {"code": [0, 3, 9, None], "x": [0.5, -1.0, 2.0, None]}  # 9 unknown, None missing
    expected = model.predict_proba(pd.DataFrame(request))
    assert np.array_equal(predictor.predict_proba(request), expected)
    assert np.array_equal(predictor.predict_proba(records(request)), expected)
    arrays = {"code": np.array([0.0, 3.0, 9.0, np.nan]), "x": np.array([0.5, -1.0, 2.0, np.nan])}
    assert np.array_equal(predictor.predict_proba(arrays), expected)
    assert np.array_equal(predictor.predict_proba({"code": [1, 2], "x": [0.25, 1]}), model.predict_proba(pd.DataFrame({"code": [1, 2], "x": [0.25, 1.0]})))


def test_decimal_numbers_as_boto3_returns_them(tmp_path: Path) -> None:
    """DynamoDB numbers arrive as decimal.Decimal: numeric columns take them, as sklearn does from a
    DataFrame of them; an encoder of integer categories still refuses them by name."""
    from decimal import Decimal

    model, predictor, _ = _integer_categories(tmp_path)
    request = {"code": [0, 3], "x": [Decimal("0.1"), Decimal("-1.25")]}
    assert np.array_equal(predictor.predict_proba(request), model.predict_proba(pd.DataFrame(request)))
    assert np.array_equal(predictor.predict_proba(records(request)), model.predict_proba(pd.DataFrame(request)))
    with pytest.raises(RequestError, match=r"^column 'code', row 0: expected a number or null, got Decimal Decimal\('1'\)$"):
        predictor.predict({"code": [Decimal("1")], "x": [0.5]})


def _string_model(tmp_path: Path) -> Any:
    train = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "city": ["a", "b", "a", "b"], "unused": [1, 2, 3, 4]})
    pre = ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"]), ("x", StandardScaler(), ["x"])])
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=2, random_state=0))]).fit(train, [0, 1, 0, 1])
    path = str(tmp_path / "strings.zip")
    treeshard.save(model, path)
    return treeshard.Predictor(path)


BAD = [
    ({"x": [0.1], "city": ["a"], "town": ["b"]}, "unknown column(s) ['town']: the pipeline was fitted on 3 columns (its feature_names_in_)"),
    ({"x": [0.1]}, "missing column(s) ['city']: the pipeline reads them"),
    ({"x": [0.1, 0.2], "city": ["a"]}, "columns of different lengths: 'x' has 2 values, 'city' has 1"),
    ({"x": ["0.1"], "city": ["a"]}, "column 'x', row 0: expected a number or null, got str '0.1'"),
    ({"x": [0.1, True], "city": ["a", "b"]}, "column 'x', row 1: expected a number or null, got bool True"),
    ({"x": [0.1], "city": [["a"]]}, "column 'city', row 0: expected a string, number or null, got list ['a']"),
    ({"x": [0.1], "city": [{"name": "a"}]}, "column 'city', row 0: expected a string, number or null, got dict {'name': 'a'}"),
    ({"x": 0.1, "city": ["a"]}, "column 'x': expected a list or 1-D array of values, got float (one row is a list of one value)"),
    ({"x": np.zeros((1, 1)), "city": ["a"]}, "column 'x': expected a 1-D array, got a 2-D array"),
    ({"x": [], "city": []}, "the request has no rows"),
    ([], "the request has no rows"),
    ([{"x": 0.1, "city": "a"}, ["b"]], "record 1: expected a mapping of column -> value, got list"),
    ([{"x": 0.1, "city": "a"}, {"x": 0.2}], "record 1 has other columns than record 0: ['city']"),
    ([{"x": 0.1}], "missing column(s) ['city']: the pipeline reads them"),
    ({"x": [10**400], "city": ["a"]}, "column 'x': an integer is out of the float64 range"),
    ({"x": ["a" * 50], "city": ["a"]}, "column 'x', row 0: expected a number or null, got str 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..."),
]


@pytest.mark.parametrize(("request_", "message"), BAD)
def test_bad_requests_are_refused_with_the_exact_error(request_: Any, message: str, tmp_path: Path) -> None:
    predictor = _string_model(tmp_path)
    with pytest.raises(RequestError, match=f"^{re.escape(message)}$"):
        predictor.predict(request_)
    assert issubclass(RequestError, ValueError) and issubclass(RequestError, treeshard.TreeshardError)


def test_a_pipeline_fitted_on_arrays_refuses_columns(tmp_path: Path) -> None:
    X = np.random.RandomState(0).normal(size=(40, 2))
    model = Pipeline([("scale", StandardScaler()), ("forest", RandomForestClassifier(n_estimators=2, random_state=0))]).fit(X, X[:, 0] > 0)
    path = str(tmp_path / "arrays.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    assert not hasattr(predictor, "input_kinds_")
    message = "this pipeline was fitted without column names (no feature_names_in_): pass a 2-D array, not columns or records"
    with pytest.raises(RequestError, match=f"^{re.escape(message)}$"):
        predictor.predict({"0": [1.0], "1": [2.0]})
    assert np.array_equal(predictor.predict(X[:3].tolist()), model.predict(X[:3]))  # a list of rows is still an array


def test_columns_not_read_are_never_converted(tmp_path: Path) -> None:
    """A column no step reads is neither required nor checked: "unused" may hold anything."""
    predictor = _string_model(tmp_path)
    assert predictor.input_kinds_["unused"] == "unused"
    got = predictor.predict({"x": [0.1], "city": ["a"], "unused": [{"not": "a scalar"}, "nor of this length"]})
    assert got.tolist() == predictor.predict({"x": [0.1], "city": ["a"]}).tolist()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["float", "int", "object", "any"]), values=st.lists(JSON_VALUES, min_size=1, max_size=4))
def test_any_json_column_converts_or_is_refused(kind: str, values: list[Any]) -> None:
    """Whatever JSON holds, a column becomes a 1-D array of its length or a RequestError."""
    try:
        array = column_array("c", kind, values)
    except RequestError as exc:
        assert str(exc).startswith("column 'c'")
        return
    assert array.shape == (len(values),)
    if kind in ("float", "int"):
        assert array.dtype.kind in "if"
