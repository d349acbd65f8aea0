"""Pipelines: round trips of composites, transformers and ensembles through every store, and the Predictor.

Each case is fitted on a mixed-dtype DataFrame (or array) and queried on rows
with NaN and with categories never seen in fit; every output of the loaded
pipeline must equal the original's exactly (``np.array_equal``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor, make_column_selector
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_selection import GenericUnivariateSelect, SelectFdr, SelectFpr, SelectFromModel, SelectFwe, SelectKBest, SelectPercentile, VarianceThreshold, f_classif, f_regression
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import treeshard
from helpers.compare import assert_same_outputs as _assert_same_outputs
from helpers.stores import make_store
from treeshard.errors import ConfigError, UnsupportedEstimatorError
from treeshard.pipeline.serve import _Table

N = 240


def frame(seed: int = 0, *, n: int = N, unseen: bool = False) -> pd.DataFrame:
    """Mixed dtypes: floats with NaN, ints, strings with missing values, a pandas categorical."""
    rng = np.random.RandomState(seed)
    colors = np.array(["red", "green", "blue", "teal", "rare"], dtype=object)
    color = colors[rng.choice(5, size=n, p=[0.4, 0.3, 0.2, 0.08, 0.02])]
    size = rng.choice(["S", "M", "L"], size=n).astype(object)
    if unseen:
        color[::9] = "violet"  # never seen in fit
        size[::11] = "XL"
    color[::13] = np.nan
    df = pd.DataFrame(
        {
            "x0": rng.normal(size=n),
            "x1": rng.normal(scale=5.0, size=n),
            "x2": rng.exponential(size=n),
            "count": rng.randint(0, 20, size=n),
            "color": pd.Series(color, dtype=object),
            "size": pd.Categorical(size, categories=["S", "M", "L", "XL"]) if unseen else pd.Categorical(size, categories=["S", "M", "L"]),
            "level": rng.choice([1.0, 2.0, 3.0, np.nan], size=n),
            "region": rng.choice(["north", "south", "east", "west"], size=n).tolist(),  # pandas' default string dtype
        }
    )
    df.loc[rng.rand(n) < 0.08, "x0"] = np.nan
    df.loc[rng.rand(n) < 0.05, "x1"] = np.nan
    return df


def target(df: pd.DataFrame, task: str) -> np.ndarray:
    score = np.nan_to_num(df["x0"].to_numpy()) + 0.2 * np.nan_to_num(df["x1"].to_numpy()) + (df["color"] == "red").to_numpy()
    if task == "classification":
        return np.digitize(score, [-0.3, 0.6])
    if task == "positive":
        return np.abs(score) + df["x2"].to_numpy()
    return score * 3.0 + df["x2"].to_numpy()


NUMERIC = ["x0", "x1", "x2", "count"]


def _pipe_l() -> Any:
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color", "size", "region"]),
        ]
    )
    return Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=8, random_state=0))])


def _ordinal_boosting() -> Any:
    pre = ColumnTransformer(
        [
            ("num", MinMaxScaler(), ["x1", "x2"]),
            ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2), ["color", "size"]),
        ],
        remainder="passthrough",
    )
    return Pipeline([("pre", pre), ("impute", SimpleImputer(strategy="median")), ("gb", GradientBoostingClassifier(n_estimators=10, random_state=0))])


def _infrequent_regression() -> Any:
    pre = ColumnTransformer(
        [
            ("robust", RobustScaler(), ["x1"]),
            ("maxabs", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=True)), ("scale", MaxAbsScaler())]), ["x0", "x2"]),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, drop="if_binary", sparse_output=False), ["color"]),
            ("ordinal", OrdinalEncoder(max_categories=2, handle_unknown="use_encoded_value", unknown_value=np.nan), ["size"]),
            ("level", OneHotEncoder(handle_unknown="ignore", dtype=np.float32), ["level"]),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )
    return Pipeline([("pre", pre), ("trees", ExtraTreesRegressor(n_estimators=6, random_state=0))])


def _imputers_tree() -> Any:
    pre = ColumnTransformer(
        [
            ("mean", SimpleImputer(strategy="mean", add_indicator=True), ["x0", "x1"]),
            ("freq", Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("encode", OneHotEncoder(drop="first", handle_unknown="ignore"))]), ["color"]),
            ("const", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")), ("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))]), ["color"]),
        ],
        remainder=StandardScaler(),
        verbose_feature_names_out=False,
    )
    return Pipeline([("pre", pre), ("tree", DecisionTreeClassifier(random_state=0, max_depth=6))])


def _feature_union() -> Any:
    numeric = Pipeline(
        [
            ("select", ColumnTransformer([("pick", SimpleImputer(), make_column_selector(dtype_include=np.floating))])),
            ("union", FeatureUnion([("scale", StandardScaler()), ("poly", PolynomialFeatures(degree=2)), ("pairs", PolynomialFeatures(degree=(2, 3), interaction_only=True, include_bias=False, order="F")), ("raw", "passthrough"), ("gone", "drop")])),
            ("variance", VarianceThreshold(threshold=0.01)),
        ]
    )
    return Pipeline([("numeric", numeric), ("forest", RandomForestRegressor(n_estimators=5, random_state=0))])


def _target_transformed() -> Any:
    pre = ColumnTransformer([("num", SimpleImputer(strategy="median"), NUMERIC), ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["size"])])
    inner = Pipeline([("pre", pre), ("gb", GradientBoostingRegressor(n_estimators=12, random_state=0))])
    return TransformedTargetRegressor(regressor=inner, func=np.log1p, inverse_func=np.expm1, check_inverse=False)


def _target_scaled() -> Any:
    pre = ColumnTransformer([("num", Pipeline([("impute", SimpleImputer()), ("kbins", KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="quantile", quantile_method="averaged_inverted_cdf"))]), ["x0", "x1"])], remainder="drop")
    return TransformedTargetRegressor(regressor=Pipeline([("pre", pre), ("forest", RandomForestRegressor(n_estimators=4, random_state=0))]), transformer=StandardScaler())


def _selection() -> Any:
    pre = ColumnTransformer(
        [
            ("indicate", MissingIndicator(features="all"), ["x0", "x1"]),
            ("log", Pipeline([("impute", SimpleImputer()), ("log", FunctionTransformer(np.log1p, feature_names_out="one-to-one"))]), ["x2", "count"]),
            ("identity", FunctionTransformer(), ["x1"]),
        ]
    )
    prefit = RandomForestClassifier(n_estimators=3, random_state=1)
    return Pipeline(
        [
            ("pre", pre),
            ("impute", SimpleImputer()),
            ("select", SelectFromModel(RandomForestClassifier(n_estimators=3, random_state=0), threshold="median")),
            ("gb", GradientBoostingClassifier(n_estimators=5, random_state=0)),
        ]
    ), prefit


def _kbins_onehot() -> Any:
    pre = ColumnTransformer(
        [
            ("bins", Pipeline([("impute", SimpleImputer()), ("kbins", KBinsDiscretizer(n_bins=5, encode="onehot", strategy="uniform"))]), ["x0", "x1"]),
            ("dense", Pipeline([("impute", SimpleImputer(strategy="median")), ("kbins", KBinsDiscretizer(n_bins=3, encode="onehot-dense", strategy="kmeans", dtype=np.float32))]), ["x2"]),
            ("count", "passthrough", ["count"]),
        ]
    )
    return Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=4, random_state=0))])


def _more_transformers() -> Any:
    from sklearn.preprocessing import Binarizer, Normalizer, PowerTransformer, QuantileTransformer, TargetEncoder

    pre = ColumnTransformer(
        [
            ("quantiles", QuantileTransformer(n_quantiles=50), ["x2", "count"]),
            ("power", Pipeline([("impute", SimpleImputer()), ("power", PowerTransformer())]), ["x0"]),
            ("normal", Pipeline([("impute", SimpleImputer()), ("norm", Normalizer())]), ["x0", "x1"]),
            ("binary", Binarizer(threshold=1.0), ["x2"]),
            ("target", TargetEncoder(random_state=0), ["color", "region"]),
        ]
    )
    return Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=4, random_state=0))])


def _univariate() -> Any:
    """SelectKBest (f_classif; constant one-hot columns score NaN) then SelectPercentile."""
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, categories=[["red", "green", "blue", "teal", "rare", "never"]]), ["color"]),
        ]
    )
    return Pipeline(
        [("pre", pre), ("kbest", SelectKBest(f_classif, k=7)), ("percentile", SelectPercentile(percentile=45)), ("forest", RandomForestClassifier(n_estimators=5, random_state=0))]
    )


CASES = {
    "univariate": (_univariate, "classification"),
    "more_transformers": (_more_transformers, "classification"),
    "kbins_onehot": (_kbins_onehot, "classification"),
    "pipe_l": (_pipe_l, "classification"),
    "ordinal_boosting": (_ordinal_boosting, "classification"),
    "infrequent_regression": (_infrequent_regression, "regression"),
    "imputers_tree": (_imputers_tree, "classification"),
    "feature_union": (_feature_union, "regression"),
    "target_transformed": (_target_transformed, "positive"),
    "target_scaled": (_target_scaled, "regression"),
    "selection": (lambda: _selection()[0], "classification"),
}


def _fitted(case: str) -> tuple[Any, pd.DataFrame, np.ndarray, pd.DataFrame]:
    build, task = CASES[case]
    train = frame(0)
    y = target(train, task)
    if case == "imputers_tree":
        train = train[["x0", "x1", "color", "x2", "count"]]
    elif case == "ordinal_boosting":  # its remainder passes every other column through to a median imputer
        train = train.drop(columns=["region"])
    model = build().fit(train, y)
    query = frame(7, n=120, unseen=True)[list(train.columns)]
    return model, train, y, query


def assert_same_outputs(original: Any, loaded: Any, X: Any, y: Any) -> None:
    _assert_same_outputs(original, loaded, X, y, methods=("predict", "predict_proba", "decision_function"))


@pytest.mark.parametrize("kind", ["directory", "zip", "memory"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip(case: str, kind: str, tmp_path: Path) -> None:
    model, train, y, query = _fitted(case)
    store = make_store(kind, tmp_path)
    treeshard.save(model, store)
    loaded = treeshard.load(store)
    assert type(loaded) is type(model)
    assert_same_outputs(model, loaded, train, y)
    y_query = target(frame(7, n=120, unseen=True), CASES[case][1])
    assert_same_outputs(model, loaded, query, y_query)
    # every prefix of a pipeline is a transformer of its own
    inner = loaded.regressor_ if isinstance(loaded, TransformedTargetRegressor) else loaded
    original = model.regressor_ if isinstance(model, TransformedTargetRegressor) else model
    for k in range(1, len(original.steps)):
        assert_same_outputs(original[:k], inner[:k], query, y_query)
    if case == "feature_union":
        # a column selector is stored as the columns it selected in fit
        selector = loaded.steps[0][1].steps[0][1]
        assert selector.transformers[0][2] == ["x0", "x1", "x2", "level"] == model.steps[0][1].steps[0][1]._columns[0]
    else:
        assert repr(loaded) == repr(model)


SERVED = ["univariate", "selection", "feature_union", "pipe_l", "ordinal_boosting", "infrequent_regression", "imputers_tree", "target_transformed", "target_scaled", "kbins_onehot"]


def test_predictor_of_a_pipeline_store_is_a_predictor(tmp_path: Path) -> None:
    from treeshard.pipeline.serve import PipelinePredictor

    model, train, y, query = _fitted("selection")
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    assert type(predictor) is PipelinePredictor
    assert isinstance(predictor, treeshard.Predictor) and issubclass(PipelinePredictor, treeshard.Predictor)
    assert not isinstance(model, treeshard.Predictor)


@pytest.mark.parametrize("case", SERVED)
def test_predictor_serves_pipeline(case: str, tmp_path: Path) -> None:
    model, train, y, query = _fitted(case)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    for X in (train, query, query.iloc[:1]):
        for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
            if hasattr(model, method):
                expected = getattr(model, method)(X)
                got = getattr(predictor, method)(X)
                assert got.dtype == expected.dtype, method
                assert np.array_equal(got, expected), method


def _array_data(seed: int = 0, n: int = 200) -> np.ndarray:
    rng = np.random.RandomState(seed)
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.choice([0.0, 1.0, 2.0, np.nan], size=n), rng.normal(size=n)])
    X[rng.rand(n) < 0.1, 0] = np.nan
    return X


def test_predictor_on_arrays_columns_by_index(tmp_path: Path) -> None:
    """Columns by index, slice and mask on an array; numeric categories with NaN; a remainder estimator."""
    X = _array_data()
    y = (np.nan_to_num(X[:, 0]) + X[:, 1] > 0).astype(int)
    pre = ColumnTransformer(
        [
            ("imputed", SimpleImputer(strategy="median"), [0]),
            ("encoded", OneHotEncoder(handle_unknown="ignore"), slice(2, 3)),
            ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), np.array([False, False, True, False])),
        ],
        remainder=StandardScaler(),
    )
    model = Pipeline([("pre", pre), ("variance", VarianceThreshold(0.05)), ("forest", RandomForestClassifier(n_estimators=5, random_state=0))]).fit(X, y)
    path = str(tmp_path / "model")
    treeshard.save(model, path)
    query = _array_data(seed=3)
    query[::7, 2] = 5.0  # an unknown category
    predictor = treeshard.Predictor(path)
    loaded = treeshard.load(path)
    for method in ("predict", "predict_proba"):
        assert np.array_equal(getattr(predictor, method)(query), getattr(model, method)(query))
        assert np.array_equal(getattr(loaded, method)(query), getattr(model, method)(query))


def test_unknown_category_errors_as_sklearn(tmp_path: Path) -> None:
    train = frame(0)
    y = target(train, "classification")
    model = Pipeline(
        [("pre", ColumnTransformer([("cat", OneHotEncoder(), ["size"])])), ("forest", RandomForestClassifier(n_estimators=3, random_state=0))]
    ).fit(train, y)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    query = frame(7, n=40, unseen=True)
    with pytest.raises(ValueError, match=r"Found unknown categories \['XL'\] in column 0 during transform"):
        model.predict(query)
    with pytest.raises(ValueError, match=r"Found unknown categories \['XL'\] in column 0 during transform"):
        treeshard.Predictor(path).predict(query)
    with pytest.raises(ValueError, match=r"columns are missing: \{'size'\}"):
        treeshard.Predictor(path).predict(query.drop(columns=["size"]))
    X = _array_data()
    numeric = Pipeline([("pre", ColumnTransformer([("cat", OrdinalEncoder(), [2])])), ("tree", DecisionTreeClassifier(random_state=0))]).fit(X, X[:, 0] > 0)
    treeshard.save(numeric, path, overwrite=True)
    X[0, 2] = 5.0
    for served in (numeric, treeshard.Predictor(path)):
        with pytest.raises(ValueError, match=r"^Found unknown categories \[np\.float64\(5\.0\)\] in column 0 during transform$"):
            served.predict(X)


RESHAPE = r"\.\nReshape your data either using array\.reshape\(-1, 1\) if your data has a single feature or array\.reshape\(1, -1\) if it contains a single sample\.$"


@pytest.mark.parametrize(
    ("X", "message"),
    [
        ([1.0, 2.0, 3.0, 4.0], r"^Expected 2D array, got 1D array instead:\narray=\[1\. 2\. 3\. 4\.\]" + RESHAPE),
        ([], r"^Expected 2D array, got 1D array instead:\narray=\[\]" + RESHAPE),
        (3.0, r"^Expected 2D array, got scalar array instead:\narray=3\.0" + RESHAPE),
        (None, r"^Expected 2D array, got scalar array instead:\narray=None" + RESHAPE),
        ("x", r"^Expected 2D array, got scalar array instead:\narray=x" + RESHAPE),
        (np.zeros((1, 1, 4)), r"^Found array with dim 3, while dim <= 2 is required by StandardScaler\.$"),
        (np.ones((1, 4), dtype=complex), r"^Complex data not supported\n"),
    ],
    ids=["1d", "empty-list", "scalar", "none", "string", "3d", "complex"],
)
def test_predictor_refuses_input_that_is_not_2d_as_sklearn(X: Any, message: str, tmp_path: Path) -> None:
    """sklearn's ValueError, not an IndexError or AttributeError from inside a step (nor a complex X cast)."""
    data = _array_data()[:, :2]
    data = np.column_stack([data, data])
    model = Pipeline([("scale", StandardScaler()), ("forest", RandomForestClassifier(n_estimators=3, random_state=0))]).fit(np.nan_to_num(data), data[:, 0] > 0)
    treeshard.save(model, tmp_path / "model.zip")
    with pytest.raises(ValueError, match=message):
        treeshard.Predictor(tmp_path / "model.zip").predict(X)
    with pytest.raises(ValueError):
        model.predict(X)


