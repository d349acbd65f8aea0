"""Round trips: every supported estimator x task x store loads back exactly.

Exactness means: the same fitted state (``vars()`` of the estimator and of
every sub-estimator, recursively), bitwise equal node arrays, and identical
outputs of every prediction method.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import zarr
from helpers.compare import assert_round_trip_exact, assert_same_predictions
from helpers.data import make_data, query_points, query_targets
from helpers.stores import STORE_KINDS, round_trip
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

import treeshard

# predict_log_proba of a tree that gives a class probability 0
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
FOREST = {"n_estimators": 4, "max_depth": 6, "random_state": 0}
GBM = {"n_estimators": 5, "max_depth": 3, "random_state": 0}
TREE = {"max_depth": 7, "random_state": 0}

ESTIMATORS = {
    "RandomForestClassifier": lambda **kw: RandomForestClassifier(**{**FOREST, **kw}),
    "ExtraTreesClassifier": lambda **kw: ExtraTreesClassifier(**{**FOREST, **kw}),
    "GradientBoostingClassifier": lambda **kw: GradientBoostingClassifier(**{**GBM, **kw}),
    "DecisionTreeClassifier": lambda **kw: DecisionTreeClassifier(**{**TREE, **kw}),
    "ExtraTreeClassifier": lambda **kw: ExtraTreeClassifier(**{**TREE, **kw}),
    "RandomForestRegressor": lambda **kw: RandomForestRegressor(**{**FOREST, **kw}),
    "ExtraTreesRegressor": lambda **kw: ExtraTreesRegressor(**{**FOREST, **kw}),
    "GradientBoostingRegressor": lambda **kw: GradientBoostingRegressor(**{**GBM, **kw}),
    "DecisionTreeRegressor": lambda **kw: DecisionTreeRegressor(**{**TREE, **kw}),
    "ExtraTreeRegressor": lambda **kw: ExtraTreeRegressor(**{**TREE, **kw}),
}
CLASSIFICATION = ("binary", "multiclass", "multioutput", "string", "bool")
REGRESSION = ("regression", "multioutput_regression")


def _tasks(name: str) -> tuple[str, ...]:
    tasks = CLASSIFICATION if name.endswith("Classifier") else REGRESSION
    if name.startswith("GradientBoosting"):  # no multi-output gradient boosting
        tasks = tuple(t for t in tasks if not t.startswith("multioutput"))
    return tasks


CASES = [(name, task) for name in ESTIMATORS for task in _tasks(name)]


@functools.cache
def fitted(name: str, task: str):  # type: ignore[no-untyped-def]
    """A fitted model, shared by every test of this module that needs it."""
    X, y = make_data(task)
    return ESTIMATORS[name]().fit(X, y)


def test_cases_cover_every_supported_estimator():
    from treeshard.adapters import ESTIMATOR_IDS

    # Histogram gradient boosting (its own trees and methods): tests/test_hist_gradient_boosting.py;
    # IsolationForest (unsupervised): tests/test_isolation_forest.py
    own_modules = {"HistGradientBoostingClassifier", "HistGradientBoostingRegressor", "IsolationForest"}
    assert {name for name, _ in CASES} == set(ESTIMATOR_IDS) - own_modules


@pytest.mark.parametrize("kind", STORE_KINDS)
@pytest.mark.parametrize(("name", "task"), CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_round_trip(name, task, kind, tmp_path):
    original = fitted(name, task)
    X, y = make_data(task)
    loaded = round_trip(original, kind, tmp_path)
    assert_round_trip_exact(original, loaded, query_points(X, original), query_targets(y))


FOREST_CASES = [(n, t) for n, t in CASES if "Forest" in n or "ExtraTrees" in n]


@pytest.mark.parametrize(("name", "task"), FOREST_CASES, ids=[f"{n}-{t}" for n, t in FOREST_CASES])
def test_round_trip_eager_forest(name, task, tmp_path):
    """``lazy=False`` builds every tree at once; the result is the same model."""
    original = fitted(name, task)
    X, y = make_data(task)
    loaded = round_trip(original, "zip", tmp_path, lazy=False)
    assert type(loaded.estimators_) is list
    assert_round_trip_exact(original, loaded, query_points(X, original), query_targets(y))


@pytest.mark.parametrize("kind", ["localstore", "zipstore"])
@pytest.mark.parametrize(("name", "task"), [("RandomForestClassifier", "string"), ("GradientBoostingClassifier", "multiclass")])
def test_round_trip_through_zarr_store_objects(name, task, kind, tmp_path):
    original = fitted(name, task)
    X, y = make_data(task)
    loaded = round_trip(original, kind, tmp_path)
    assert_round_trip_exact(original, loaded, X, y)


def test_loaded_model_is_independent_of_its_store(tmp_path):
    """Eagerly loaded trees are in memory: deleting the store does not break predictions."""
    import shutil

    original = fitted("RandomForestClassifier", "multiclass")
    treeshard.save(original, tmp_path / "m")
    loaded = treeshard.load(tmp_path / "m", lazy=False)
    shutil.rmtree(tmp_path / "m")
    X, _ = make_data("multiclass")
    assert np.array_equal(loaded.predict_proba(X), original.predict_proba(X))


def test_trees_of_a_forest_are_stored_in_order():
    original = fitted("ExtraTreesRegressor", "regression")
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    loaded = treeshard.load(store)
    assert [e.random_state for e in loaded.estimators_] == [e.random_state for e in original.estimators_]
    for a, b in zip(original.estimators_, loaded.estimators_):
        assert a.tree_.node_count == b.tree_.node_count


# --------------------------------------------------------------------------- special cases
def _pruned_gbm(**kw):  # type: ignore[no-untyped-def]
    return GradientBoostingRegressor(**{**GBM, **kw})


SPECIAL = {
    # every gradient boosting loss and init
    "gbc-log_loss-binary": (lambda: GradientBoostingClassifier(**GBM, loss="log_loss"), "binary"),
    "gbc-exponential": (lambda: GradientBoostingClassifier(**GBM, loss="exponential"), "binary"),
    "gbc-init-zero": (lambda: GradientBoostingClassifier(**GBM, init="zero"), "multiclass"),
    "gbr-squared_error": (lambda: _pruned_gbm(loss="squared_error"), "regression"),
    "gbr-absolute_error": (lambda: _pruned_gbm(loss="absolute_error"), "regression"),
    "gbr-huber": (lambda: _pruned_gbm(loss="huber", alpha=0.8), "regression"),
    "gbr-quantile": (lambda: _pruned_gbm(loss="quantile", alpha=0.25), "regression"),
    "gbr-init-zero": (lambda: _pruned_gbm(init="zero"), "regression"),
    # early stopping and subsampling
    "gbc-early-stopping": (
        lambda: GradientBoostingClassifier(n_estimators=200, n_iter_no_change=2, validation_fraction=0.3, random_state=0),
        "multiclass",
    ),
    "gbr-early-stopping": (lambda: _pruned_gbm(n_estimators=200, n_iter_no_change=1, tol=0.5), "regression"),
    "gbc-subsample": (lambda: GradientBoostingClassifier(**GBM, subsample=0.6), "multiclass"),
    "gbr-subsample": (lambda: _pruned_gbm(subsample=0.5, max_features="sqrt"), "regression"),
    "gbr-random-state-none": (lambda: GradientBoostingRegressor(n_estimators=3, max_depth=2), "regression"),
    # class weights
    "rf-class-weight-int-keys": (lambda: RandomForestClassifier(**FOREST, class_weight={0: 1.0, 1: 3.5, 2: 0.5, 3: 2}), "multiclass"),
    "rf-class-weight-balanced": (lambda: RandomForestClassifier(**FOREST, class_weight="balanced"), "binary"),
    "rf-class-weight-balanced-subsample": (lambda: RandomForestClassifier(**FOREST, class_weight="balanced_subsample"), "string"),
    "rf-class-weight-str-keys": (lambda: ExtraTreesClassifier(**FOREST, class_weight={"cat": 2.0, "dog": 1.0, "mouse": 0.5}), "string"),
    "rf-class-weight-multioutput": (
        lambda: RandomForestClassifier(**FOREST, class_weight=[{0: 1.0, 1: 2.0}, {0: 1.0, 1: 1.0, 2: 4.0}]),
        "multioutput",
    ),
    "dt-class-weight-bool-keys": (lambda: DecisionTreeClassifier(**TREE, class_weight={False: 1.0, True: 3.0}), "bool"),
    "dt-class-weight-balanced": (lambda: DecisionTreeClassifier(**TREE, class_weight="balanced"), "multiclass"),
    # missing values, best-first trees, pruning
    "rf-nan": (lambda: RandomForestClassifier(**FOREST), "nan"),
    "dt-nan": (lambda: DecisionTreeClassifier(**TREE), "nan"),
    "et-nan": (lambda: ExtraTreesRegressor(**FOREST), "nan"),
    "rf-max-leaf-nodes": (lambda: RandomForestRegressor(n_estimators=3, max_leaf_nodes=9, random_state=0), "regression"),
    "gbc-max-leaf-nodes": (lambda: GradientBoostingClassifier(n_estimators=4, max_leaf_nodes=5, max_depth=None, random_state=0), "multiclass"),
    "dt-max-leaf-nodes": (lambda: DecisionTreeClassifier(max_leaf_nodes=7, random_state=0), "multiclass"),
    "dt-ccp-alpha": (lambda: DecisionTreeClassifier(ccp_alpha=0.01, random_state=0), "multiclass"),
    "rf-ccp-alpha": (lambda: RandomForestRegressor(n_estimators=3, ccp_alpha=0.5, random_state=0), "regression"),
    "gbr-ccp-alpha": (lambda: _pruned_gbm(ccp_alpha=0.1), "regression"),
    # out-of-bag scores, sample-size options, feature subsets
    "rf-oob": (lambda: RandomForestClassifier(n_estimators=12, max_depth=4, oob_score=True, random_state=0), "multiclass"),
    "et-oob-regression": (lambda: ExtraTreesRegressor(n_estimators=12, bootstrap=True, oob_score=True, random_state=0), "multioutput_regression"),
    "rf-oob-multilabel": (lambda: RandomForestClassifier(n_estimators=12, max_depth=4, oob_score=True, random_state=0), "multilabel"),
    "rf-max-samples": (lambda: RandomForestRegressor(n_estimators=3, max_samples=0.5, max_features=2, random_state=0), "regression"),
    "et-no-bootstrap-max-features": (lambda: ExtraTreesClassifier(n_estimators=3, max_features=0.6, random_state=0), "bool"),
    "rf-random-state-none": (lambda: RandomForestClassifier(n_estimators=3, max_depth=3), "binary"),
    "dt-criterion-entropy": (lambda: DecisionTreeClassifier(criterion="entropy", splitter="random", random_state=0), "string"),
    "dt-criterion-poisson": (lambda: DecisionTreeRegressor(criterion="poisson", max_depth=4, random_state=0), "poisson"),
    "dt-monotonic": (lambda: DecisionTreeRegressor(max_depth=4, monotonic_cst=[1, 0, -1, 0, 0], random_state=0), "regression"),
    "gbr-min-weight-fraction": (lambda: _pruned_gbm(min_weight_fraction_leaf=0.1, max_features=0.5), "regression"),
}


def _special_data(task: str):  # type: ignore[no-untyped-def]
    if task == "poisson":
        X, y = make_data("regression")
        return X, np.abs(y)
    return make_data(task)


@functools.cache
def fitted_special(case: str):  # type: ignore[no-untyped-def]
    factory, task = SPECIAL[case]
    X, y = _special_data(task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Some inputs do not have OOB scores"
        return factory().fit(X, y)


@pytest.mark.parametrize("case", SPECIAL)
def test_round_trip_special(case, memory_round_trip):
    original = fitted_special(case)
    X, y = _special_data(SPECIAL[case][1])
    loaded = memory_round_trip(original)
    assert_round_trip_exact(original, loaded, query_points(X, original), query_targets(y))
    if hasattr(original, "estimators_samples_"):
        for i, (a, b) in enumerate(zip(original.estimators_samples_, loaded.estimators_samples_)):
            assert np.array_equal(a, b), f"estimators_samples_[{i}]"


NUMPY_PARAMS = {
    "rf": (
        lambda: RandomForestClassifier(
            n_estimators=np.int64(3),
            max_depth=np.int32(5),
            random_state=np.int64(3),
            max_features=np.float64(0.5),
            bootstrap=np.bool_(True),
            min_weight_fraction_leaf=np.float32(0.0),
            class_weight={np.int64(0): np.float64(1.0), np.int64(1): np.float32(2.5)},
            monotonic_cst=np.array([1, 0, 0, 0, -1], dtype=np.int8),
        ),
        "binary",
    ),
    "et-multioutput-class-weight": (
        lambda: ExtraTreesClassifier(n_estimators=2, random_state=np.uint8(7), class_weight=[{0: np.float64(2.0), 1: 1.0}, {np.int64(0): 1.0, 1: 1.0, 2: 3.0}]),
        "multioutput",
    ),
    "gbr": (
        lambda: GradientBoostingRegressor(
            n_estimators=np.uint16(4), learning_rate=np.float32(0.1), loss="quantile", alpha=np.float64(0.8), subsample=np.float64(0.5), random_state=np.int64(1)
        ),
        "regression",
    ),
    "dt": (lambda: DecisionTreeRegressor(max_depth=np.int64(4), ccp_alpha=np.float64(0.0), min_impurity_decrease=np.float32(0.0), max_leaf_nodes=np.int16(20)), "regression"),
}


def assert_same_params(original, loaded):  # type: ignore[no-untyped-def]
    """Every param equal and of the same type, down to dict keys, list items and array dtypes."""

    def same(a, b, where):  # type: ignore[no-untyped-def]
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), where
        elif isinstance(a, dict):
            assert list(a) == list(b), where
            for (ka, va), (kb, vb) in zip(a.items(), b.items()):
                same(ka, kb, f"{where} key {ka!r}")
                same(va, vb, f"{where}[{ka!r}]")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                same(x, y, f"{where}[{i}]")
        else:
            assert a == b, where

    params = original.get_params(deep=False)
    for name, value in loaded.get_params(deep=False).items():
        same(params[name], value, name)


@pytest.mark.parametrize("case", NUMPY_PARAMS)
def test_numpy_params_keep_their_type(case, memory_round_trip):
    make, task = NUMPY_PARAMS[case]
    X, y = make_data(task)
    original = make().fit(X, y)
    assert any(isinstance(v, np.generic) for v in original.get_params(deep=False).values())
    loaded = memory_round_trip(original, lazy=False)
    assert_same_params(original, loaded)
    assert_same_predictions(original, loaded, query_points(X, original), query_targets(y))


def test_the_special_cases_exercise_what_they_claim():
    assert fitted_special("gbc-early-stopping").n_estimators_ < 200
    assert fitted_special("gbr-early-stopping").n_estimators_ < 200
    assert hasattr(fitted_special("gbc-subsample"), "oob_scores_")
    assert hasattr(fitted_special("gbc-subsample"), "oob_score_")
    assert fitted_special("gbc-init-zero").init_ == "zero"
    assert hasattr(fitted_special("rf-oob"), "oob_decision_function_")
    assert hasattr(fitted_special("et-oob-regression"), "oob_prediction_")
    assert fitted_special("rf-class-weight-int-keys")._sample_weight is not None
    nan_tree = fitted_special("dt-nan").tree_
    assert nan_tree.missing_go_to_left[nan_tree.children_left != -1].any()
    assert not nan_tree.missing_go_to_left[nan_tree.children_left != -1].all()


@pytest.mark.parametrize("case", ["gbc-subsample", "gbr-huber", "gbc-early-stopping"])
def test_gradient_boosting_warm_start_continues_like_the_original(case, memory_round_trip):
    """The fitted random state and loss are kept: growing more stages after loading
    gives the same model as growing them on the original."""
    import copy

    original = copy.deepcopy(fitted_special(case))
    loaded = memory_round_trip(original)
    X, y = _special_data(SPECIAL[case][1])
    n = original.n_estimators_ + 3
    for model in (original, loaded):
        model.set_params(warm_start=True, n_estimators=n, n_iter_no_change=None)
        model.fit(X, y)
    assert_round_trip_exact(original, loaded, X, y)


def _warm_started_forest():  # type: ignore[no-untyped-def]
    X, y = make_data("multiclass")
    forest = RandomForestClassifier(n_estimators=2, max_depth=4, warm_start=True, random_state=0).fit(X, y)
    return forest.set_params(n_estimators=5).fit(X, y), X, y


def test_warm_start_grown_forest(memory_round_trip):
    forest, X, y = _warm_started_forest()
    loaded = memory_round_trip(forest)
    assert len(loaded.estimators_) == 5
    assert_round_trip_exact(forest, loaded, X, y)


def test_eagerly_loaded_forest_keeps_growing_like_the_original(memory_round_trip):
    forest, X, y = _warm_started_forest()
    loaded = memory_round_trip(forest, lazy=False)
    for model in (forest, loaded):
        model.set_params(n_estimators=7).fit(X, y)
    assert_round_trip_exact(forest, loaded, X, y)


def test_lazily_loaded_forest_keeps_growing_like_the_original(memory_round_trip):
    forest, X, y = _warm_started_forest()
    loaded = memory_round_trip(forest)
    for model in (forest, loaded):
        model.set_params(n_estimators=7).fit(X, y)
    assert_round_trip_exact(forest, loaded, X, y)


@pytest.mark.filterwarnings("ignore:X has feature names, but DecisionTreeRegressor was fitted without:UserWarning")
@pytest.mark.parametrize("name", ["RandomForestClassifier", "GradientBoostingRegressor", "DecisionTreeClassifier"])
def test_pandas_feature_names(name, memory_round_trip):
    pd = pytest.importorskip("pandas")
    X, y = make_data("regression" if name.endswith("Regressor") else "multiclass")
    frame = pd.DataFrame(X, columns=[f"f_{i}" for i in range(X.shape[1])])
    original = ESTIMATORS[name]().fit(frame, y)
    loaded = memory_round_trip(original)
    assert loaded.feature_names_in_.dtype == object
    assert list(loaded.feature_names_in_) == list(frame.columns)
    assert_round_trip_exact(original, loaded, frame, y)
    # Feature-name checks behave exactly as the original's.
    shuffled = frame[frame.columns[::-1]]
    with pytest.raises(ValueError, match="feature names should match"):
        loaded.predict(shuffled)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert np.array_equal(loaded.predict(X), original.predict(X))
    assert any("feature names" in str(w.message) for w in caught)


def test_float32_and_float64_inputs_predict_alike(memory_round_trip):
    original = fitted("RandomForestRegressor", "regression")
    X, y = make_data("regression")
    loaded = memory_round_trip(original)
    X32 = X.astype(np.float32)
    assert_same_predictions(original, loaded, X32, y)


@pytest.mark.parametrize("codec", ["lz4", "zstd", "none"])
def test_every_codec_round_trips(codec, tmp_path):
    original = fitted("GradientBoostingClassifier", "string")
    X, y = make_data("string")
    loaded = round_trip(original, "zip", tmp_path, codec=codec)
    assert_round_trip_exact(original, loaded, X, y)


def test_single_node_trees(memory_round_trip):
    """A constant target gives root-only trees (max_depth 0)."""
    X, _ = make_data("regression")
    y = np.full(len(X), 3.25)
    for estimator in (RandomForestRegressor(n_estimators=3, random_state=0), DecisionTreeRegressor(), _pruned_gbm()):
        original = estimator.fit(X, y)
        loaded = memory_round_trip(original)
        assert_round_trip_exact(original, loaded, X, y)


def test_zip_and_directory_stores_hold_the_same_arrays(tmp_path):
    original = fitted("ExtraTreesClassifier", "multioutput")
    treeshard.save(original, tmp_path / "m")
    treeshard.save(original, tmp_path / "m.zip")
    with treeshard.open(tmp_path / "m") as a, treeshard.open(tmp_path / "m.zip") as b:
        assert a.info.arrays == b.info.arrays
        assert a.info.n_nodes == b.info.n_nodes == sum(e.tree_.node_count for e in original.estimators_)


def test_round_trip_through_store_object_written_by_path(tmp_path):
    """A directory written by path reads back through a zarr LocalStore, and a zip through a ZipStore."""
    original = fitted("DecisionTreeClassifier", "string")
    X, y = make_data("string")
    treeshard.save(original, tmp_path / "m")
    treeshard.save(original, tmp_path / "m.zip")
    for store in (zarr.storage.LocalStore(tmp_path / "m", read_only=True), zarr.storage.ZipStore(tmp_path / "m.zip", mode="r")):
        assert_round_trip_exact(original, treeshard.load(store), X, y)



def test_negative_zero_leaf_values_keep_their_sign(memory_round_trip):
    """Node values are kept bit for bit, including the sign of a zero (which
    a compact integer encoding of class counts could not keep)."""
    X, y = make_data("multiclass")
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    value = model.tree_.value
    node, k = np.argwhere(value[:, 0, :] == 0.0)[0]
    value[node, 0, k] = -0.0
    assert np.signbit(model.tree_.value[node, 0, k])
    loaded = memory_round_trip(model)
    assert np.signbit(loaded.tree_.value[node, 0, k])
    assert_round_trip_exact(model, loaded, X, y)
