"""Dispatch: a lazily loaded forest scores with the flat engine, sklearn's trees where it cannot.

Which path ran is observed, not assumed: the flat engine is built by
``Predictor.for_trees`` (counted), and sklearn's path builds trees into the
lazy estimators' cache (``len(model.estimators_.cache)``).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import zarr
from helpers.compare import assert_equal_outputs
from helpers.data import make_data, query_points, query_targets
from sklearn.base import clone
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor

import treeshard
from treeshard import Predictor
from treeshard.dispatch import SmallBatchDispatch

CASES = [
    (RandomForestClassifier, "multiclass"),
    (RandomForestClassifier, "string"),
    (RandomForestClassifier, "multioutput"),
    (RandomForestClassifier, "nan"),
    (ExtraTreesClassifier, "binary"),
    (RandomForestRegressor, "regression"),
    (RandomForestRegressor, "multioutput_regression"),
    (ExtraTreesRegressor, "regression"),
]
METHODS = ("predict", "predict_proba", "predict_log_proba", "apply", "score")


@pytest.fixture
def builds(monkeypatch):
    """How many flat engines were built (``Predictor.for_trees`` calls)."""
    calls = []
    for_trees = Predictor.for_trees.__func__

    def counting(cls, reader, indices, **options):  # type: ignore[no-untyped-def]
        calls.append(list(indices))
        return for_trees(cls, reader, indices, **options)

    monkeypatch.setattr(Predictor, "for_trees", classmethod(counting))
    return calls


def saved(cls, task, n_estimators=12, **params):  # type: ignore[no-untyped-def]
    X, y = make_data(task)
    model = cls(n_estimators=n_estimators, random_state=0, **params).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    return model, store, X, y


def check_methods(original, model, X, y):  # type: ignore[no-untyped-def]
    """Every prediction method of ``original`` (and ``score``) gives the same on ``model``."""
    Q, targets = query_points(X, original), query_targets(y)
    for name in METHODS:
        if hasattr(original, name):
            call = (lambda m: m.score(Q, targets)) if name == "score" else (lambda m: getattr(m, name)(Q))
            with np.errstate(divide="ignore"):  # log of a zero probability, as sklearn
                try:
                    expected = call(original)
                except ValueError as exc:  # score of a multi-output classifier
                    with pytest.raises(ValueError, match=str(exc)):
                        call(model)
                    continue
                assert_equal_outputs(expected, call(model), name)
    return Q


# --------------------------------------------------------------------------- same results as sklearn
@pytest.mark.parametrize("cls, task", CASES, ids=[f"{c.__name__}-{t}" for c, t in CASES])
def test_every_batch_uses_the_engine_and_equals_sklearn(cls, task, builds):
    original, store, X, y = saved(cls, task)
    model = treeshard.load(store)
    check_methods(original, model, X, y)
    big = np.resize(X, (20_000, X.shape[1]))  # far above the old small-batch limit
    name = "predict_proba" if hasattr(original, "predict_proba") else "predict"
    assert_equal_outputs(getattr(original, name)(big), getattr(model, name)(big), "large batch")
    assert len(builds) == 1 and len(model.estimators_.cache) == 0  # every call: the engine, no sklearn tree


@pytest.mark.parametrize("n_jobs", [None, 1, 2, -1])
def test_the_engine_uses_the_forest_s_n_jobs(n_jobs, builds, monkeypatch):
    import treeshard.predictor.traversal as module

    monkeypatch.setattr(module, "PAIRS_PER_THREAD", 1)
    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    model = treeshard.load(store)
    model.n_jobs = n_jobs
    used = []
    threads = Predictor._threads
    monkeypatch.setattr(Predictor, "_threads", lambda self, n_rows: used.append(self.n_jobs) or threads(self, n_rows))
    assert_equal_outputs(original.predict_proba(X), model.predict_proba(X), "n_jobs")
    assert used == [n_jobs] and model.estimators_.flat_engine().n_jobs is None  # the kept engine is unchanged


def test_an_n_jobs_sklearn_refuses_gets_sklearn_s_error(builds):
    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    model = treeshard.load(store)
    original.n_jobs = model.n_jobs = 0
    for estimator in (original, model):
        with pytest.raises(ValueError) as raised:
            estimator.predict_proba(X[:2])
        assert str(raised.value) == "n_jobs == 0 in Parallel has no meaning"


# --------------------------------------------------------------------------- what the engine leaves to sklearn
def test_sparse_batches_use_the_engine(builds):
    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    model = treeshard.load(store)
    sparse = X[:5].copy()
    sparse[np.abs(sparse) < 0.8] = 0
    for matrix in (sp.csr_matrix(sparse), sp.csc_matrix(sparse), sp.coo_array(sparse)):
        for name in ("predict_proba", "predict", "apply"):
            assert_equal_outputs(getattr(original, name)(matrix), getattr(model, name)(matrix), f"{type(matrix).__name__}.{name}")
    assert len(builds) == 1 and len(model.estimators_.cache) == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda X: X[:3].astype(object),  # object arrays: sklearn's conversion rules
        lambda X: X[:3].tolist()[0],  # 1-D: sklearn raises its own error
        lambda X: [tuple(r) for r in X[:3].astype(str)],  # strings
    ],
    ids=["object", "1-D", "strings"],
)
def test_inputs_the_engine_does_not_take_get_sklearn_s_answer(make, builds):
    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    model = treeshard.load(store, engine="sklearn")
    dispatched = treeshard.load(store)
    given = make(X)
    try:
        expected = model.predict_proba(given)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)) as raised:
            dispatched.predict_proba(given)
        assert str(raised.value) == str(exc)
    else:
        assert_equal_outputs(expected, dispatched.predict_proba(given), "input")


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda X: X[:2, :3], "X has 3 features, but RandomForestClassifier is expecting 5 features as input."),
        (lambda X: np.full((2, 5), np.inf), "Input X contains infinity or a value too large for dtype('float32')."),
    ],
    ids=["features", "infinity"],
)
def test_bad_input_raises_sklearn_s_error(bad, message):
    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    model = treeshard.load(store)
    for estimator in (original, model):
        with pytest.raises(ValueError) as raised:
            estimator.predict(bad(X))
        assert str(raised.value) == message


def test_feature_names_are_checked_like_sklearn():
    pd = pytest.importorskip("pandas")
    X, y = make_data("multiclass")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    original = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    model = treeshard.load(store)
    assert_equal_outputs(original.predict_proba(frame[:4]), model.predict_proba(frame[:4]), "frame")
    assert len(model.estimators_.cache) == 0  # a numeric DataFrame goes to the engine
    renamed = frame.rename(columns={"f0": "zz"})
    for estimator in (original, model):
        with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- zz\n"):
            estimator.predict(renamed[:2])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        assert_equal_outputs(original.predict(X[:2]), model.predict(X[:2]), "no names")


def test_trees_added_by_a_warm_start_are_scored_by_sklearn(builds):
    original, store, X, y = saved(RandomForestClassifier, "multiclass", n_estimators=6)
    model = treeshard.load(store)
    model.predict_proba(X[:2])  # builds the engine over the 6 stored trees
    for estimator in (original, model):
        estimator.set_params(n_estimators=9, warm_start=True).fit(X, y)
    assert len(model.estimators_) == 9
    assert_equal_outputs(original.predict_proba(X[:2]), model.predict_proba(X[:2]), "warm start")
    assert len(builds) == 1 and len(model.estimators_.cache) == 6  # sklearn scored all nine


def test_a_refit_model_is_plain_sklearn(builds):
    original, store, X, y = saved(RandomForestRegressor, "regression")
    model = treeshard.load(store)
    model.fit(X[::-1], y[::-1])
    original.fit(X[::-1], y[::-1])
    assert type(model.estimators_) is list
    assert_equal_outputs(original.predict(X[:3]), model.predict(X[:3]), "refit")
    assert builds == []


# --------------------------------------------------------------------------- the model object
def test_dispatch_is_visible_and_optional():
    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    model = treeshard.load(store)
    assert sorted(k for k, v in vars(model).items() if isinstance(v, SmallBatchDispatch)) == ["apply", "predict_proba"]
    assert model.predict_proba.__doc__ == RandomForestClassifier.predict_proba.__doc__
    assert repr(model.predict_proba) == "<treeshard dispatch: RandomForestClassifier.predict_proba, flat engine>"
    assert repr(model.apply) == "<treeshard dispatch: RandomForestClassifier.apply, flat engine>"
    regressor = treeshard.load(saved(RandomForestRegressor, "regression")[1])
    assert sorted(k for k, v in vars(regressor).items() if isinstance(v, SmallBatchDispatch)) == ["apply", "predict"]
    for plain in (treeshard.load(store, engine="sklearn"), treeshard.load(store, lazy=False), clone(model)):
        assert not any(isinstance(v, SmallBatchDispatch) for v in vars(plain).values())
    with pytest.raises(ValueError, match="engine must be one of 'auto', 'sklearn', got 'numpy'"):
        treeshard.load(store, engine="numpy")
    for name, value in (("lazy", "no"), ("lazy", None), ("verify", "yes"), ("verify", 1)):
        with pytest.raises(TypeError, match=f"^{name} must be True or False, got {value!r}$"):
            treeshard.load(store, **{name: value})
    assert_equal_outputs(original.predict(X[:3]), treeshard.load(store, lazy=np.bool_(False)).predict(X[:3]), "numpy bool")


def test_pickled_and_copied_models_keep_dispatching(tmp_path, builds):
    original, _, X, _ = saved(RandomForestClassifier, "multiclass")
    path = tmp_path / "forest.zip"
    treeshard.save(original, path)
    model = treeshard.load(path)
    for copied in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert isinstance(copied.predict_proba, SmallBatchDispatch) and copied.predict_proba.forest is copied
        assert_equal_outputs(original.predict_proba(X[:3]), copied.predict_proba(X[:3]), "copy")
        assert len(copied.estimators_.cache) == 0
    assert builds  # the copies scored with an engine


def _without_collection():  # type: ignore[no-untyped-def]
    """Garbage collection off (as between two full collections of a busy server)."""
    import contextlib
    import gc

    @contextlib.contextmanager
    def disabled():  # type: ignore[no-untyped-def]
        gc.collect()
        gc.disable()
        try:
            yield
        finally:
            gc.enable()

    return disabled()


@pytest.mark.parametrize("cls, task", [(RandomForestClassifier, "multiclass"), (RandomForestRegressor, "regression")])
def test_a_dropped_lazy_forest_is_freed_at_once(cls, task):
    import weakref

    _, store, X, _ = saved(cls, task)
    with _without_collection():
        model = treeshard.load(store)
        model.apply(X[:3])  # builds the engine
        trees, state = weakref.ref(model.estimators_), weakref.ref(model.__dict__["apply"])
        del model
        assert trees() is None and state() is None  # by reference counting alone


def test_a_dropped_histogram_boosting_model_is_freed_at_once():
    import weakref

    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = make_data("multiclass")
    store = zarr.storage.MemoryStore()
    treeshard.save(HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y), store)
    with _without_collection():
        model = treeshard.load(store)
        model.predict(X[:3])  # builds the engine
        method = weakref.ref(model.__dict__["predict"])
        del model
        assert method() is None


def test_a_method_kept_alone_predicts_after_its_forest_is_dropped(builds):
    import weakref

    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    with _without_collection():
        model = treeshard.load(store)
        forest = weakref.ref(model)
        proba, apply = model.predict_proba, model.apply
        del model
        assert forest() is None
        assert_equal_outputs(original.predict_proba(X), proba(X), "predict_proba")
        assert_equal_outputs(original.apply(X), apply(X), "apply")
        assert builds  # still the engine
        assert proba.forest.__dict__ is apply.forest.__dict__ and type(proba.forest) is RandomForestClassifier  # the same attributes
        assert_equal_outputs(original.predict(X), proba.forest.predict(X), "predict")  # sklearn's, from the same trees
        copied = pickle.loads(pickle.dumps(proba))
        assert_equal_outputs(original.predict_proba(X), copied(X), "pickled")
        trees = weakref.ref(proba.forest.estimators_)
        del proba, apply, copied
        assert trees() is None


def test_a_shallow_copy_keeps_predicting_after_the_original_is_dropped():
    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    model = treeshard.load(store)
    shallow = copy.copy(model)
    del model
    assert_equal_outputs(original.predict_proba(X), shallow.predict_proba(X), "shallow copy")
    assert_equal_outputs(original.predict(X), shallow.predict(X), "shallow copy")


# --------------------------------------------------------------------------- selections and memory
@pytest.mark.parametrize("selection", [slice(2, 7), [9, 1, 4], 5])
def test_partial_loads_score_the_selected_trees(selection, builds):
    original, store, X, _ = saved(RandomForestClassifier, "multiclass")
    model = treeshard.load(store, estimators=selection)
    Q = query_points(X, original)
    expected = type(model).predict_proba(model, Q)  # sklearn over the same selected trees
    assert_equal_outputs(expected, model.predict_proba(Q), "selection")
    assert builds == [model.estimators_.indices.tolist()]


@pytest.mark.parametrize("engine_bytes", [1_000, 5_000])
def test_the_engine_stays_within_max_memory(engine_bytes, builds, monkeypatch):
    from treeshard.lazy import StoredEstimators

    monkeypatch.setattr(StoredEstimators, "engine_bytes", lambda self: engine_bytes)
    original, store, X, _ = saved(RandomForestClassifier, "multiclass", n_estimators=24)
    needed = int(treeshard.load(store).estimators_.source.tree_bytes(np.arange(24)).sum())
    for budget, engine_budget in (
        (needed - 1, (needed - 1) // 2),  # the trees stream: half the budget
        (needed + 2_000, 2_000 - 2_000 // 8),  # the trees fit: what they leave, but the batches' eighth
        (None, None),
    ):
        model = treeshard.load(store, max_memory=budget)
        assert model.estimators_.engine.budget == engine_budget
        assert_equal_outputs(original.predict_proba(X[:3]), model.predict_proba(X[:3]), "budget")
        engine_used = engine_budget is None or engine_bytes <= engine_budget
        assert (model.estimators_.engine._engine is not None) is engine_used, budget
        assert (len(model.estimators_.cache) == 0) is engine_used


def test_engine_bytes_covers_what_the_engine_keeps():
    _, store, X, _ = saved(RandomForestClassifier, "multiclass", n_estimators=24)
    lazy = treeshard.load(store).estimators_
    engine = lazy.flat_engine()
    kept = sum(a.nbytes for a in vars(engine).values() if isinstance(a, np.ndarray) and a.size > 24)
    assert engine._few.nbytes == 8 * engine._nodes.shape[0]  # the one-row records
    kept += engine._few.nbytes
    assert kept <= lazy.engine_bytes() // 2 <= 1.5 * kept


# --------------------------------------------------------------------------- the engine's pieces
def test_mean_leaf_depth_matches_sklearn_trees():
    original, store, _, _ = saved(ExtraTreesRegressor, "regression", max_depth=6)
    depths = []
    for estimator in original.estimators_:
        tree = estimator.tree_
        depth = np.zeros(tree.node_count, dtype=int)
        for node in range(tree.node_count):  # sklearn numbers children after their parent
            for child in (tree.children_left[node], tree.children_right[node]):
                if child != -1:
                    depth[child] = depth[node] + 1
        depths.extend(depth[tree.children_left == -1])
    assert Predictor(store).mean_leaf_depth() == pytest.approx(np.mean(depths), rel=1e-12)


def test_for_trees_refuses_what_it_cannot_score():
    from sklearn.ensemble import GradientBoostingRegressor

    from treeshard.reader import StoreReader

    _, store, _, _ = saved(RandomForestRegressor, "regression", n_estimators=3)
    reader = StoreReader(store)
    for indices in ([], [3], [-1]):
        with pytest.raises(ValueError, match=r"tree indices must be in \[0, 3\)"):
            Predictor.for_trees(reader, indices)
    X, y = make_data("regression")
    boosting = zarr.storage.MemoryStore()
    treeshard.save(GradientBoostingRegressor(n_estimators=2).fit(X, y), boosting)
    with pytest.raises(treeshard.UnsupportedEstimatorError, match="for_trees needs a forest, not GradientBoostingRegressor"):
        Predictor.for_trees(StoreReader(boosting), [0])
