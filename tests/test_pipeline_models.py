"""Pipelines whose ensemble is a HistGradientBoosting model or an IsolationForest (issue 15).

Round trips over every store kind, the sklearn-free Predictor, lazy and
partial loads of the ensemble inside, malformed records of the new paths.
Outputs that go through exp/log are compared with sklearn's, recomputed in
this process.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor, IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

import treeshard
from helpers.compare import PIPELINE_METHODS, assert_same_outputs
from helpers.stores import make_store
from treeshard.errors import ConfigError, UnsupportedEstimatorError

N = 300
NUMERIC = ["x0", "x1", "x2"]
METHODS = PIPELINE_METHODS


def frame(seed: int = 0, *, n: int = N, unseen: bool = False) -> pd.DataFrame:
    """Floats with NaN, a string column with missing values, a pandas categorical, ints."""
    rng = np.random.RandomState(seed)
    color = np.array(["red", "green", "blue", "teal"], dtype=object)[rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])]
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
            "color": pd.Series(color, dtype=object),
            "size": pd.Categorical(size, categories=["S", "M", "L", "XL"] if unseen else ["S", "M", "L"]),
            "count": rng.randint(0, 20, size=n),
        }
    )
    df.loc[rng.rand(n) < 0.08, "x0"] = np.nan
    return df


def target(df: pd.DataFrame, task: str) -> np.ndarray | None:
    score = np.nan_to_num(df["x0"].to_numpy()) + 0.2 * df["x1"].to_numpy() + (df["color"] == "red").to_numpy() - (df["size"] == "S").to_numpy()
    if task == "multiclass":
        return np.digitize(score, [-0.3, 0.6])
    if task == "binary":
        return np.array(["no", "yes"], dtype=object)[(score > 0.2).astype(int)]
    if task == "positive":
        return np.abs(score) + df["x2"].to_numpy()
    if task == "regression":
        return score * 3.0 + df["x2"].to_numpy()
    return None  # outlier detection


def _ordinal() -> OrdinalEncoder:
    return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)


def _hgb_onehot() -> Any:
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["color", "size"]),
        ]
    )
    return Pipeline([("pre", pre), ("hgb", HistGradientBoostingClassifier(max_iter=12, max_leaf_nodes=8, random_state=0))])


def _hgb_ordinal_by_index() -> Any:
    pre = ColumnTransformer([("cat", _ordinal(), ["color", "size"])], remainder="passthrough")
    return Pipeline([("pre", pre), ("hgb", HistGradientBoostingClassifier(max_iter=10, categorical_features=[0, 1], random_state=0))])


def _hgb_pandas_by_name() -> Any:
    """sklearn's own example of native categorical support: the ColumnTransformer outputs pandas,
    the booster names its categorical columns."""
    pre = ColumnTransformer([("cat", _ordinal(), ["color", "size"])], remainder="passthrough", verbose_feature_names_out=False)
    hgb = HistGradientBoostingRegressor(max_iter=10, categorical_features=["color", "size"], random_state=0)
    return Pipeline([("pre", pre), ("hgb", hgb)]).set_output(transform="pandas")


def _hgb_passthrough_from_dtype() -> Any:
    """A pandas categorical passed through a pandas-output ColumnTransformer: the booster's own encoder sees it."""
    pre = ColumnTransformer([("num", StandardScaler(), NUMERIC)], remainder="passthrough", verbose_feature_names_out=False)
    return Pipeline([("pre", pre), ("hgb", HistGradientBoostingClassifier(max_iter=8, categorical_features="from_dtype", random_state=0))]).set_output(
        transform="pandas"
    )


def _hgb_from_dtype_alone() -> Any:
    return Pipeline([("hgb", HistGradientBoostingClassifier(max_iter=8, categorical_features="from_dtype", random_state=0))])


def _hgb_poisson() -> Any:
    return Pipeline([("impute", SimpleImputer()), ("hgb", HistGradientBoostingRegressor(loss="poisson", max_iter=10, random_state=0))])


def _hgb_target_union() -> Any:
    union = FeatureUnion([("std", StandardScaler()), ("minmax", MinMaxScaler())])
    inner = Pipeline([("impute", SimpleImputer()), ("union", union), ("hgb", HistGradientBoostingRegressor(max_iter=10, random_state=0))])
    return TransformedTargetRegressor(regressor=inner, func=np.log1p, inverse_func=np.expm1)


