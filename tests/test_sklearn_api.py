"""Loaded estimators are real scikit-learn estimators: fitted, clonable, Pipeline steps."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import zarr
from helpers.compare import assert_round_trip_exact
from helpers.data import make_data
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)
from sklearn.utils.validation import check_is_fitted

import treeshard
from treeshard import UnsupportedEstimatorError

# predict_log_proba of a tree that gives a class probability 0
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")

ESTIMATORS = [
    (RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0, class_weight={0: 1, 1: 2, 2: 1, 3: 1}), "multiclass"),
    (ExtraTreesClassifier(n_estimators=3, max_depth=3, random_state=0), "string"),
    (GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0), "multiclass"),
    (DecisionTreeClassifier(max_depth=3, random_state=0), "bool"),
    (ExtraTreeClassifier(max_depth=3, random_state=0), "binary"),
    (RandomForestRegressor(n_estimators=3, max_depth=3, random_state=0), "regression"),
    (ExtraTreesRegressor(n_estimators=3, max_depth=3, random_state=0), "multioutput_regression"),
    (GradientBoostingRegressor(n_estimators=3, max_depth=2, loss="huber", random_state=0), "regression"),
    (DecisionTreeRegressor(max_depth=3, random_state=0), "regression"),
    (ExtraTreeRegressor(max_depth=3, random_state=0), "regression"),
]
IDS = [type(e).__name__ for e, _ in ESTIMATORS]


@functools.cache
def saved(index: int):  # type: ignore[no-untyped-def]
    """(original, store) for ESTIMATORS[index]."""
    estimator, task = ESTIMATORS[index]
    X, y = make_data(task)
    original = clone(estimator).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    return original, store


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize("index", range(len(ESTIMATORS)), ids=IDS)
def test_loaded_estimator_is_fitted_and_of_the_right_kind(index, lazy):
    original, store = saved(index)
    loaded = treeshard.load(store, lazy=lazy)
    assert type(loaded) is type(original)
    check_is_fitted(loaded)
    assert is_classifier(loaded) == is_classifier(original)
    assert is_regressor(loaded) == is_regressor(original)
    assert loaded.__sklearn_tags__() == original.__sklearn_tags__()


@pytest.mark.parametrize("index", range(len(ESTIMATORS)), ids=IDS)
def test_get_params_and_clone(index):
    original, store = saved(index)
    loaded = treeshard.load(store)
    assert loaded.get_params(deep=False) == original.get_params(deep=False)
    assert loaded.get_params(deep=True) == original.get_params(deep=True)
    fresh = clone(loaded)
    assert fresh.get_params() == original.get_params()
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        check_is_fitted(fresh)
    # the clone refits to the same model as a clone of the original
    X, y = make_data(ESTIMATORS[index][1])
    refit, expected = fresh.fit(X, y), clone(original).fit(X, y)
    assert np.array_equal(refit.predict(X), expected.predict(X))


def test_params_listed_as_unserializable_are_the_only_ones_that_differ():
    X, y = make_data("binary")
    original = RandomForestClassifier(n_estimators=2, random_state=np.random.RandomState(1)).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    loaded = treeshard.load(store)
    unserializable = treeshard.open(store).info.unserializable_params
    assert unserializable == ("random_state",)
    a, b = original.get_params(deep=False), loaded.get_params(deep=False)
    assert {k for k in a if a[k] is not b[k] and a[k] != b[k]} == set(unserializable)
    clone(loaded)  # still clonable


def test_numpy_params_from_a_search_grid_survive_load_and_clone():
    """Params drawn from numpy grids (as a search's ``best_estimator_`` has them) keep their type."""
    X, y = make_data("binary")
    original = RandomForestClassifier(
        n_estimators=np.arange(2, 5)[1], max_features=np.linspace(0.2, 0.6, 3)[2], random_state=np.int64(3)
    ).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    loaded = treeshard.load(store)
    assert repr(loaded) == repr(original)
    for name in ("n_estimators", "max_features", "random_state"):
        assert type(getattr(clone(loaded), name)) is type(getattr(original, name)), name
    assert np.array_equal(loaded.predict_proba(X), original.predict_proba(X))


@pytest.mark.parametrize("index", [0, 2, 5, 7], ids=[IDS[i] for i in (0, 2, 5, 7)])
def test_pipeline_last_step(index, tmp_path):
    estimator, task = ESTIMATORS[index]
    X, y = make_data(task)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", clone(estimator))]).fit(X, y)
    treeshard.save(pipeline[-1], tmp_path / "step.zip")
    rebuilt = Pipeline([("scale", pipeline[0]), ("model", treeshard.load(tmp_path / "step.zip"))])
    assert np.array_equal(rebuilt.predict(X), pipeline.predict(X))
    assert rebuilt.score(X, y) == pipeline.score(X, y)
    if hasattr(pipeline, "predict_proba"):
        assert np.array_equal(rebuilt.predict_proba(X), pipeline.predict_proba(X))
    # and it can be refit as a Pipeline step
    assert np.array_equal(clone(rebuilt).fit(X, y).predict(X), clone(pipeline).fit(X, y).predict(X))


def test_loaded_estimator_works_with_model_selection():
    original, store = saved(5)
    X, y = make_data("regression")
    loaded = treeshard.load(store)
    assert np.array_equal(cross_val_score(loaded, X, y, cv=3), cross_val_score(original, X, y, cv=3))


def test_repr_and_html_repr():
    original, store = saved(0)
    loaded = treeshard.load(store)
    assert repr(loaded) == repr(original)
    assert "RandomForestClassifier" in loaded._repr_html_()


# --------------------------------------------------------------------------- unsupported
class SubclassedForest(RandomForestClassifier):
    """A user subclass: not the allow-listed class, even though it looks like one."""


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda X, y: LogisticRegression().fit(X, y), r"sklearn\.linear_model\._logistic\.LogisticRegression is not supported"),
        (lambda X, y: SubclassedForest(n_estimators=2).fit(X, y), r"test_sklearn_api\.SubclassedForest is not supported"),
        (
            lambda X, y: GradientBoostingClassifier(n_estimators=2, init=DummyClassifier(strategy="prior")).fit(X, y),
            r"GradientBoostingClassifier with a custom init estimator \(DummyClassifier\) is not supported",
        ),
        (
            lambda X, y: GradientBoostingRegressor(n_estimators=2, init=LogisticRegression()).fit(X, y),
            r"GradientBoostingRegressor with a custom init estimator \(LogisticRegression\) is not supported",
        ),
    ],
    ids=["LogisticRegression", "subclass", "gbc-init-dummy", "gbr-init-other"],
)
@pytest.mark.parametrize("kind", ["directory", "zip", "memory"])
def test_unsupported_estimator(make, match, kind, tmp_path):
    X, y = make_data("binary")
    estimator = make(X, y)
    store = {"directory": tmp_path / "m", "zip": tmp_path / "m.zip", "memory": zarr.storage.MemoryStore()}[kind]
    with pytest.raises(UnsupportedEstimatorError, match=match):
        treeshard.save(estimator, store)
    if kind == "memory":
        with pytest.raises(treeshard.StoreNotFoundError):
            treeshard.open(store)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize("index", [0, 2, 3], ids=[IDS[i] for i in (0, 2, 3)])
