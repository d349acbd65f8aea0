"""IsolationForest: round trips (directory, zip, memory; eager, lazy, partial), the
sklearn-free Predictor and the dispatch, each output ``np.array_equal`` to sklearn's."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import zarr
from helpers.compare import assert_equal_outputs, assert_same_state
from helpers.stores import STORE_KINDS, make_store, reopen_for_reading
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import IsolationForest

import treeshard
from treeshard.dispatch import SmallBatchDispatch
from treeshard.predictor.isolation import average_path_length

N_FEATURES = 5
METHODS = ("score_samples", "decision_function", "predict")


def training_data(*, nan: bool = False) -> np.ndarray:
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, N_FEATURES))
    X[:15] += 6  # outliers
    if nan:
        X[rng.rand(*X.shape) < 0.1] = np.nan
    return X


def query_rows() -> np.ndarray:
    """Training-like rows, outliers, NaN and infinities (sklearn scores them all)."""
    rng = np.random.RandomState(1)
    X = rng.normal(size=(200, N_FEATURES)) * 2
    X[::9, 1] = np.nan
    X[3, 0], X[4, 2], X[5] = np.inf, -np.inf, np.nan
    return X


def _warm_started() -> IsolationForest:
    forest = IsolationForest(n_estimators=4, max_samples=100, warm_start=True, random_state=0).fit(training_data())
    return forest.set_params(n_estimators=7, max_samples=40).fit(training_data())


def _with_names() -> IsolationForest:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(training_data(), columns=[f"f{i}" for i in range(N_FEATURES)])
    return IsolationForest(n_estimators=6, random_state=0).fit(frame)


CASES = {
    "default": lambda: IsolationForest(n_estimators=8, random_state=0).fit(training_data()),
    "max_features<1": lambda: IsolationForest(n_estimators=8, max_features=0.6, random_state=0).fit(training_data()),
    "max_features-int": lambda: IsolationForest(n_estimators=8, max_features=2, random_state=3).fit(training_data()),
    "bootstrap": lambda: IsolationForest(n_estimators=8, bootstrap=True, max_samples=0.5, random_state=0).fit(training_data()),
    "contamination": lambda: IsolationForest(n_estimators=8, contamination=0.05, max_features=0.8, random_state=0).fit(training_data()),
    "max_samples-int": lambda: IsolationForest(n_estimators=5, max_samples=37, random_state=0).fit(training_data()),
    "nan": lambda: IsolationForest(n_estimators=8, max_features=0.6, contamination=0.1, random_state=0).fit(training_data(nan=True)),
    "feature-names": _with_names,
    "sample-weight": lambda: IsolationForest(n_estimators=8, random_state=0).fit(
        training_data(), sample_weight=np.random.RandomState(2).rand(300)
    ),
    "warm-start": _warm_started,
    "one-sample": lambda: IsolationForest(n_estimators=3, random_state=0).fit(training_data()[:1]),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted(request) -> tuple[str, IsolationForest]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # max_samples > n_samples (one-sample)
        return request.param, CASES[request.param]()


def query_for(name: str, original: IsolationForest) -> object:
    X = query_rows()
    if name == "feature-names":
        import pandas as pd

        return pd.DataFrame(X, columns=list(original.feature_names_in_))
    return X


def assert_same_outputs(original: IsolationForest, loaded: object, X: object) -> None:
    for method in METHODS:
        assert_equal_outputs(getattr(original, method)(X), getattr(loaded, method)(X), method)


def assert_same_samples(original: IsolationForest, loaded: IsolationForest) -> None:
    a, b = original.estimators_samples_, loaded.estimators_samples_
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert_equal_outputs(x, y, f"estimators_samples_[{i}]")


@pytest.mark.parametrize("kind", STORE_KINDS)
@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
def test_round_trip(fitted, kind, lazy, tmp_path):
    name, original = fitted
    store = make_store(kind, tmp_path)
    treeshard.save(original, store)
    loaded = treeshard.load(reopen_for_reading(kind, store, tmp_path), lazy=lazy)
    assert_same_state(original, loaded)
    X = query_for(name, original)
    assert_same_outputs(original, loaded, X)
    assert_same_samples(original, loaded)
    if lazy:
        assert isinstance(loaded.__dict__["score_samples"], SmallBatchDispatch)
        assert_same_outputs(original, treeshard.load(reopen_for_reading(kind, store, tmp_path), engine="sklearn"), X)
    else:
        assert type(loaded.estimators_) is list and "score_samples" not in loaded.__dict__


def test_predictor(fitted, tmp_path):
    name, original = fitted
    treeshard.save(original, tmp_path / "m.zip")
    predictor = treeshard.Predictor(tmp_path / "m.zip")
    assert_same_outputs(original, predictor, query_for(name, original))
    assert predictor.n_features_in_ == original.n_features_in_ and predictor.offset_ == original.offset_
    for missing in ("predict_proba", "apply"):
        with pytest.raises(AttributeError, match=rf"this Predictor \(IsolationForest\) has no {missing}\(\)"):
            getattr(predictor, missing)


def test_predictor_on_sparse_rows(tmp_path):
    sp = pytest.importorskip("scipy.sparse")
    original = CASES["max_features<1"]()
    treeshard.save(original, tmp_path / "m.zip")
    X = sp.random(50, N_FEATURES, density=0.4, format="csc", random_state=0) * 3
    assert_same_outputs(original, treeshard.Predictor(tmp_path / "m.zip"), X)
    assert_same_outputs(original, treeshard.load(tmp_path / "m.zip"), X)


def test_predictor_refuses_nan_in_sparse_rows_which_the_dispatch_leaves_to_sklearn(tmp_path):
    sp = pytest.importorskip("scipy.sparse")
    original = CASES["nan"]()
    treeshard.save(original, tmp_path / "m.zip")
    X = sp.csr_matrix(np.array([[np.nan, 1.0, 0.0, 0.0, 2.0]]))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        treeshard.Predictor(tmp_path / "m.zip").score_samples(X)
    assert_same_outputs(original, treeshard.load(tmp_path / "m.zip"), X)


def subset_of(original: IsolationForest, indices: list[int]) -> IsolationForest:
    """What sklearn's own IsolationForest over trees ``indices`` holds (docs/FORMAT.md 6.3)."""
    subset = copy.deepcopy(original)
    first_seeded = len(original.estimators_) - len(original._seeds)
    subset.estimators_ = [subset.estimators_[i] for i in indices]
    subset.estimators_features_ = [subset.estimators_features_[i] for i in indices]
    subset._decision_path_lengths = tuple(subset._decision_path_lengths[i] for i in indices)
    subset._average_path_length_per_tree = tuple(subset._average_path_length_per_tree[i] for i in indices)
    subset._seeds = original._seeds[[i - first_seeded for i in indices if i >= first_seeded]]
    subset.n_estimators = len(indices)
    return subset


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize("spec", [[5, 0, 3], 2, slice(1, None, 2), [6]], ids=["unsorted", "first-2", "odd", "one"])
def test_partial_load(spec, lazy, tmp_path):
    original = CASES["warm-start"]()  # 7 trees, seeds for the last 3: subsets mix both
    treeshard.save(original, tmp_path / "m")
    indices = list(range(7)[spec]) if isinstance(spec, slice) else list(range(spec)) if isinstance(spec, int) else spec
    expected = subset_of(original, indices)
    loaded = treeshard.load(tmp_path / "m", estimators=spec, lazy=lazy)
    assert_same_state(expected, loaded)
    assert_same_outputs(expected, loaded, query_rows())
    assert_same_samples(expected, loaded)