def _iforest_onehot() -> Any:
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color", "size"]),  # sparse output into the forest
        ]
    )
    return Pipeline([("pre", pre), ("iforest", IsolationForest(n_estimators=12, contamination=0.1, random_state=0))])


def _iforest_union() -> Any:
    union = FeatureUnion([("std", StandardScaler()), ("minmax", MinMaxScaler())])
    forest = IsolationForest(n_estimators=9, max_features=0.5, bootstrap=True, max_samples=0.6, random_state=0)
    return Pipeline([("impute", SimpleImputer()), ("union", union), ("iforest", forest)])


#: case -> (builder, task, columns it is fitted on: None for all).
CASES: dict[str, tuple[Any, str, list[str] | None]] = {
    "hgb_onehot": (_hgb_onehot, "multiclass", None),
    "hgb_ordinal_by_index": (_hgb_ordinal_by_index, "binary", None),
    "hgb_pandas_by_name": (_hgb_pandas_by_name, "regression", None),
    "hgb_passthrough_from_dtype": (_hgb_passthrough_from_dtype, "multiclass", [*NUMERIC, "size", "count"]),
    "hgb_from_dtype_alone": (_hgb_from_dtype_alone, "binary", [*NUMERIC, "size"]),
    "hgb_poisson": (_hgb_poisson, "positive", [*NUMERIC, "count"]),
    "hgb_target_union": (_hgb_target_union, "positive", NUMERIC),
    "iforest_onehot": (_iforest_onehot, "outliers", None),
    "iforest_union": (_iforest_union, "outliers", NUMERIC),
}


def fitted(case: str) -> tuple[Any, pd.DataFrame, Any, pd.DataFrame, Any]:
    """``(model, train, y, query, y_query)``; the query holds categories never seen in fit."""
    build, task, columns = CASES[case]
    train, query = frame(0), frame(7, n=120, unseen=True)
    y, y_query = target(train, task), target(query, task)
    if columns is not None:
        train, query = train[columns], query[columns]
    return build().fit(train, y), train, y, query, y_query


def _final(model: Any) -> Any:
    model = model.regressor_ if isinstance(model, TransformedTargetRegressor) else model
    return model.steps[-1][1]


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", ["directory", "zip", "memory"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip(case: str, kind: str, tmp_path: Path) -> None:
    model, train, y, query, y_query = fitted(case)
    store = make_store(kind, tmp_path)
    treeshard.save(model, store)
    loaded = treeshard.load(store)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    assert type(_final(loaded)) is type(_final(model))
    assert_same_outputs(model, loaded, train, y)
    assert_same_outputs(model, loaded, query, y_query)
    pipeline = loaded.regressor_ if isinstance(loaded, TransformedTargetRegressor) else loaded
    original = model.regressor_ if isinstance(model, TransformedTargetRegressor) else model
    for k in range(1, len(original.steps)):  # every prefix is a transformer of its own
        assert_same_outputs(original[:k], pipeline[:k], query, None)


@pytest.mark.parametrize("case", sorted(CASES))
def test_stored_as_node_columns_under_the_step_group(case: str, tmp_path: Path) -> None:
    model, *_ = fitted(case)
    path = tmp_path / "model"
    treeshard.save(model, str(path))
    with treeshard.open(str(path)) as handle:
        (ensemble,) = handle.info.ensembles
        assert ensemble["group"] == "models/0" and ensemble["estimator"] == type(_final(model)).__name__
        assert ensemble["n_features"] == _final(model).n_features_in_  # an IsolationForest's trees may see fewer
        assert handle.info.skops == []
    assert (path / "models" / "0" / "nodes" / "tree_ptr" / "zarr.json").is_file()
    assert not (path / "nodes").exists()
    assert zarr.open_array(str(path), path="models/0/nodes/tree_ptr", mode="r")[0] == 0  # plain zarr reads it


# --------------------------------------------------------------------------- the Predictor
@pytest.mark.parametrize("case", sorted(CASES))
def test_predictor_serves_the_pipeline_as_sklearn(case: str, tmp_path: Path) -> None:
    model, train, y, query, y_query = fitted(case)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    assert isinstance(predictor, treeshard.Predictor)
    assert [hasattr(predictor, m) for m in METHODS] == [hasattr(model, m) for m in METHODS]
    for X in (train, query, query.iloc[:1]):
        for method in METHODS:
            if not hasattr(model, method):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no spurious feature-name warning either
                got = getattr(predictor, method)(X)
            expected = getattr(model, method)(X)
            assert got.dtype == expected.dtype, method
            assert np.array_equal(got, expected), method
    if hasattr(model, "classes_"):
        assert np.array_equal(predictor.classes_, model.classes_)


