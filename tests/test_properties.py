"""Property-based round trips: any hyperparameters, any data, the same model back."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import zarr
from helpers.compare import assert_equal_outputs, assert_round_trip_exact
from helpers.data import query_points, query_targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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

FORESTS = [RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor]
TREES = [DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor]
BOOSTING = [GradientBoostingClassifier, GradientBoostingRegressor]
CLASSIFIER_CRITERIA = ["gini", "entropy", "log_loss"]
REGRESSOR_CRITERIA = ["squared_error", "absolute_error", "friedman_mse", "poisson"]


@st.composite
def datasets(draw, *, classifier: bool, allow_nan: bool):  # type: ignore[no-untyped-def]
    seed = draw(st.integers(0, 2**16))
    n_samples = draw(st.integers(8, 80))
    n_features = draw(st.integers(1, 6))
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, n_features))
    if draw(st.booleans()):  # repeated values: ties in thresholds
        X = np.round(X, 1)
    if allow_nan and draw(st.booleans()):
        X[rng.rand(*X.shape) < draw(st.sampled_from([0.05, 0.3]))] = np.nan
    if classifier:
        n_classes = draw(st.integers(1, 4))
        labels = draw(st.sampled_from(["int", "str", "bool"])) if n_classes <= 2 else draw(st.sampled_from(["int", "str"]))
        y = rng.randint(n_classes, size=n_samples)
        y[: n_classes] = np.arange(n_classes)  # every class present
        if labels == "str":
            y = np.array(["a", "bb", "ccc", "dddd"])[y]
        elif labels == "bool":
            y = y.astype(bool)
        elif draw(st.booleans()):
            y = y * 7 - 3  # negative, non-contiguous labels
    else:
        y = np.abs(rng.normal(size=n_samples) * 5 + (np.nan_to_num(X[:, 0]) > 0)) + 0.1
    return X, y


@st.composite
def models(draw):  # type: ignore[no-untyped-def]
    cls = draw(st.sampled_from(FORESTS + TREES + BOOSTING))
    classifier = cls.__name__.endswith("Classifier")
    params = {
        "max_depth": draw(st.one_of(st.none(), st.integers(1, 8))),
        "min_samples_leaf": draw(st.integers(1, 5)),
        "max_features": draw(st.sampled_from([None, "sqrt", "log2", 0.5, 1])),
        "max_leaf_nodes": draw(st.one_of(st.none(), st.integers(2, 20))),
        "random_state": draw(st.integers(0, 1000)),
        "ccp_alpha": draw(st.sampled_from([0.0, 0.0, 0.01])),
    }
    if cls in BOOSTING:
        params["n_estimators"] = draw(st.integers(1, 5))
        params["subsample"] = draw(st.sampled_from([1.0, 0.7]))
        params["learning_rate"] = draw(st.sampled_from([0.1, 1.0]))
        if not classifier:
            params["loss"] = draw(st.sampled_from(["squared_error", "absolute_error", "huber", "quantile"]))
    else:
        params["criterion"] = draw(st.sampled_from(CLASSIFIER_CRITERIA if classifier else REGRESSOR_CRITERIA))
    if cls in FORESTS:
        params["n_estimators"] = draw(st.integers(1, 5))
        params["bootstrap"] = draw(st.booleans())
        if params["bootstrap"] and draw(st.booleans()):
            params["max_samples"] = draw(st.sampled_from([0.5, 0.9]))
    if classifier and cls not in BOOSTING and draw(st.booleans()):
        params["class_weight"] = "balanced"
    allow_nan = cls not in BOOSTING and params.get("criterion") != "poisson"
    X, y = draw(datasets(classifier=classifier, allow_nan=allow_nan))
    if cls is GradientBoostingClassifier and len(np.unique(y)) < 2:
        y = np.arange(len(y)) % 2
    if classifier and cls in FORESTS and len(np.unique(y)) == 1 and params.get("class_weight"):
        params.pop("class_weight")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # criterion="friedman_mse" is deprecated (sklearn 1.9)
        return cls(**params), X, y


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=models(), lazy=st.booleans())
def test_any_fitted_model_round_trips_exactly(case, lazy):
    estimator, X, y = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    loaded = treeshard.load(store, lazy=lazy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log of a zero probability
        assert_round_trip_exact(estimator, loaded, query_points(X, estimator), query_targets(y))


@settings(max_examples=40, deadline=None)
@given(
    metadata=st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=10,
        ),
        max_size=5,
    )
)
def test_any_json_metadata_round_trips(metadata):
    estimator = DecisionTreeRegressor(max_depth=1).fit([[0.0], [1.0]], [0.0, 1.0])
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store, metadata=metadata)
    assert treeshard.open(store).info.metadata == metadata


SPARSE_FORMATS = ["csr", "csc", "coo", "bsr", "dia", "dok", "lil"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    case=models(),
    fmt=st.sampled_from(SPARSE_FORMATS),
    container=st.sampled_from([sp.csr_matrix, sp.csr_array]),
    index_dtype=st.sampled_from([np.int32, np.int32, np.int64]),
    dtype=st.sampled_from([np.float32, np.float64, np.int64]),
    density=st.sampled_from([0.0, 0.3, 0.8]),
    explicit_zeros=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_predictor_on_sparse_input_equals_sklearn(case, fmt, container, index_dtype, dtype, density, explicit_zeros, seed):
    """Any model, the same sparse X in any format and dtype: the Predictor's outputs are sklearn's,
    exactly, or its error is sklearn's (a csr_array keeps int64 indices, which sklearn refuses)."""
    estimator, X, y = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    predictor = treeshard.Predictor(store)
    rng = np.random.RandomState(seed)
    dense = np.nan_to_num(query_points(X), nan=0.0)
    if dtype == np.int64:
        dense = np.clip(np.round(dense * 2), -10, 10)
    dense[rng.rand(*dense.shape) >= density] = 0.0
    stored = (dense != 0) | (explicit_zeros & (rng.rand(*dense.shape) < 0.3))
    rows, cols = np.nonzero(stored)
    indptr = np.concatenate([[0], np.cumsum(stored.sum(axis=1))])
    query = container((dense[rows, cols].astype(dtype), cols.astype(index_dtype), indptr.astype(index_dtype)), shape=dense.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)  # DIA of many diagonals
        query = query.asformat(fmt)
    for name in ("predict", "predict_proba", "predict_log_proba", "decision_function", "apply"):
        if hasattr(estimator, name):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # log of a zero probability
                try:
                    expected = getattr(estimator, name)(query)
                except ValueError as exc:
                    with pytest.raises(ValueError) as error:
                        getattr(predictor, name)(query)
                    assert str(error.value) == str(exc)
                    continue
                got = getattr(predictor, name)(query)
            assert_equal_outputs(expected, got, f"{name} on {fmt} {dtype.__name__}")