def test_partial_predictor_through_the_dispatch_equals_sklearn_on_the_same_trees(tmp_path):
    original = CASES["contamination"]()
    treeshard.save(original, tmp_path / "m")
    loaded = treeshard.load(tmp_path / "m", estimators=[7, 2, 4])
    engine = loaded.estimators_.flat_engine()
    assert engine is not None and engine.n_estimators == 3
    assert_same_outputs(subset_of(original, [7, 2, 4]), loaded, query_rows())


def test_info(tmp_path):
    original = CASES["contamination"]()
    treeshard.save(original, tmp_path / "m")
    with treeshard.open(tmp_path / "m") as handle:
        info = handle.info
    assert (info.estimator, info.estimator_type, info.n_estimators, info.n_features) == ("IsolationForest", "outlier_detector", 8, 5)
    assert info.details == {
        "n_features_in_": 5,
        "_max_features": 4,
        "max_samples_": 256,
        "contamination": 0.05,
        "offset_": float(original.offset_),
        "bootstrap": False,
    }
    from treeshard.cli import format_info

    text = format_info(info)
    assert "estimator       IsolationForest (outlier_detector)" in text
    assert f"max features    4\nmax samples     256\ncontamination   0.05\noffset          {float(original.offset_)!r}\nbootstrap       False" in text