def _request(query: pd.DataFrame) -> dict[str, list[Any]]:
    """The rows as a JSON request would bring them: a mapping of column -> values, null for missing."""
    return {name: [None if isinstance(v, float) and v != v else v for v in query[name].astype(object).tolist()] for name in query.columns}


@pytest.mark.parametrize("case", sorted(CASES))
def test_predictor_serves_json_requests_as_sklearn_the_dataframe(case: str, tmp_path: Path) -> None:
    model, _, _, query, _ = fitted(case)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    for method in METHODS:
        if hasattr(model, method):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got = getattr(predictor, method)(_request(query))
            assert np.array_equal(got, getattr(model, method)(query)), method


def test_predictor_on_arrays(tmp_path: Path) -> None:
    X = frame(0)[NUMERIC].to_numpy()
    model = Pipeline([("impute", SimpleImputer()), ("iforest", IsolationForest(n_estimators=7, max_features=2, random_state=1))]).fit(X)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    Q = frame(3, n=50)[NUMERIC].to_numpy()
    for method in ("predict", "decision_function", "score_samples"):
        assert np.array_equal(getattr(predictor, method)(Q), getattr(model, method)(Q)), method
    with pytest.raises(AttributeError):
        predictor.predict_proba(Q)


def test_predictor_serves_pandas_output_into_any_ensemble(tmp_path: Path) -> None:
    """The step feeding the ensemble may output pandas (forests too): same values, no name warning."""
    from sklearn.ensemble import RandomForestClassifier

    train, query = frame(0)[NUMERIC], frame(5, n=60)[NUMERIC]
    inner = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    model = Pipeline([("pre", inner), ("forest", RandomForestClassifier(n_estimators=5, random_state=0))]).set_output(transform="pandas")
    model.fit(train, target(frame(0), "multiclass"))
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    predictor = treeshard.Predictor(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = predictor.predict_proba(query)
    assert np.array_equal(got, model.predict_proba(query))


def test_predictor_refuses_a_pandas_step_that_does_not_feed_the_ensemble(tmp_path: Path) -> None:
    X = frame(0)[NUMERIC]
    model = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("hgb", HistGradientBoostingRegressor(max_iter=3))])
    model.set_output(transform="pandas").fit(X, target(frame(0), "regression"))
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    message = r"^pipeline\.params\.steps\[0\]\[1\]: the Predictor does not serve set_output containers \(\{'transform': 'pandas'\}\)$"
    with pytest.raises(UnsupportedEstimatorError, match=message):
        treeshard.Predictor(path)
    assert_same_outputs(model, treeshard.load(path), X, None)


# --------------------------------------------------------------------------- loading options
def test_isolation_forest_loads_lazily_and_partially(tmp_path: Path) -> None:
    model, train, _, query, _ = fitted("iforest_union")
    path = str(tmp_path / "model")
    treeshard.save(model, path)
    lazy = treeshard.load(path)
    assert type(_final(lazy).estimators_).__name__ == "StoredEstimators"
    assert_same_outputs(model, lazy, query, None)
    eager = treeshard.load(path, lazy=False, verify=True)
    assert type(_final(eager).estimators_) is list
    assert_same_outputs(model, eager, query, None)
    budgeted = treeshard.load(path, max_memory=2_000)  # streamed through a budget smaller than the forest
    assert_same_outputs(model, budgeted, query, None)
    for lazy_load in (True, False):
        partial = treeshard.load(path, estimators=[4, 0, 7], lazy=lazy_load)
        expected = copy.deepcopy(model)
        forest = _final(expected)
        forest.estimators_ = [forest.estimators_[i] for i in (4, 0, 7)]
        forest.estimators_features_ = [forest.estimators_features_[i] for i in (4, 0, 7)]
        forest._decision_path_lengths = tuple(forest._decision_path_lengths[i] for i in (4, 0, 7))
        forest._average_path_length_per_tree = tuple(forest._average_path_length_per_tree[i] for i in (4, 0, 7))
        for method in ("score_samples", "decision_function", "predict"):
            assert np.array_equal(getattr(partial, method)(query), getattr(expected, method)(query)), method