def test_loaded_estimator_can_be_copied_and_pickled(index, lazy, tmp_path):
    """A user may deepcopy or pickle a loaded model (e.g. to ship it to a worker)."""
    import copy
    import pickle

    original, _ = saved(index)
    treeshard.save(original, tmp_path / "m.zip")
    loaded = treeshard.load(tmp_path / "m.zip", lazy=lazy)
    X, _ = make_data(ESTIMATORS[index][1])
    for clone_of in (copy.deepcopy(loaded), pickle.loads(pickle.dumps(loaded))):
        assert np.array_equal(clone_of.predict(X), original.predict(X))


@pytest.mark.parametrize("index", [0, 1, 2, 6], ids=[IDS[i] for i in (0, 1, 2, 6)])
def test_loaded_estimator_can_be_saved_again(index, tmp_path):
    """Saving a (lazily) loaded model writes the same model, even over its own store."""
    original, _ = saved(index)
    X, y = make_data(ESTIMATORS[index][1])
    treeshard.save(original, tmp_path / "m.zip")
    loaded = treeshard.load(tmp_path / "m.zip")
    treeshard.save(loaded, tmp_path / "again")
    assert_round_trip_exact(original, treeshard.load(tmp_path / "again", lazy=False), X, y)
    treeshard.save(loaded, tmp_path / "m.zip", overwrite=True)
    assert np.array_equal(loaded.predict(X), original.predict(X))
    assert_round_trip_exact(original, treeshard.load(tmp_path / "m.zip", lazy=False), X, y)