def _pandas_output() -> Any:
    """pandas output into a transformer (served only on the step that feeds the ensemble)."""
    X = _array_data()
    steps = [("scale", StandardScaler()), ("minmax", MinMaxScaler()), ("tree", DecisionTreeClassifier(random_state=0))]
    return Pipeline(steps).set_output(transform="pandas").fit(X, X[:, 1] > 0)


def _minus_one_missing() -> Any:
    X = np.nan_to_num(_array_data(), nan=-1.0)
    return Pipeline([("impute", SimpleImputer(missing_values=-1.0)), ("tree", DecisionTreeClassifier(random_state=0))]).fit(X, X[:, 1] > 0)


def _weighted_union() -> Any:
    X = np.nan_to_num(_array_data())
    union = FeatureUnion([("a", StandardScaler()), ("b", MinMaxScaler())], transformer_weights={"a": 2.0})
    return Pipeline([("union", union), ("tree", DecisionTreeClassifier(random_state=0))]).fit(X, X[:, 1] > 0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_pandas_output, r"^pipeline\.params\.steps\[0\]\[1\]: the Predictor does not serve set_output containers"),
        (_minus_one_missing, r"^pipeline\.params\.steps\[0\]\[1\]: the Predictor serves missing_values=nan only, not -1\.0$"),
        (_weighted_union, r"^pipeline\.params\.steps\[0\]\[1\]: the Predictor does not serve transformer_weights$"),
    ],
    ids=["set_output", "missing_values", "weights"],
)
def test_predictor_refuses_what_it_cannot_serve_exactly(build: Any, message: str, tmp_path: Path) -> None:
    model = build()
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    assert_same_outputs(model, treeshard.load(path), _array_data(seed=2), None)
    with pytest.raises(UnsupportedEstimatorError, match=message):
        treeshard.Predictor(path)