def test_histogram_boosting_loads_a_prefix_of_its_iterations(tmp_path: Path) -> None:
    model, train, _, query, _ = fitted("hgb_onehot")
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    Xt = model[:-1].transform(query)
    staged = list(_final(model).staged_predict_proba(Xt))
    for k in (1, 5):
        partial = treeshard.load(path, estimators=k)
        assert _final(partial).n_iter_ == k
        assert np.array_equal(partial.predict_proba(query), staged[k - 1])
    with pytest.raises(ValueError, match=r"^estimators=13: choose between 1 and 12 stages"):
        treeshard.load(path, estimators=13)
    with pytest.raises(treeshard.MemoryBudgetError, match=r"^the selected trees need [\d,]+ bytes in memory, over max_memory=1,000 "):
        treeshard.load(path, max_memory=1_000)


def test_a_corrupt_chunk_of_the_step_is_named(tmp_path: Path) -> None:
    from treeshard.errors import IntegrityError

    model, *_ = fitted("hgb_ordinal_by_index")
    path = tmp_path / "model"
    treeshard.save(model, str(path))
    chunk = path / "models" / "0" / "nodes" / "value" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[12] ^= 0xFF
    chunk.write_bytes(bytes(data))
    for load in (lambda: treeshard.load(str(path), verify=True), lambda: treeshard.load(str(path)), lambda: treeshard.Predictor(str(path))):
        with pytest.raises(IntegrityError, match=r"models/0/nodes/value"):
            load()


def test_loaded_pipeline_pickles(tmp_path: Path) -> None:
    import pickle

    for case in ("hgb_ordinal_by_index", "iforest_union"):
        model, _, _, query, y_query = fitted(case)
        path = str(tmp_path / f"{case}.zip")
        treeshard.save(model, path)
        assert_same_outputs(model, pickle.loads(pickle.dumps(treeshard.load(path))), query, y_query)


def test_repository_versions_of_hgb_and_isolation_pipelines(tmp_path: Path) -> None:
    from sklearn.base import clone

    repo = treeshard.Repository(str(tmp_path / "repo"))
    hgb, _, _, query, _ = fitted("hgb_onehot")
    forest, train, _, forest_query, _ = fitted("iforest_union")
    grown = clone(forest).set_params(iforest__n_estimators=12).fit(train)
    assert [repo.save(model) for model in (hgb, forest, grown)] == ["v1", "v2", "v3"]
    assert [repo.info(v).model["estimator_type"] for v in ("v1", "v2")] == ["classifier", "outlier_detector"]
    assert np.array_equal(repo.load("v1").predict_proba(query), hgb.predict_proba(query))
    assert np.array_equal(repo.predictor("v1").predict_proba(query), hgb.predict_proba(query))
    assert np.array_equal(repo.predictor("v3").score_samples(forest_query), grown.score_samples(forest_query))
    # the same random_state draws the same first 9 trees
    assert repo.diff("v2", "v3")["trees"] == {"from": 9, "to": 12, "added": 3, "removed": 0, "changed": 0, "unchanged": 9}
    assert repo.diff("v1", "v1")["trees"]["unchanged"] == 36  # histogram boosting's own columns and bitsets


# --------------------------------------------------------------------------- malformed records
def _step(record: dict) -> dict:
    """The ensemble node of a two-step pipeline record."""
    return record["pipeline"]["params"]["steps"]["list"][-1]["tuple"][1]["node"]