def test_tree_is_a_sub_estimator(tmp_path):
    original = CASES["max_features<1"]()
    treeshard.save(original, tmp_path / "m")
    with treeshard.open(tmp_path / "m") as handle:
        tree = handle.tree(3)
    assert_same_state(original.estimators_[3], tree)


def test_refit_and_warm_start_after_eager_load(tmp_path):
    """A loaded model keeps training as the original does (what warm_start needs is stored)."""
    original = IsolationForest(n_estimators=4, warm_start=True, random_state=0).fit(training_data())
    treeshard.save(original, tmp_path / "m")
    loaded = treeshard.load(tmp_path / "m", lazy=False)
    for model in (original, loaded):
        model.set_params(n_estimators=6).fit(training_data())
    assert_same_state(original, loaded)
    assert_same_outputs(original, loaded, query_rows())


def test_average_path_length_is_sklearns():
    from sklearn.ensemble._iforest import _average_path_length

    for n in ([1], [2], [3], [256], [1, 2, 5, 1000], np.array([7, 0, 2]), [[4, 9], [1, 2]]):
        assert_equal_outputs(_average_path_length(n), average_path_length(n), str(n))


def test_store_holds_the_path_lengths_sklearn_computed(tmp_path):
    """The per-node arrays are the fit's, as stored: concatenated in tree order (FORMAT 6.3)."""
    original = CASES["nan"]()
    treeshard.save(original, tmp_path / "m")
    group = zarr.open_group(zarr.storage.LocalStore(tmp_path / "m", read_only=True), mode="r")
    assert_equal_outputs(group["fitted/decision_path_lengths"][...], np.concatenate(original._decision_path_lengths), "depths")
    assert_equal_outputs(group["fitted/average_path_length_per_tree"][...], np.concatenate(original._average_path_length_per_tree), "averages")
    assert_equal_outputs(group["fitted/estimators_features_"][...], np.array(original.estimators_features_), "features")
    assert_equal_outputs(group["fitted/seeds"][...], original._seeds.astype(np.int64), "seeds")
    assert group.attrs["treeshard"]["trees"]["n_features"] == original._max_features == 3


def test_warm_start_after_lazy_load(tmp_path):
    """sklearn's bagging adds trees with ``estimators_ += new``: lazy estimators take it, and the
    grown model scores with sklearn's own methods (the engine knows only the stored trees)."""
    original = IsolationForest(n_estimators=4, warm_start=True, random_state=0).fit(training_data())
    treeshard.save(original, tmp_path / "m")
    loaded = treeshard.load(tmp_path / "m")
    for model in (original, loaded):
        model.set_params(n_estimators=6).fit(training_data())
    assert len(loaded.estimators_) == 6 and len(loaded.estimators_._appended) == 2
    assert_same_state(original, loaded)
    assert_same_outputs(original, loaded, query_rows())
    assert_same_samples(original, loaded)