@pytest.mark.parametrize("task", ["binary", "multiclass", "continuous"])
def test_predictor_target_encoder(task: str, tmp_path: Path) -> None:
    from sklearn.preprocessing import TargetEncoder

    train = frame(0)
    y = {"binary": target(train, "classification") > 0, "multiclass": target(train, "classification"), "continuous": target(train, "regression")}[task]
    final = RandomForestRegressor(n_estimators=3, random_state=0) if task == "continuous" else RandomForestClassifier(n_estimators=3, random_state=0)
    pre = ColumnTransformer([("target", TargetEncoder(random_state=0), ["color", "size", "region"]), ("num", SimpleImputer(), ["x0"])])
    model = Pipeline([("pre", pre), ("forest", final)]).fit(train, y)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    query = frame(7, n=120, unseen=True)
    assert np.array_equal(predictor.predict(query), model.predict(query))
    assert np.array_equal(predictor._root.steps[0][1].transform(_Table(query)), model[:-1].transform(query))


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_predictor_normalizer(norm: str, tmp_path: Path) -> None:
    from sklearn.preprocessing import Normalizer

    X = np.nan_to_num(_array_data(n=300))
    X[::17] = 0.0  # rows of norm zero are left as they are
    model = Pipeline([("norm", Normalizer(norm=norm)), ("gb", GradientBoostingRegressor(n_estimators=5, random_state=0))]).fit(X, X[:, 0])
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    query = np.nan_to_num(_array_data(seed=8, n=300)).astype(np.float32)
    assert np.array_equal(predictor._root.steps[0][1].transform(query), model[:-1].transform(query))
    assert np.array_equal(predictor.predict(query), model.predict(query))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_predictor_quantile_transformer(dtype: Any, tmp_path: Path) -> None:
    from sklearn.preprocessing import QuantileTransformer

    X = _array_data(n=300).astype(dtype)
    model = Pipeline([("quantiles", QuantileTransformer(n_quantiles=40)), ("forest", RandomForestRegressor(n_estimators=3, random_state=0))]).fit(X, np.nan_to_num(X[:, 0]))
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    query = np.vstack([_array_data(seed=9, n=200), model[0].quantiles_[[0, -1]]]).astype(dtype)  # the exact bounds too
    assert np.array_equal(predictor._root.steps[0][1].transform(query), model[:-1].transform(query), equal_nan=True)
    assert np.array_equal(predictor.predict(query), model.predict(query))