HGB_STEP = "pipeline.params.steps[1][1]"
MALFORMED = {
    "hgb id of another family": (
        "hgb_ordinal_by_index",
        lambda r: _step(r)["config"].__setitem__("estimator", "HistGradientBoostingRegressor"),
        ConfigError,
        (
            "config.params: unknown parameter(s) ['class_weight'] for HistGradientBoostingRegressor",
            "config.fitted._loss: 'HalfBinomialLoss', but HistGradientBoostingRegressor(loss='log_loss') makes None",
        ),
    ),
    "hgb without its baseline": (
        "hgb_ordinal_by_index",
        lambda r: _step(r)["config"]["fitted"].pop("_baseline_prediction"),
        ConfigError,
        "config.fitted: missing required key '_baseline_prediction'",
    ),
    "hgb loss of another model": (
        "hgb_ordinal_by_index",
        lambda r: _step(r)["config"]["fitted"]["_loss"].__setitem__("name", "HalfSquaredError"),
        ConfigError,
        "config.fitted._loss: 'HalfSquaredError', but HistGradientBoostingClassifier(loss='log_loss') makes HalfBinomialLoss",
    ),
    "iforest offset": (
        "iforest_union",
        lambda r: _step(r)["config"]["fitted"].__setitem__("offset_", "high"),
        ConfigError,
        "config.fitted.offset_: expected a finite float, got str high",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_ensemble_records(case: str, tmp_path: Path) -> None:
    from helpers.stores import edit_config, reseal

    model_case, edit, error, message = MALFORMED[case]
    path = tmp_path / "model"
    treeshard.save(fitted(model_case)[0], str(path))
    edit_config(path, edit)
    reseal(str(path))
    messages = message if isinstance(message, tuple) else (message, message)
    for open_model, expected in zip((treeshard.load, treeshard.Predictor), messages):
        with pytest.raises(error) as info:
            open_model(str(path))
        assert type(info.value) is error
        assert str(info.value) == expected, open_model


def test_a_missing_fitted_array_of_the_step_is_named(tmp_path: Path) -> None:
    import shutil

    from treeshard.errors import IntegrityError

    path = tmp_path / "model"
    treeshard.save(fitted("hgb_ordinal_by_index")[0], str(path))
    shutil.rmtree(path / "models" / "0" / "fitted" / "bin_thresholds" / "c")
    message = r"^models/0/fitted/bin_thresholds: shard models/0/fitted/bin_thresholds/c/0 is missing \(treeshard stores every chunk\)$"
    for open_model in (treeshard.load, treeshard.Predictor):
        with pytest.raises(IntegrityError, match=message):
            open_model(str(path))


# --------------------------------------------------------------------------- golden store
GOLDEN = Path(__file__).resolve().parent / "golden" / "pipelines" / "v1"


@pytest.mark.parametrize("engine", ["eager", "predictor"])
def test_golden_histogram_boosting_pipeline_predicts_as_recorded(engine: str) -> None:
    """Written once by ``tests/golden/make_pipeline_golden.py hgb`` (never rewrite it); its
    ``predict`` is sums of stored values, the same on every machine."""
    expected = np.load(GOLDEN / "hgb.npz")
    path = str(GOLDEN / "hgb")
    if engine == "predictor":
        model = treeshard.Predictor(path)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", treeshard.SklearnVersionWarning)
            model = treeshard.load(path)
        assert np.array_equal(model[:-1].transform(expected["X"]), expected["transform"], equal_nan=True)
    assert np.array_equal(model.predict(expected["X"]), expected["predict"])


def test_max_memory_covers_every_ensemble_of_a_pipeline(tmp_path: Path) -> None:
    """A budget is the pipeline's, shared by its ensembles in proportion to their trees: within
    it, each loads whole; under it, each streams within its share; either way, results exact."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.feature_selection import SelectFromModel
    from sklearn.pipeline import make_pipeline

    rng = np.random.RandomState(0)
    X = rng.normal(size=(1500, 8))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = make_pipeline(SelectFromModel(ExtraTreesClassifier(n_estimators=20, random_state=0)), RandomForestClassifier(n_estimators=10, random_state=0)).fit(X, y)
    path = str(tmp_path / "model.zip")
    treeshard.save(model, path)
    with treeshard.open(path) as handle:
        needs = []
        for node in handle.pipeline.ensembles:
            with type(handle).of_reader(path, handle._reader.for_model(node.group, node.config)) as step:
                needs.append(step.needed_bytes())
    total = sum(needs)
    assert min(needs) < total - 1 and max(needs) < total - 1
    with treeshard.open(path) as handle:
        assert handle.needed_bytes() == total
        with pytest.raises(TypeError, match=r"^estimators= selects trees of one ensemble; this pipeline holds 2$"):
            handle.needed_bytes(estimators=3)
    for budget, streamed in ((total, False), (total - 1, True), (2 * total, False)):
        loaded = treeshard.load(path, max_memory=budget)
        forests = (loaded[0].estimator_, loaded[-1])
        shares = [budget * need // total for need in needs]
        assert sum(shares) <= budget
        for forest, share, need in zip(forests, shares, needs, strict=True):
            lazy = forest.estimators_
            assert int(lazy.source.tree_bytes(lazy.indices).sum()) == need
            if streamed:
                assert (lazy.cache.capacity_bytes, lazy.engine.budget) == (share // 4, share // 2)
            else:
                assert lazy.cache.capacity_bytes is None and lazy.engine.budget == share - need - (share - need) // 8
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