def test_dispatch_leaves_non_finite_rows_to_sklearn_before_1_6(tmp_path, monkeypatch):
    """sklearn 1.3-1.5 refuse NaN and infinity in ``score_samples`` (1.6+ score them, as the
    engine does): under those versions such rows go to sklearn, which raises its own error."""
    from treeshard import dispatch

    original = CASES["default"]()
    treeshard.save(original, tmp_path / "m")
    loaded = treeshard.load(tmp_path / "m")
    finite, nan = training_data()[:5], query_rows()
    assert dispatch._engine_for(loaded, nan) is not None  # this sklearn scores them
    monkeypatch.setattr(dispatch, "_refuses_nonfinite", lambda forest: True)
    assert dispatch._engine_for(loaded, nan) is None
    assert dispatch._engine_for(loaded, finite) is not None


def test_lazy_load_under_a_memory_budget_streams_trees(tmp_path):
    """A budget smaller than the trees: sklearn's scoring streams them, with the same bits."""
    original = IsolationForest(n_estimators=40, random_state=0).fit(training_data())
    treeshard.save(original, tmp_path / "m")
    loaded = treeshard.load(tmp_path / "m", max_memory=20_000)
    assert len(loaded.estimators_.cache) < 40
    assert_same_outputs(original, loaded, query_rows())
    assert_same_samples(original, loaded)


def test_convert_sign_verify(tmp_path):
    """A trusted joblib file converted, signed and loaded against the key, as any model."""
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("cryptography")
    original = CASES["sample-weight"]()
    joblib.dump(original, tmp_path / "m.joblib")
    treeshard.convert_pickle(tmp_path / "m.joblib", tmp_path / "m.zip", progress=False)
    private, public = treeshard.generate_key_pair()
    treeshard.sign(tmp_path / "m.zip", private)
    treeshard.verify(tmp_path / "m.zip", public_key=public)
    loaded = treeshard.load(tmp_path / "m.zip", public_key=public)
    assert_same_outputs(original, loaded, query_rows())
    assert_same_samples(original, loaded)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_estimators=st.integers(1, 6),
    max_samples=st.one_of(st.just("auto"), st.integers(1, 120), st.floats(0.05, 1.0)),
    max_features=st.one_of(st.integers(1, N_FEATURES), st.floats(0.2, 1.0)),
    bootstrap=st.booleans(),
    contamination=st.one_of(st.just("auto"), st.floats(0.01, 0.5)),
    n_rows=st.integers(1, 120),
    nan_fraction=st.sampled_from([0.0, 0.2]),
    seed=st.integers(0, 2**16),
)
def test_any_hyperparameters(n_estimators, max_samples, max_features, bootstrap, contamination, n_rows, nan_fraction, seed):
    """Lazy load, eager load and the Predictor equal sklearn for any hyperparameters."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_rows, N_FEATURES))
    X[rng.rand(*X.shape) < nan_fraction] = np.nan
    params = dict(n_estimators=n_estimators, max_samples=max_samples, max_features=max_features, bootstrap=bootstrap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # max_samples > n_samples, few bootstrap samples
        original = IsolationForest(**params, contamination=contamination, random_state=seed).fit(X)
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    Xq = query_rows()
    for loaded in (treeshard.load(store), treeshard.load(store, lazy=False), treeshard.Predictor(store)):
        assert_same_outputs(original, loaded, Xq)
    assert_same_samples(original, treeshard.load(store))


def test_pickled_lazy_model_is_a_store_reference(tmp_path):
    import pickle

    original = CASES["max_features<1"]()
    treeshard.save(original, tmp_path / "m.zip")
    loaded = treeshard.load(tmp_path / "m.zip", estimators=[6, 1, 3])
    copy_ = pickle.loads(pickle.dumps(loaded))
    assert type(copy_.estimators_).__name__ == "StoredEstimators" and list(copy_.estimators_.indices) == [6, 1, 3]
    assert_same_outputs(subset_of(original, [6, 1, 3]), copy_, query_rows())