def test_predictor_binarizer(tmp_path: Path) -> None:
    from sklearn.preprocessing import Binarizer

    X = np.nan_to_num(_array_data())
    for dtype in (np.float64, np.float32):
        model = Pipeline([("binary", Binarizer(threshold=0.25)), ("tree", DecisionTreeClassifier(random_state=0))]).fit(X.astype(dtype), X[:, 1] > 0)
        path = str(tmp_path / f"{np.dtype(dtype).name}.zip")
        treeshard.save(model, path)
        query = np.nan_to_num(_array_data(seed=6)).astype(dtype)
        assert np.array_equal(treeshard.Predictor(path).predict_proba(query), model.predict_proba(query))


def test_predictor_pipeline_needs_neither_sklearn_nor_scipy(tmp_path: Path) -> None:
    import subprocess
    import sys

    X = _array_data()
    y = X[:, 1] * 2.0
    model = Pipeline(
        [("pre", ColumnTransformer([("num", SimpleImputer(add_indicator=True), [0, 1]), ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [2])])), ("gb", GradientBoostingRegressor(n_estimators=5, random_state=0))]
    ).fit(X, y)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    rows = _array_data(seed=5, n=3)
    script = (
        "import json, sys, numpy as np, treeshard\n"
        f"p = treeshard.Predictor({path!r})\n"
        f"out = p.predict(np.array({rows.tolist()!r}.__repr__() and {rows.tolist()!r}, dtype=float)).tolist()\n"
        "print(json.dumps({'out': out, 'loaded': sorted(m for m in ('sklearn', 'scipy', 'pandas', 'zarr') if m in sys.modules)}))\n"
    ).replace("nan", "float('nan')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["out"] == model.predict(rows).tolist()


# --------------------------------------------------------------------------- malformed records
def _small_pipeline() -> Any:
    X = _array_data()
    pre = ColumnTransformer([("num", StandardScaler(), [0, 1]), ("cat", OneHotEncoder(handle_unknown="ignore"), [2])])
    return Pipeline([("pre", pre), ("rf", RandomForestClassifier(n_estimators=2, max_depth=3, random_state=0))]).fit(X, X[:, 1] > 0)


def _ct(record: dict) -> dict:
    return record["pipeline"]["params"]["steps"]["list"][0]["tuple"][1]["node"]


def _scaler(record: dict) -> dict:
    return _ct(record)["fitted"]["transformers_"]["list"][0]["tuple"][1]["node"]


def _onehot(record: dict) -> dict:
    return _ct(record)["fitted"]["transformers_"]["list"][1]["tuple"][1]["node"]


def _forest(record: dict) -> dict:
    return record["pipeline"]["params"]["steps"]["list"][1]["tuple"][1]["node"]


def _grow_categories(record: dict) -> None:
    fitted = _onehot(record)["fitted"]
    categories = fitted["categories_"]["list"][0]
    categories["data"].insert(-1, 9.0)
    categories["shape"] = [len(categories["data"])]
    fitted["_n_features_outs"]["list"][0] += 1


STEP0, STEP1 = "pipeline.params.steps[0][1]", "pipeline.params.steps[1][1]"
SCALER, ONEHOT = f"{STEP0}.fitted.transformers_[0][1]", f"{STEP0}.fitted.transformers_[1][1]"
MALFORMED = {
    "unknown kind": (lambda r: r["pipeline"].__setitem__("kind", "pickle"), "pipeline.kind: unknown node kind 'pickle'"),
    "id not allow-listed": (lambda r: _ct(r).__setitem__("id", "os.system"), f"{STEP0}.id: 'os.system' is not an allow-listed estimator"),
    "unknown node key": (lambda r: _ct(r).__setitem__("module", "os"), f"{STEP0}: unknown key(s) ['module']"),
    "fitted attribute not allowed": (
        lambda r: _scaler(r)["fitted"].__setitem__("__class__", 1),
        f"{SCALER}.fitted: attribute(s) ['__class__'] are not allowed for StandardScaler",
    ),
    "missing required attribute": (lambda r: _scaler(r)["fitted"].pop("scale_"), f"{SCALER}.fitted: missing required attribute 'scale_' of a fitted StandardScaler"),
    "untagged float": (lambda r: _scaler(r)["fitted"].__setitem__("n_samples_seen_", 1.5), f"{SCALER}.fitted.n_samples_seen_: untagged float 1.5 (floats are stored as {{\"float\": ...}})"),
    "untagged list": (lambda r: _scaler(r)["fitted"].__setitem__("n_samples_seen_", [1]), f"{SCALER}.fitted.n_samples_seen_: untagged list (lists are stored as {{\"list\": [...]}})"),
    "unknown tag": (lambda r: _scaler(r)["params"].__setitem__("copy", {"pickle": "x"}), f"{SCALER}.params.copy: unknown state value tag 'pickle'"),
    "function not allow-listed": (lambda r: _scaler(r)["params"].__setitem__("copy", {"function": "os.system"}), f"{SCALER}.params.copy: function 'os.system' is not allow-listed"),
    "dtype not allowed": (lambda r: _onehot(r)["params"].__setitem__("dtype", {"dtype": "datetime64"}), f"{ONEHOT}.params.dtype: dtype 'datetime64' is not allowed"),
    "type not allowed": (lambda r: _onehot(r)["params"].__setitem__("dtype", {"type": "builtins.eval"}), f"{ONEHOT}.params.dtype: type 'builtins.eval' is not allowed"),
    "encoder dtype not numeric": (lambda r: _onehot(r)["params"].__setitem__("dtype", {"type": "builtins.str"}), f"{ONEHOT}.params.dtype: expected a numeric type, got type <class 'str'>"),
    "slice step zero": (
        lambda r: _ct(r)["fitted"]["output_indices_"]["dict"][0].__setitem__(1, {"slice": [0, 2, 0]}),
        f"{STEP0}.fitted.output_indices_[0][1]: slice step cannot be zero",
    ),
    "objects shape": (
        lambda r: _ct(r)["fitted"]["transformers_"]["list"][0]["tuple"].__setitem__(2, {"objects": ["a"], "shape": [2]}),
        rf"{STEP0}.fitted.transformers_[0][2]: shape [2] does not match 1 objects",
    ),
    "wrong vector length": (lambda r: _scaler(r)["fitted"]["mean_"].update(data=[0.0, 0.0, 0.0], shape=[3]), f"{SCALER}.fitted.mean_: expected 2 floats, got an array of shape (3,)"),
    "outputs do not match categories": (
        lambda r: _onehot(r)["fitted"]["_n_features_outs"]["list"].__setitem__(0, 9),
        f"{ONEHOT}.fitted._n_features_outs: [9] does not match the categories (expected [4])",
    ),
    "indices do not match columns": (
        lambda r: _ct(r)["fitted"]["_transformer_to_input_indices"]["dict"][0][1]["list"].__setitem__(0, 3),
        f"{STEP0}.fitted._transformer_to_input_indices['num']: does not match the columns of transformers_[0]",
    ),
    "step widths differ": (_grow_categories, "pipeline.params.steps[1]: the step before outputs 7 features; this one expects 6"),
    "duplicate step names": (
        lambda r: r["pipeline"]["params"]["steps"]["list"][1]["tuple"].__setitem__(0, "pre"),
        "pipeline.params.steps[1]: duplicate name 'pre'",
    ),
    "ensemble out of order": (lambda r: _forest(r).__setitem__("group", "models/1"), f"{STEP1}.group: expected 'models/0' (ensembles are numbered in order), got 'models/1'"),
    "ensemble reference to nothing": (lambda r: _forest(r).pop("config"), f"{STEP1}.group: 'models/0' refers to no ensemble stored before it"),
    "ensemble config": (lambda r: _forest(r)["config"]["trees"].__setitem__("n_trees", 0), rf"{STEP1}.config.trees.n_trees: 0 is out of range \[1, 10000000\]"),
    "ensemble id": (lambda r: _forest(r)["config"].__setitem__("estimator", "Pipeline"), f"{STEP1}.config.estimator: unknown estimator id 'Pipeline'"),
    "root is an ensemble": (lambda r: r.__setitem__("pipeline", _forest(r)), "pipeline: the root must be an allow-listed composite or transformer, not an ensemble"),
    "huge int in a float array": (lambda r: _scaler(r)["fitted"]["mean_"]["data"].__setitem__(0, 10**400), f"{SCALER}.fitted.mean_[0]: 1000000000000000000000000000000000000000... is out of the float range"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_pipeline_records(case: str, tmp_path: Path) -> None:
    from helpers.stores import edit_config, reseal

    edit, message = MALFORMED[case]
    path = tmp_path / "model"
    treeshard.save(_small_pipeline(), str(path))
    edit_config(path, edit)
    reseal(str(path))
    for open_model in (treeshard.load, treeshard.Predictor):
        with pytest.raises(ConfigError) as info:
            open_model(str(path))
        assert type(info.value) is ConfigError
        assert str(info.value) == message.replace("\\[", "[").replace("\\]", "]"), open_model


def test_functions_are_accepted_only_where_they_belong(tmp_path: Path) -> None:
    """A score function is no transform (and the Predictor would import sklearn to call it); k is checked."""
    from helpers.stores import edit_config, reseal

    X = np.nan_to_num(_array_data())
    model = Pipeline([("log", FunctionTransformer(np.abs)), ("kbest", SelectKBest(k=2)), ("rf", RandomForestClassifier(n_estimators=2, random_state=0))]).fit(X, X[:, 1] > 0)
    steps = lambda r: r["pipeline"]["params"]["steps"]["list"]  # noqa: E731
    edits = {
        "func": (
            lambda r: steps(r)[0]["tuple"][1]["node"]["params"].__setitem__("func", {"function": "sklearn.feature_selection.chi2"}),
            f"{STEP0}.params.func: function 'sklearn.feature_selection.chi2' is not allowed here (allowed: numpy.log1p, numpy.expm1, ",
        ),
        "score_func": (
            lambda r: steps(r)[1]["tuple"][1]["node"]["params"].__setitem__("score_func", {"function": "numpy.log1p"}),
            f"{STEP1}.params.score_func: function 'numpy.log1p' is not allowed here (allowed: sklearn.feature_selection.f_classif, ",
        ),
        "k": (lambda r: steps(r)[1]["tuple"][1]["node"]["params"].__setitem__("k", 5), f"{STEP1}.params.k: expected 'all' or an integer in [0, 4], got int 5"),
    }
    for name, (edit, message) in edits.items():
        path = tmp_path / name
        treeshard.save(model, str(path))
        edit_config(path, edit)
        reseal(str(path))
        for open_model in (treeshard.load, treeshard.Predictor):
            with pytest.raises(ConfigError) as info:
                open_model(str(path))
            assert type(info.value) is ConfigError
            assert str(info.value).startswith(message), (name, str(info.value))


@pytest.mark.parametrize("k", [0, 1, 3, "all"])
@pytest.mark.parametrize("percentile", [0, 10, 50, 100])
def test_predictor_univariate_selection_with_ties_and_nan_scores(k: Any, percentile: int, tmp_path: Path) -> None:
    """Scores with ties and NaN (constant columns): the support computed as sklearn does."""
    rng = np.random.RandomState(0)
    X = np.column_stack([np.round(rng.normal(size=(200, 3)), 1), np.ones(200), np.ones(200)])
    y = (X[:, 0] > 0).astype(int)
    X = np.column_stack([X, X[:, 0]])  # a tie with column 0
    model = Pipeline(
        [("kbest", SelectKBest(k=k)), ("percentile", SelectPercentile(percentile=percentile)), ("scale", StandardScaler()), ("rf", RandomForestClassifier(n_estimators=2, random_state=0))]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant features; no feature selected
        pre = Pipeline([model.steps[0] if k == 0 else model.steps[1]] if 0 in (k, percentile) else model.steps[:2]).fit(X, y)
        if pre.transform(X).shape[1] == 0:  # nothing selected: the selectors alone
            path = str(tmp_path / "selector.zip")
            treeshard.save(pre, path)
            assert np.array_equal(treeshard.Predictor(path).transform(X), pre.transform(X))
            assert np.array_equal(treeshard.load(path).transform(X), pre.transform(X))
            return
        model.fit(X, y)
        path = str(tmp_path / "model.zip")
        treeshard.save(model, path)
        predictor, loaded = treeshard.Predictor(path), treeshard.load(path)
        assert np.array_equal(predictor.predict_proba(X), model.predict_proba(X))
        assert np.array_equal(loaded[:2].transform(X), model[:2].transform(X))
        for step in (0, 1):
            assert np.array_equal(loaded[step].get_support(), model[step].get_support())


@pytest.mark.parametrize("selector", [SelectFpr, SelectFdr, SelectFwe])
@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.05, 1.0])
def test_predictor_selection_by_pvalues(selector: Any, alpha: float, tmp_path: Path) -> None:
    """SelectFpr/Fdr/Fwe (f_regression): loaded and served keep the features sklearn keeps, none or all included."""
    rng = np.random.RandomState(3)
    X = np.round(rng.normal(size=(150, 8)), 2)
    y = X[:, 0] * 2 + X[:, 3] + 0.3 * X[:, 5] + rng.normal(scale=0.5, size=150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no feature selected
        chosen = selector(f_regression, alpha=alpha).fit(X, y).get_support()
        model = Pipeline([("select", selector(f_regression, alpha=alpha)), ("tree", DecisionTreeRegressor(random_state=0, max_depth=4))])
        model = model.fit(X, y) if chosen.any() else Pipeline([("select", selector(f_regression, alpha=alpha))]).fit(X, y)
        path = str(tmp_path / "model.zip")
        treeshard.save(model, path)
        loaded, predictor = treeshard.load(path), treeshard.Predictor(path)
        assert np.array_equal(loaded[0].get_support(), chosen)
        if chosen.any():
            assert np.array_equal(predictor.predict(X), model.predict(X))
            assert np.array_equal(loaded.predict(X), model.predict(X))
        else:
            assert np.array_equal(predictor.transform(X), model.transform(X))
    assert chosen.any() == (alpha > 0.0)


@pytest.mark.parametrize(("mode", "param"), [("k_best", 3), ("k_best", "all"), ("percentile", 30), ("fpr", 0.01), ("fdr", 0.05), ("fwe", 0.5)])
def test_predictor_generic_univariate_select(mode: str, param: Any, tmp_path: Path) -> None:
    rng = np.random.RandomState(5)
    X = np.round(rng.normal(size=(150, 8)), 2)
    y = X[:, 0] * 2 + X[:, 3] + 0.3 * X[:, 5] + rng.normal(scale=0.5, size=150)
    model = Pipeline([("select", GenericUnivariateSelect(f_regression, mode=mode, param=param)), ("tree", DecisionTreeRegressor(random_state=0, max_depth=4))]).fit(X, y)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    loaded, predictor = treeshard.load(path), treeshard.Predictor(path)
    assert np.array_equal(loaded[0].get_support(), model[0].get_support())
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert np.array_equal(predictor.predict(X), model.predict(X))


def test_generic_univariate_select_param_is_checked_for_its_mode(tmp_path: Path) -> None:
    from helpers.stores import edit_config, reseal

    X = np.nan_to_num(_array_data())
    model = Pipeline([("select", GenericUnivariateSelect(mode="fdr", param=0.5)), ("rf", RandomForestClassifier(n_estimators=2, random_state=0))]).fit(X, X[:, 1] > 0)
    path = tmp_path / "model"
    treeshard.save(model, str(path))
    edit_config(path, lambda r: r["pipeline"]["params"]["steps"]["list"][0]["tuple"][1]["node"]["params"].__setitem__("param", {"float": 1.5}))
    reseal(str(path))
    for open_model in (treeshard.load, treeshard.Predictor):
        with pytest.raises(ConfigError) as info:
            open_model(str(path))
        assert str(info.value) == f"{STEP0}.params.param: expected a number in [0, 1], got float 1.5"


def test_unsupported_format_version(tmp_path: Path) -> None:
    from helpers.stores import edit_config, reseal

    path = tmp_path / "model"
    treeshard.save(_small_pipeline(), str(path))
    edit_config(path, lambda r: r.__setitem__("format_version", 2))
    reseal(str(path))
    with pytest.raises(treeshard.UnsupportedFormatVersionError, match=r"^config.format_version: 2 is not supported \(this treeshard reads 1\): a newer treeshard wrote it \(versions.treeshard: '[^']+'\); upgrade treeshard \(pip install --upgrade treeshard\) to read it$"):
        treeshard.load(str(path))


@pytest.mark.parametrize(("saved", "warns"), [("1.2.2", True), ("1.3.2", False)])
def test_a_version_change_warns_only_where_an_ensemble_may_differ(tmp_path: Path, saved: str, warns: bool) -> None:
    """As for a single model: 1.2.2 is outside the compatibility matrix; a forest written by 1.3.2
    predicts exactly under every version of the matrix, and schema steps are exact everywhere."""
    import sklearn
    from helpers.stores import edit_config, reseal

    model = _small_pipeline()
    path = tmp_path / "model"
    treeshard.save(model, str(path))
    edit_config(path, lambda r: r["versions"].__setitem__("sklearn", saved))
    reseal(str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = treeshard.load(str(path))
    version_warnings = [w.message for w in caught if issubclass(w.category, treeshard.SklearnVersionWarning)]
    assert [(w.saved, w.installed) for w in version_warnings] == ([(saved, sklearn.__version__)] if warns else [])
    X = _array_data()
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_invalid_param_values(tmp_path: Path) -> None:
    """sklearn's own parameter validation runs on load; the Predictor checks the params it reads."""
    from helpers.stores import edit_config, reseal

    path = tmp_path / "model"
    treeshard.save(_small_pipeline(), str(path))
    edit_config(path, lambda r: _scaler(r)["params"].__setitem__("with_mean", "yes"))
    reseal(str(path))
    with pytest.raises(ConfigError, match=rf"^{re_escape(SCALER)}\.params: The 'with_mean' parameter of StandardScaler must be an instance of 'bool'"):
        treeshard.load(str(path))
    with pytest.raises(ConfigError, match=rf"^{re_escape(SCALER)}\.params\.with_mean: 'yes' is not one of \[True, False\]$"):
        treeshard.Predictor(str(path))


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


# --------------------------------------------------------------------------- info
def test_info_carries_the_structure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from treeshard.cli import main

    path = str(tmp_path / "model.zip")
    treeshard.save(_small_pipeline(), path, metadata={"dataset": "toy"})
    with treeshard.open(path) as handle:
        info = handle.info
    assert info.estimator == "Pipeline"
    assert info.ensembles == [{"estimator": "RandomForestClassifier", "group": "models/0", "n_trees": 2, "n_nodes": info.ensembles[0]["n_nodes"], "n_features": 6}]
    ct = info.structure["steps"][0]["step"]
    assert ct["transformers"] == [
        {"name": "num", "transformer": {"estimator": "StandardScaler", "n_features_in": 2}, "columns": [0, 1]},
        {"name": "cat", "transformer": {"estimator": "OneHotEncoder", "n_features_in": 1}, "columns": [2]},
        {"name": "remainder", "transformer": "drop", "columns": [3]},
    ]
    assert ct["remainder"] == "drop"
    assert info.structure["steps"][1] == {"name": "rf", "step": info.ensembles[0]}
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "pipeline        Pipeline" in out
    assert "      - num on [0, 1]:\n          StandardScaler (2 features in)" in out
    assert "RandomForestClassifier (2 trees" in out and "6 features) [models/0]" in out
    assert main(["info", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["structure"] == info.structure and data["metadata"] == {"dataset": "toy"}


# --------------------------------------------------------------------------- skops fallback
def _with_pca() -> Any:
    from sklearn.decomposition import PCA

    X = _array_data()
    pre = ColumnTransformer([("pca", PCA(n_components=1), [1, 3]), ("imputed", SimpleImputer(), [0])])
    return Pipeline([("pre", pre), ("rf", RandomForestClassifier(n_estimators=3, random_state=0))]).fit(X, X[:, 1] > 0), X


def test_skops_fallback_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    from treeshard.pipeline.skops_step import SkopsFallbackWarning

    model, X = _with_pca()
    path = str(tmp_path / "model.zip")
    with pytest.warns(SkopsFallbackWarning, match=r"^pipeline\.params\.steps\[0\]\[1\]\.params\.transformers\[0\]\[1\]: PCA has no treeshard schema, so it is stored with skops"):
        treeshard.save(model, path)
    loaded = treeshard.load(path)
    assert_same_outputs(model, loaded, X, X[:, 1] > 0)
    with treeshard.open(path) as handle:
        assert [s["estimator"] for s in handle.info.skops] == ["PCA", "PCA"]  # the template and the fitted one
    with pytest.raises(UnsupportedEstimatorError, match=r"PCA is stored with skops, which needs scikit-learn: the Predictor refuses a pipeline with a skops step"):
        treeshard.Predictor(path)


def test_skops_step_loads_under_the_same_minor_version_only(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    import sklearn
    from helpers.stores import edit_config, reseal

    model, _ = _with_pca()
    path = tmp_path / "model"
    with pytest.warns(UserWarning):
        treeshard.save(model, str(path))

    def older(record: dict) -> None:
        step = _ct(record)["params"]["transformers"]["list"][0]["tuple"][1]["node"]
        step["sklearn"] = "1.2.2"

    edit_config(path, older)
    reseal(str(path))
    expected = (
        rf"^{re_escape(STEP0)}\.params\.transformers\[0\]\[1\]: sklearn\.decomposition\._pca\.PCA was stored with skops "
        rf"under scikit-learn 1\.2\.2; it loads under scikit-learn 1\.2\.x only \(installed: {re_escape(sklearn.__version__)}\)$"
    )
    with pytest.raises(UnsupportedEstimatorError, match=expected):
        treeshard.load(str(path))


class _Custom(StandardScaler):
    """Not an allow-listed class, and not a type skops trusts."""


def test_untrusted_steps_are_refused_at_save(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    X = _array_data()
    model = Pipeline([("custom", _Custom()), ("tree", DecisionTreeClassifier(random_state=0))]).fit(np.nan_to_num(X), X[:, 1] > 0)
    with pytest.raises(UnsupportedEstimatorError, match=r"^pipeline\.params\.steps\[0\]\[1\]: skops does not trust \['test_pipeline\._Custom'\]"):
        treeshard.save(model, str(tmp_path / "model"))
    custom = Pipeline([("log", FunctionTransformer(func=lambda x: x + 1)), ("tree", DecisionTreeClassifier(random_state=0))]).fit(X, X[:, 1] > 0)
    with pytest.raises(UnsupportedEstimatorError, match=r"^pipeline\.params\.steps\[0\]\[1\]\.params\.func: the function 'test_untrusted_steps_are_refused_at_save\.<locals>\.<lambda>' cannot be stored; allowed: numpy\.log1p"):
        treeshard.save(custom, str(tmp_path / "other"))
    # An allow-listed function in the wrong place: a score function is no transform.
    from sklearn.feature_selection import chi2

    scored = Pipeline([("log", FunctionTransformer(func=chi2)), ("tree", DecisionTreeClassifier(random_state=0))])
    scored.steps[0][1].fit(X)  # fit does not call func
    scored.steps[1][1].fit(np.nan_to_num(X), X[:, 1] > 0)
    with pytest.raises(UnsupportedEstimatorError) as info:
        treeshard.save(scored, str(tmp_path / "scored"))
    assert str(info.value).startswith(
        "pipeline.params.steps[0][1].params.func: the function 'sklearn.feature_selection.chi2' cannot be stored here; allowed: numpy.log1p, numpy.expm1, "
    )
    assert not (tmp_path / "scored").exists()


def test_a_pipeline_load_would_refuse_is_refused_at_save(tmp_path: Path) -> None:
    """Numbers among object categories (an object array's float column) have no schema: refused at save, not at load."""
    X = np.empty((40, 2), dtype=object)
    X[:, 0] = np.arange(40) % 3 * 1.5
    X[:, 1] = np.array(["a", "b"], dtype=object)[np.arange(40) % 2]
    model = Pipeline([("encode", OneHotEncoder(handle_unknown="ignore")), ("tree", DecisionTreeClassifier(random_state=0))]).fit(X, np.arange(40) % 2)
    with pytest.raises(UnsupportedEstimatorError) as info:
        treeshard.save(model, str(tmp_path / "model"))
    assert str(info.value) == (
        "cannot save this Pipeline: a load would refuse it (pipeline.params.steps[0][1].fitted.categories_[0]: "
        "object categories are strings, None or NaN)"
    )
    assert not (tmp_path / "model").exists()


# --------------------------------------------------------------------------- loading options
def test_ensembles_load_lazily_partially_and_verified(tmp_path: Path) -> None:
    from treeshard.errors import IntegrityError

    model = _small_pipeline()
    X = _array_data(seed=4)
    path = tmp_path / "model"
    treeshard.save(model, str(path))
    lazy = treeshard.load(str(path))
    assert type(lazy.steps[1][1].estimators_).__name__ == "StoredEstimators"
    assert np.array_equal(lazy.predict_proba(X), model.predict_proba(X))
    eager = treeshard.load(str(path), lazy=False, verify=True)
    assert type(eager.steps[1][1].estimators_) is list
    assert np.array_equal(eager.predict_proba(X), model.predict_proba(X))
    partial = treeshard.load(str(path), estimators=1)
    assert len(partial.steps[1][1].estimators_) == 1
    expected = model.steps[1][1].estimators_[0].predict_proba(model[:-1].transform(X))
    assert np.array_equal(partial.predict_proba(X), expected)
    chunk = path / "models" / "0" / "nodes" / "threshold" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"models/0/nodes/threshold"):
        treeshard.load(str(path), verify=True)
    with pytest.raises(IntegrityError, match=r"models/0/nodes/threshold"):
        treeshard.load(str(path), lazy=False)


def test_loaded_pipeline_pickles_with_its_trees(tmp_path: Path) -> None:
    """A lazy forest inside a pipeline pickles its trees by value (a store reference would reopen the pipeline)."""
    import pickle

    model = _small_pipeline()
    X = _array_data(seed=4)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    loaded = treeshard.load(path)
    again = pickle.loads(pickle.dumps(loaded))
    assert type(again.steps[1][1].estimators_) is list
    assert np.array_equal(again.predict_proba(X), model.predict_proba(X))


def test_several_ensembles_and_a_shared_one(tmp_path: Path) -> None:
    """A prefit SelectFromModel's forest and the final forest are two ensembles; one object met twice is stored once."""
    X = np.nan_to_num(_array_data())
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    select = SelectFromModel(forest, prefit=True, threshold="mean").fit(X, y)
    model = Pipeline([("select", select), ("final", GradientBoostingClassifier(n_estimators=4, random_state=0))]).fit(X, y)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    with treeshard.open(path) as handle:
        assert [e["group"] for e in handle.info.ensembles] == ["models/0", "models/1", "models/2"]  # estimator, estimator_, final
    loaded = treeshard.load(path)
    assert_same_outputs(model, loaded, X, y)
    with pytest.raises(TypeError, match=r"^estimators= selects trees of one ensemble; this pipeline holds 3$"):
        treeshard.load(path, estimators=1)

    select.estimator_ = select.estimator  # the same object twice
    shared = str(tmp_path / "shared.zip")
    treeshard.save(model, shared)
    with treeshard.open(shared) as handle:
        assert [e["group"] for e in handle.info.ensembles] == ["models/0", "models/1"]
    again = treeshard.load(shared)
    assert again.steps[0][1].estimator_ is again.steps[0][1].estimator
    assert_same_outputs(model, again, X, y)
    for stored in (path, shared):
        predictor = treeshard.Predictor(stored)
        assert np.array_equal(predictor.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("threshold", [None, "median", "1.25*mean", 0.02])
@pytest.mark.parametrize("estimator", ["gb", "tree", "et"])
def test_predictor_selects_features_as_sklearn(estimator: str, threshold: Any, tmp_path: Path) -> None:
    """The support of a SelectFromModel comes from the stored ensemble's importances, bit for bit."""
    from sklearn.ensemble import ExtraTreesRegressor as ET

    X = np.nan_to_num(_array_data(n=300))
    y = X[:, 0] * 2 + X[:, 3]
    base = {"gb": GradientBoostingRegressor(n_estimators=6, random_state=0), "tree": DecisionTreeClassifier(random_state=0), "et": ET(n_estimators=4, random_state=0)}[estimator]
    target = (y > 0).astype(int) if estimator == "tree" else y
    select = SelectFromModel(base, threshold=threshold, max_features=3 if threshold == "median" else None)
    model = Pipeline([("select", select), ("forest", RandomForestRegressor(n_estimators=3, random_state=0))]).fit(X, target)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    assert np.array_equal(predictor._root.steps[0][1].mask, model.steps[0][1].get_support())
    assert np.array_equal(predictor.predict(X), model.predict(X))


@pytest.mark.parametrize("case", ["infrequent_regression", "imputers_tree"])
def test_predictor_transform_of_a_transformer_store(case: str, tmp_path: Path) -> None:
    model, train, _, query = _fitted(case)
    pre = model.steps[0][1]
    path = str(tmp_path / "pre.zip")
    treeshard.save(pre, path)
    predictor = treeshard.Predictor(path)
    for X in (train, query):
        expected = pre.transform(X)
        expected = expected.toarray() if hasattr(expected, "toarray") else expected
        if pre.sparse_output_:
            with pytest.raises(UnsupportedEstimatorError, match="returns a scipy sparse matrix"):
                predictor.transform(X)
            continue
        got = predictor.transform(X)
        assert got.dtype == expected.dtype and np.array_equal(got, expected, equal_nan=True)
    with pytest.raises(AttributeError, match=r"ColumnTransformer has no predict"):
        predictor.predict(query)


# --------------------------------------------------------------------------- golden store
GOLDEN_PIPELINE = Path(__file__).resolve().parent / "golden" / "pipelines" / "v1"


@pytest.mark.parametrize("engine", ["lazy", "eager", "predictor"])
def test_golden_pipeline_store_predicts_as_recorded(engine: str) -> None:
    """The pipeline store written once by tests/golden/make_pipeline_golden.py reads forever (never rewrite it)."""
    expected = np.load(GOLDEN_PIPELINE / "pipe.npz")
    path = str(GOLDEN_PIPELINE / "pipe")
    if engine == "predictor":
        model = treeshard.Predictor(path)
        assert np.array_equal(model._root.steps[0][1].transform(expected["X"]), expected["transform"], equal_nan=True)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", treeshard.SklearnVersionWarning)
            model = treeshard.load(path, lazy=engine == "lazy")
        assert np.array_equal(model[:-1].transform(expected["X"]), expected["transform"], equal_nan=True)
    assert np.array_equal(model.predict(expected["X"]), expected["predict"])
    assert np.array_equal(model.predict_proba(expected["X"]), expected["predict_proba"])


def test_composites_nested_four_deep_round_trip(tmp_path: Path) -> None:
    """Pipeline > ColumnTransformer > Pipeline > FeatureUnion > KBinsDiscretizer: the record nests 38 levels."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int)
    union = FeatureUnion([("bins", KBinsDiscretizer(n_bins=3, encode="onehot-dense", strategy="uniform")), ("scale", StandardScaler())])
    columns = ColumnTransformer([("inner", Pipeline([("union", union)]), [0, 1]), ("rest", StandardScaler(), [2, 3])])
    model = Pipeline([("columns", columns), ("forest", RandomForestClassifier(5, random_state=0))]).fit(X, y)
    treeshard.save(model, tmp_path / "deep.zip")
    loaded = treeshard.load(tmp_path / "deep.zip")
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert np.array_equal(loaded[:-1].transform(X), model[:-1].transform(X))
    assert np.array_equal(treeshard.Predictor(tmp_path / "deep.zip").predict_proba(X), model.predict_proba(X))
