"""HistGradientBoosting{Classifier,Regressor}: round trips, partial loads, info, Predictor.

Every case is saved and loaded through a directory, a zip file and a memory
store; the loaded model has the same state (``vars()``, recursively), its
node records are bitwise equal, and every method (``predict``,
``predict_proba``, ``decision_function``, the ``staged_*`` ones, ``score``,
``n_iter_``) returns exactly the original's outputs. The sklearn-free
:class:`treeshard.Predictor` returns them too.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr
from helpers.compare import assert_bitwise, assert_equal_outputs, assert_same_state
from helpers.stores import STORE_KINDS, edit_config, reseal, round_trip
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

import treeshard
from treeshard import ConfigError, UnsupportedEstimatorError

pytest_plugins = ["helpers.servers"]  # the HTTP server fixture

N = 400
METHODS = ("predict", "predict_proba", "decision_function")
STAGED = ("staged_predict", "staged_predict_proba", "staged_decision_function")


# --------------------------------------------------------------------------- data
def numeric(seed: int = 0, *, nan: bool = True) -> np.ndarray:
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(N, 4))
    if nan:
        X[::9, 1] = np.nan
        X[::13, 3] = np.nan
    return X


def labels(X: np.ndarray, n_classes: int) -> np.ndarray:
    score = np.nan_to_num(X[:, 0] + 0.5 * X[:, 1]) + 0.3 * np.random.RandomState(1).normal(size=len(X))
    return np.digitize(score, np.linspace(-1, 1, n_classes + 1)[1:-1])


def positive_target(X: np.ndarray) -> np.ndarray:
    return np.exp(0.5 * np.nan_to_num(X[:, 0])) + 0.1


def int_codes() -> tuple[np.ndarray, np.ndarray]:
    """Numeric X with integer category codes in columns 1 and 3; queries with unseen and negative codes, NaN."""
    rng = np.random.RandomState(2)
    X = numeric(2, nan=False)
    X[:, 1] = rng.randint(0, 6, N)
    X[:, 3] = rng.randint(0, 40, N)
    X[::11, 1] = np.nan
    Q = X.copy()
    Q[::5, 1] = 9  # unseen
    Q[::7, 3] = -1  # negative: treated as missing
    Q[::17, 3] = 300  # beyond 255
    Q[::19, 1] = 2.5  # not an integer
    return X, Q


def frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """pandas categoricals (strings), an object column of strings and numbers; queries with unseen and NaN."""
    rng = np.random.RandomState(3)
    X = pd.DataFrame(
        {
            "x0": rng.normal(size=N),
            "color": pd.Categorical(rng.choice(["red", "green", "blue", "teal"], N)),
            "x2": rng.normal(size=N),
            "size": pd.Categorical(rng.choice(["S", "M", "L"], N)),
        }
    )
    X.loc[::8, "x0"] = np.nan
    X.loc[::10, "color"] = np.nan
    Q = X.copy()
    Q["color"] = Q["color"].cat.add_categories(["mauve"])
    Q.loc[::3, "color"] = "mauve"  # unseen
    Q.loc[1::4, "size"] = np.nan  # NaN never seen at fit
    return X, Q


def string_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    X, Q = frame()
    X["size"] = X["size"].astype(object)
    Q["size"] = Q["size"].astype(object)
    Q.loc[::6, "size"] = "XL"
    return X, Q


def frame_target(X: pd.DataFrame, n_classes: int) -> np.ndarray:
    score = np.nan_to_num(X["x0"].to_numpy()) + (X["color"] == "red").to_numpy() - (X["size"] == "S").to_numpy()
    return np.digitize(score, np.linspace(-1, 1, n_classes + 1)[1:-1])


Case = Callable[[], tuple[Any, Any, Any, Any]]  # -> (fitted model, X, y, queries)


def _classifier(n_classes: int, **params: Any) -> Case:
    def make() -> tuple[Any, Any, Any, Any]:
        X = numeric()
        y = labels(X, n_classes)
        return HistGradientBoostingClassifier(max_iter=12, random_state=0, **params).fit(X, y), X, y, X

    return make


def _string_labels() -> tuple[Any, Any, Any, Any]:
    X = numeric()
    y = np.array(["cat", "dog", "emu"])[labels(X, 3)]
    return HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y), X, y, X


def _regressor(loss: str, **params: Any) -> Case:
    def make() -> tuple[Any, Any, Any, Any]:
        X = numeric()
        y = positive_target(X)
        return HistGradientBoostingRegressor(loss=loss, max_iter=12, random_state=0, **params).fit(X, y), X, y, X

    return make


def _int_codes(classifier: bool) -> Case:
    def make() -> tuple[Any, Any, Any, Any]:
        X, Q = int_codes()
        if classifier:
            y = labels(np.column_stack([X[:, 1] - 2.5, X[:, 0]]), 3)
            model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[1, 3], random_state=0).fit(X, y)
        else:
            y = np.nan_to_num(X[:, 1]) + X[:, 0]
            model = HistGradientBoostingRegressor(max_iter=10, categorical_features=[False, True, False, True], random_state=0).fit(X, y)
        return model, X, y, Q

    return make


def _pandas(n_classes: int, *, strings: bool = False, **params: Any) -> Case:
    def make() -> tuple[Any, Any, Any, Any]:
        X, Q = string_frame() if strings else frame()
        y = frame_target(X, n_classes)
        extra = {"categorical_features": ["color", "size"]} if strings else {}
        return HistGradientBoostingClassifier(max_iter=10, random_state=0, **extra, **params).fit(X, y), X, y, Q

    return make


def _pandas_regressor() -> tuple[Any, Any, Any, Any]:
    X, Q = frame()
    y = np.nan_to_num(X["x0"].to_numpy()) + (X["size"] == "L").to_numpy()
    return HistGradientBoostingRegressor(max_iter=10, loss="poisson", random_state=0).fit(X, np.exp(y)), X, np.exp(y), Q


def _early_stopping(scoring: str) -> Case:
    def make() -> tuple[Any, Any, Any, Any]:
        X = numeric()
        y = labels(X, 2)
        model = HistGradientBoostingClassifier(
            max_iter=200, early_stopping=True, n_iter_no_change=3, scoring=scoring, validation_fraction=0.2, random_state=0
        ).fit(X, y)
        assert model.n_iter_ < 200
        return model, X, y, X

    return make


def _sample_weight() -> tuple[Any, Any, Any, Any]:
    X = numeric()
    y = positive_target(X)
    weight = np.random.RandomState(4).uniform(0.5, 2, N)
    return HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(X, y, sample_weight=weight), X, y, X


CASES: dict[str, Case] = {
    "binary": _classifier(2),
    "multiclass": _classifier(3),
    "class_weight": _classifier(3, class_weight="balanced"),
    "class_weight_dict": _classifier(2, class_weight={0: 1.0, 1: 3.0}),
    "string_labels": _string_labels,
    "squared_error": _regressor("squared_error"),
    "absolute_error": _regressor("absolute_error"),
    "gamma": _regressor("gamma"),
    "poisson": _regressor("poisson"),
    "quantile": _regressor("quantile", quantile=0.8),
    "int_codes_classifier": _int_codes(True),
    "int_codes_regressor": _int_codes(False),
    "pandas_categoricals": _pandas(3),
    "pandas_binary": _pandas(2),
    "string_categories": _pandas(3, strings=True),
    "pandas_regressor": _pandas_regressor,
    "monotonic": _regressor("squared_error", monotonic_cst=[1, 0, -1, 0]),
    "interactions": _classifier(3, interaction_cst=[{0, 1}, {2, 3}]),
    "max_features": _classifier(2, max_features=0.5),
    "early_stopping_loss": _early_stopping("loss"),
    "early_stopping_accuracy": _early_stopping("accuracy"),
    "sample_weight": _sample_weight,
}


@pytest.fixture(scope="module")
def fitted() -> dict[str, tuple[Any, Any, Any, Any]]:
    return {}


def get_case(fitted: dict, name: str) -> tuple[Any, Any, Any, Any]:
    if name not in fitted:
        fitted[name] = CASES[name]()
    return fitted[name]


# --------------------------------------------------------------------------- comparisons
def assert_same_records(original: Any, loaded: Any) -> None:
    """Node records and bitsets of every TreePredictor are bitwise equal."""
    assert len(original._predictors) == len(loaded._predictors)
    for i, (a_it, b_it) in enumerate(zip(original._predictors, loaded._predictors, strict=True)):
        assert len(a_it) == len(b_it)
        for k, (a, b) in enumerate(zip(a_it, b_it, strict=True)):
            where = f"_predictors[{i}][{k}]"
            assert a.nodes.dtype == b.nodes.dtype, where
            for name in a.nodes.dtype.names:
                assert_bitwise(a.nodes[name], b.nodes[name], f"{where}.nodes[{name!r}]")
            assert_bitwise(a.raw_left_cat_bitsets, b.raw_left_cat_bitsets, f"{where}.raw_left_cat_bitsets")
            assert_bitwise(a.binned_left_cat_bitsets, b.binned_left_cat_bitsets, f"{where}.binned_left_cat_bitsets")


def assert_same_outputs(original: Any, loaded: Any, X: Any, y: Any) -> None:
    for name in METHODS:
        if hasattr(original, name):
            assert_equal_outputs(getattr(original, name)(X), getattr(loaded, name)(X), name)
        else:
            assert not hasattr(loaded, name), name
    for name in STAGED:
        if hasattr(original, name):
            a, b = list(getattr(original, name)(X)), list(getattr(loaded, name)(X))
            assert len(a) == len(b) == original.n_iter_, name
            for i, (x, z) in enumerate(zip(a, b, strict=True)):
                assert_equal_outputs(x, z, f"{name}[{i}]")
    assert loaded.n_iter_ == original.n_iter_
    assert original.score(X, y) == loaded.score(X, y)


def model_state(model: Any) -> Any:
    """``model`` without the bound ``_raw_predict`` that sklearn's fit leaves in the instance
    after early stopping on a scorer (``_patch_raw_predict`` restores it as an attribute):
    a method of the object itself, not model state."""
    if "_raw_predict" not in vars(model):
        return model
    state = copy.copy(model)
    del state.__dict__["_raw_predict"]
    return state


def assert_round_trip(original: Any, loaded: Any, X: Any, y: Any, Q: Any) -> None:
    assert_same_state(model_state(original), loaded)
    assert_same_records(original, loaded)
    assert_same_outputs(original, loaded, Q, y)
    assert_same_outputs(original, loaded, X, y)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", STORE_KINDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_is_exact(case, kind, fitted, tmp_path):
    model, X, y, Q = get_case(fitted, case)
    loaded = round_trip(model, kind, tmp_path)
    assert type(loaded) is type(model)
    assert_round_trip(model, loaded, X, y, Q)


@pytest.mark.parametrize("case", sorted(CASES))
def test_predictor_equals_sklearn(case, fitted):
    model, X, y, Q = get_case(fitted, case)
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    predictor = treeshard.Predictor(store)
    for data in (Q, X, Q[:1] if isinstance(Q, np.ndarray) else Q.iloc[:1]):
        for name in METHODS:
            if hasattr(model, name):
                assert_equal_outputs(getattr(model, name)(data), getattr(predictor, name)(data), name)
            else:
                with pytest.raises(AttributeError, match=rf"this Predictor \({type(model).__name__}\) has no {name}\(\)"):
                    getattr(predictor, name)(data)
    assert predictor.n_iter_ == model.n_iter_ and predictor.n_features_in_ == model.n_features_in_


def test_predictor_of_a_hist_store_is_a_predictor(fitted):
    from treeshard.predictor.hist import HistPredictor

    model, X, y, Q = get_case(fitted, "multiclass")
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    predictor = treeshard.Predictor(store)
    assert type(predictor) is HistPredictor
    assert isinstance(predictor, treeshard.Predictor) and issubclass(HistPredictor, treeshard.Predictor)
    assert not isinstance(model, treeshard.Predictor)


@pytest.mark.parametrize("case", ["multiclass", "int_codes_classifier", "pandas_categoricals", "quantile"])
def test_compiled_walk_equals_the_numpy_reference_in_one_or_two_threads(case, fitted):
    model, X, y, Q = get_case(fitted, case)
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    predictor = treeshard.Predictor(store)
    Q = np.tile(Q, (5, 1)) if isinstance(Q, np.ndarray) else pd.concat([Q] * 5, ignore_index=True)  # enough rows for two threads
    reference = predictor._raw_numpy(Q)
    for n_jobs in (None, 2):
        predictor.n_jobs = n_jobs
        assert_bitwise(predictor._raw(Q), np.ascontiguousarray(reference), f"raw predictions, n_jobs={n_jobs}")
    raw = model._raw_predict(Q)
    assert_bitwise(np.ascontiguousarray(raw), np.ascontiguousarray(reference), "sklearn's raw predictions")


@pytest.mark.parametrize("case", ["multiclass", "pandas_categoricals", "early_stopping_loss"])
def test_partial_load_takes_the_first_iterations(case, fitted, tmp_path):
    model, X, y, Q = get_case(fitted, case)
    path = tmp_path / "model.zip"
    treeshard.save(model, path)
    for k in (1, model.n_iter_ // 2, model.n_iter_):
        partial = treeshard.load(path, estimators=k)
        assert partial.n_iter_ == k
        staged = list(model.staged_decision_function(Q))[k - 1]
        assert_equal_outputs(staged, partial.decision_function(Q), f"decision_function of {k} iterations")
        assert_equal_outputs(list(model.staged_predict_proba(Q))[k - 1], partial.predict_proba(Q), "predict_proba")
        if len(model.train_score_):
            assert_equal_outputs(model.train_score_[: k + 1], partial.train_score_, "train_score_")
            assert_equal_outputs(model.validation_score_[: k + 1], partial.validation_score_, "validation_score_")
        else:
            assert len(partial.train_score_) == 0 and len(partial.validation_score_) == 0
    with pytest.raises(ValueError, match=rf"estimators={model.n_iter_ + 1}: choose between 1 and {model.n_iter_} stages"):
        treeshard.load(path, estimators=model.n_iter_ + 1)
    with pytest.raises(ValueError, match=r"estimators: gradient boosting loads a prefix of its stages"):
        treeshard.load(path, estimators=[1])


def test_info_describes_the_model(fitted, tmp_path):
    model, *_ = get_case(fitted, "pandas_categoricals")
    path = tmp_path / "model.zip"
    treeshard.save(model, path)
    with treeshard.open(path) as handle:
        info = handle.info
    assert info.n_estimators == model.n_iter_ and info.n_trees == model.n_iter_ * 3
    assert info.details == {
        "iterations": model.n_iter_,
        "trees_per_iteration": 3,
        "loss": "log_loss",
        "loss_class": "HalfMultinomialLoss",
        "categorical_features": ["color", "size"],
        "n_categorical_features": 2,
        "early_stopping": False,
    }
    from treeshard.cli import format_info

    text = format_info(info)
    assert f"iterations      {model.n_iter_} x 3 tree(s) per iteration" in text
    assert "loss            log_loss (HalfMultinomialLoss)" in text
    assert "categorical     2: color, size" in text
    assert "early stopping  off" in text


def test_one_tree_is_its_tree_predictor(fitted, tmp_path):
    model, *_ = get_case(fitted, "pandas_categoricals")
    path = tmp_path / "model.zip"
    treeshard.save(model, path)
    with treeshard.open(path) as handle:
        tree = handle.tree(7)
        assert_bitwise(tree.nodes, model._predictors[2][1].nodes, "tree 7")
        with pytest.raises(IndexError, match=rf"tree index {3 * model.n_iter_} out of range for {3 * model.n_iter_} trees"):
            handle.tree(3 * model.n_iter_)


def test_early_stopping_is_reported(fitted, tmp_path):
    model, *_ = get_case(fitted, "early_stopping_loss")
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    details = treeshard.open(store).info.details
    assert details["early_stopping"] is True and details["iterations"] == model.n_iter_
    assert details["categorical_features"] == [] and details["loss_class"] == "HalfBinomialLoss"


def test_warm_start_continues_like_the_original(tmp_path):
    X = numeric()
    y = labels(X, 3)
    params = dict(max_iter=5, warm_start=True, max_features=0.5, random_state=0)
    original = HistGradientBoostingClassifier(**params).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    loaded = treeshard.load(store)
    original.set_params(max_iter=9).fit(X, y)
    loaded.set_params(max_iter=9).fit(X, y)
    assert_same_records(original, loaded)
    assert_equal_outputs(original.predict_proba(X), loaded.predict_proba(X), "predict_proba after a warm start")


def test_a_custom_loss_object_is_refused():
    from sklearn._loss.loss import HalfSquaredError

    X = numeric()
    model = HistGradientBoostingRegressor(loss=HalfSquaredError(), max_iter=3).fit(X, positive_target(X))
    with pytest.raises(UnsupportedEstimatorError, match=r"HistGradientBoostingRegressor with a custom loss object \(HalfSquaredError\) is not supported"):
        treeshard.save(model, zarr.storage.MemoryStore())


def test_predictor_refuses_sparse_and_wrong_width(fitted):
    import scipy.sparse as sp

    model, X, _, _ = get_case(fitted, "binary")
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    predictor = treeshard.Predictor(store)
    with pytest.raises(TypeError, match=r"Sparse data was passed for X, but dense data is required"):
        predictor.predict(sp.csr_matrix(np.nan_to_num(X)))
    with pytest.raises(ValueError, match=r"X has 3 features, but HistGradientBoostingClassifier is expecting 4 features as input."):
        predictor.predict(X[:, :3])


def test_predictor_of_a_preprocessed_model_checks_the_column_count(fitted):
    model, X, _, _ = get_case(fitted, "pandas_categoricals")
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    predictor = treeshard.Predictor(store)
    with pytest.raises(ValueError, match=r"X has 3 features, but ColumnTransformer is expecting 4 features as input."):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # feature names differ
            predictor.predict(X.iloc[:, :3].to_numpy())


def test_stored_preprocessor_must_hold_sklearn_sorted_categories(fitted, tmp_path):
    model, X, y, Q = get_case(fitted, "string_categories")
    path = tmp_path / "model"
    treeshard.save(model, path)

    def unsort(cfg: dict) -> None:
        values = cfg["fitted"]["_preprocessor"]["categories"][1]["values"]
        values["data"] = values["data"][::-1]

    edit_config(path, unsort)
    reseal(path)
    with pytest.raises(ConfigError, match=r"config.fitted._preprocessor.categories\[1\]: categories are not sorted as sklearn sorts them"):
        treeshard.load(path)


# --------------------------------------------------------------------------- golden stores
GOLDEN = Path(__file__).resolve().parent / "golden" / "hist_boosting_v1"
GOLDEN_CASES = sorted(json.loads((GOLDEN / "manifest.json").read_text())["cases"])


def golden_query(recorded: dict[str, np.ndarray]) -> pd.DataFrame:
    """The recorded query rows as the DataFrame the models were fitted on (see make_hist_golden.py)."""
    color = recorded["X_color"]
    return pd.DataFrame(
        {
            "x0": recorded["X_x0"],
            "color": pd.Categorical(np.where(color == "", None, color).tolist(), categories=["blue", "green", "red"]),
            "x2": recorded["X_x2"],
            "code": recorded["X_code"],
        }
    )


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_store_nodes_are_the_stored_columns(name):
    """Every TreePredictor's node records and bitsets are the store's columns, read with plain zarr."""
    group = zarr.open_group(zarr.storage.LocalStore(GOLDEN / name, read_only=True), mode="r")
    columns = {key: group["nodes"][key][...] for key in group["nodes"].array_keys()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", treeshard.SklearnVersionWarning)
        model = treeshard.load(GOLDEN / name)
    trees = [predictor for iteration in model._predictors for predictor in iteration]
    ptr = columns["tree_ptr"]
    assert len(trees) == len(ptr) - 1 == group.attrs["treeshard"]["trees"]["n_trees"]
    bitset_ptr = columns.get("bitset_ptr", np.zeros(len(ptr), dtype=np.int64))
    for i, tree in enumerate(trees):
        for field in tree.nodes.dtype.names:
            assert np.array_equal(tree.nodes[field], columns[field][ptr[i] : ptr[i + 1]]), f"tree {i}: {field}"
        for field in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
            stored = columns[field][bitset_ptr[i] : bitset_ptr[i + 1]] if field in columns else np.zeros((0, 8), np.uint32)
            assert np.array_equal(getattr(tree, field), stored), f"tree {i}: {field}"


@pytest.mark.parametrize("engine", ["sklearn", "predictor"])
@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_store_predicts_as_recorded(name, engine):
    """Raw scores and labels (sums of stored values) as recorded; probabilities as sklearn's
    loss computes them here from those raw scores (their ``exp`` depends on the CPU)."""
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as npz:
        recorded = {key: npz[key] for key in npz.files}
    manifest = json.loads((GOLDEN / "manifest.json").read_text())["cases"][name]
    X = golden_query(recorded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", treeshard.SklearnVersionWarning)
        reference = treeshard.load(GOLDEN / name)
    model = reference if engine == "sklearn" else treeshard.Predictor(GOLDEN / name)
    assert type(reference).__name__ == manifest["estimator"] and reference.n_iter_ == manifest["n_iter_"]
    assert_equal_outputs(model.predict(X), recorded["predict"], "predict")
    if "decision_function" in recorded:
        assert_equal_outputs(model.decision_function(X), recorded["decision_function"], "decision_function")
        raw = recorded["decision_function"]
        assert_equal_outputs(model.predict_proba(X), reference._loss.predict_proba(raw if raw.ndim == 2 else raw[:, None]), "predict_proba")
    with treeshard.open(GOLDEN / name) as handle:
        assert handle.info.metadata == {"golden": name} and handle.info.details["iterations"] == manifest["n_iter_"]


# --------------------------------------------------------------------------- dispatch
def test_loaded_model_scores_numeric_arrays_with_the_compiled_engine(fitted):
    import pickle

    from treeshard.dispatch import HistDispatch

    model, X, y, _ = get_case(fitted, "multiclass")
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    loaded = treeshard.load(store)
    for name in METHODS:
        method = loaded.__dict__[name]
        assert isinstance(method, HistDispatch) and method.engine is loaded.__dict__["predict"].engine
        assert_equal_outputs(getattr(model, name)(X), method(X), name)
    assert "predict" not in vars(treeshard.load(store, engine="sklearn"))
    assert loaded.score(X, y) == model.score(X, y)
    with pytest.raises(ValueError, match=r"X has 3 features, but HistGradientBoostingClassifier is expecting 4 features as input"):
        loaded.predict(X[:, :3])
    copy_of = pickle.loads(pickle.dumps(loaded))
    assert copy_of.predict_proba.engine is None  # a pickled model scores with sklearn
    assert_equal_outputs(model.predict_proba(X), copy_of.predict_proba(X), "predict_proba after pickling")


def test_a_refitted_model_scores_with_sklearn(fitted):
    model, X, y, _ = get_case(fitted, "binary")
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    loaded = treeshard.load(store)
    X2 = X[::-1].copy()
    loaded.set_params(max_iter=4).fit(X2, y[::-1])
    expected = HistGradientBoostingClassifier(**{**model.get_params(), "max_iter": 4}).fit(X2, y[::-1])
    assert loaded._predictors is not loaded.__dict__["predict"].trees
    assert_equal_outputs(expected.predict_proba(X), loaded.predict_proba(X), "predict_proba after a refit")


def test_partial_and_preprocessed_models_keep_sklearn_methods(fitted, tmp_path):
    model, X, y, Q = get_case(fitted, "pandas_categoricals")
    path = tmp_path / "model.zip"
    treeshard.save(model, path)
    assert "predict" not in vars(treeshard.load(path, estimators=2))
    loaded = treeshard.load(path)
    assert_equal_outputs(model.predict_proba(Q), loaded.predict_proba(Q), "predict_proba of a DataFrame (sklearn's method)")


# --------------------------------------------------------------------------- remote stores
@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_round_trip_over_http(name, fitted, http_server):
    model, X, y, Q = get_case(fitted, "pandas_categoricals")
    treeshard.save(model, http_server.root / f"hgb-{name}", overwrite=True)
    url = f"{http_server.url}/hgb-{name}"
    loaded = treeshard.load(url)
    assert_same_outputs(model, loaded, Q, y)
    assert_equal_outputs(model.predict_proba(Q), treeshard.Predictor(url).predict_proba(Q), "Predictor over HTTP")
    assert treeshard.open(url).info.details["iterations"] == model.n_iter_
