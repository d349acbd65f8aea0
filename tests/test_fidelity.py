"""Fidelity: everything sklearn keeps on a fitted model survives a round trip.

Pickles of loaded models are reproducible (no uninitialised bytes), models
sklearn leaves in odd but valid states load, inconsistent ones are refused at
save time, and continuing a warm start from a loaded model gives exactly the
model that continuing the original gives.
"""

from __future__ import annotations

import pickle
import re
import warnings
from typing import Any

import joblib
import numpy as np
import pytest
import zarr
from helpers.compare import assert_trees_equal
from helpers.data import make_data
from helpers.stores import edit_config, reseal
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import treeshard
from treeshard import ConfigError, UnsupportedEstimatorError


def round_trip(estimator: Any, *, lazy: bool) -> Any:
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    return treeshard.load(store, lazy=lazy)


def sub_estimators(model: Any) -> list[Any]:
    if hasattr(model, "tree_"):
        return [model]
    estimators = model.estimators_
    return list(estimators.ravel()) if isinstance(estimators, np.ndarray) else list(estimators)


def assert_same_model(a: Any, b: Any, X: np.ndarray) -> None:
    """Same predictions and bitwise-equal node arrays, tree by tree."""
    for method in ("predict", "predict_proba", "decision_function"):
        if hasattr(a, method):
            assert np.array_equal(getattr(a, method)(X), getattr(b, method)(X)), method
    trees_a, trees_b = sub_estimators(a), sub_estimators(b)
    assert len(trees_a) == len(trees_b)
    for i, (ta, tb) in enumerate(zip(trees_a, trees_b)):
        assert_trees_equal(ta.tree_, tb.tree_, f"estimators_[{i}].tree_")
        assert ta.get_params().keys() == tb.get_params().keys()
        assert ta.max_depth == tb.max_depth and ta.max_features_ == tb.max_features_, i


# --------------------------------------------------------------------------- 1. no uninitialised bytes
FITS = {
    "tree": lambda X, y: DecisionTreeClassifier(random_state=0).fit(X, y),
    "forest": lambda X, y: RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y),
    "gradient-boosting": lambda X, y: GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y),
}


@pytest.mark.parametrize("kind", sorted(FITS))
def test_two_loaded_copies_pickle_to_the_same_bytes(kind):
    X, y = make_data("multiclass")
    first = round_trip(FITS[kind](X, y), lazy=False)
    junk = [np.full(1 << 16, 0xAB, dtype=np.uint8) for _ in range(64)]  # leave non-zero bytes on the heap
    del junk
    second = round_trip(FITS[kind](X, y), lazy=False)
    assert pickle.dumps(first) == pickle.dumps(second)
    assert joblib.hash(first) == joblib.hash(second)


def test_padding_bytes_of_loaded_node_records_are_zero():
    X, y = make_data("multiclass")
    tree = round_trip(DecisionTreeClassifier(random_state=0).fit(X, y), lazy=False).tree_
    nodes = tree.__getstate__()["nodes"]
    covered = np.zeros(nodes.dtype.itemsize, dtype=bool)
    for name in nodes.dtype.names:
        dtype, offset = nodes.dtype.fields[name][:2]
        covered[offset : offset + dtype.itemsize] = True
    assert not covered.all(), "this sklearn's node record has no padding to check"
    raw = nodes.view(np.uint8).reshape(len(nodes), nodes.dtype.itemsize)
    assert not raw[:, ~covered].any()


# --------------------------------------------------------------------------- 2. odd but valid states load
@pytest.mark.parametrize("lazy", [False, True])
def test_warm_start_refit_without_new_stages_loads(lazy):
    X, y = [[0, 1], [2, 3]], [0, 1]
    original = GradientBoostingClassifier(n_estimators=10, warm_start=True).fit(X, y).fit(X, y)
    assert (original.n_estimators_, original.estimators_.shape) == (11, (10, 1))  # sklearn's own count
    loaded = round_trip(original, lazy=lazy)
    assert (loaded.n_estimators_, loaded.estimators_.shape) == (11, (10, 1))
    assert_same_model(original, loaded, np.array(X, dtype=float))
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    predictor = treeshard.Predictor(store)
    assert predictor.n_estimators == 10
    assert np.array_equal(predictor.predict_proba(np.array(X, dtype=float)), original.predict_proba(X))


# --------------------------------------------------------------------------- 3. inconsistent models are refused at save
def test_forest_with_outputs_its_trees_lack_is_refused_at_save():
    X, y = make_data("multiclass")
    forest = RandomForestClassifier(n_estimators=3, warm_start=True, class_weight="balanced", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn: balanced weights with warm_start; no new trees
        forest.fit(X, y).fit(X, np.column_stack([y, y]))
    assert forest.n_outputs_ == 2 and forest.estimators_[0].n_outputs_ == 1
    message = (
        "cannot save this RandomForestClassifier: its state is inconsistent "
        "(config.fitted.n_outputs_: 2, but trees have 1 outputs)"
    )
    with pytest.raises(UnsupportedEstimatorError, match=re.escape(message)):
        treeshard.save(forest, zarr.storage.MemoryStore())


def test_trees_that_disagree_with_each_other_are_refused_at_save():
    X, y = make_data("multiclass")
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)
    forest.estimators_[1] = DecisionTreeClassifier(random_state=0).fit(X, y % 2)
    message = "RandomForestClassifier: tree 1 has 5 features, 1 outputs and [2] classes, but tree 0 has 5 features, 1 outputs and [4] classes"
    with pytest.raises(UnsupportedEstimatorError, match=re.escape(message)):
        treeshard.save(forest, zarr.storage.MemoryStore())


def test_gradient_boosting_with_a_wrong_stage_count_is_refused_at_save():
    X, y = make_data("regression")
    gb = GradientBoostingRegressor(n_estimators=3, random_state=0).fit(X, y)
    gb.n_estimators_ = 7
    message = "cannot save this GradientBoostingRegressor: its state is inconsistent (config.fitted.n_estimators_: 7 stages of 1 trees, but 3 trees are stored)"
    with pytest.raises(UnsupportedEstimatorError, match=re.escape(message)):
        treeshard.save(gb, zarr.storage.MemoryStore())


# --------------------------------------------------------------------------- 4. fitted state that is not in the params
def test_huber_delta_set_while_fitting_survives():
    X, y = make_data("regression")
    original = GradientBoostingRegressor(loss="huber", alpha=0.8, n_estimators=20, random_state=0).fit(X, y)
    loaded = round_trip(original, lazy=False)
    assert loaded._loss.closs.delta == original._loss.closs.delta != 0.5  # not what the params would rebuild


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("make", [GradientBoostingClassifier, RandomForestClassifier])
def test_each_tree_keeps_the_params_it_was_fitted_with(make, lazy):
    X, y = make_data("multiclass")
    original = make(n_estimators=4, max_depth=1, max_features=2, warm_start=True, random_state=0).fit(X, y)
    original.set_params(n_estimators=6, max_depth=3, max_features=4).fit(X, y)
    loaded = round_trip(original, lazy=lazy)
    depths = [e.max_depth for e in sub_estimators(loaded)]
    assert depths == [e.max_depth for e in sub_estimators(original)]
    assert sorted(set(depths)) == [1, 3]
    assert [e.max_features_ for e in sub_estimators(loaded)] == [e.max_features_ for e in sub_estimators(original)]
    assert_same_model(original, loaded, X)


@pytest.mark.parametrize("kind", sorted(FITS))
def test_models_fitted_once_store_no_per_tree_or_loss_state(kind):
    """What older readers refuse is written only when a model has it."""
    X, y = make_data("multiclass")
    store = zarr.storage.MemoryStore()
    treeshard.save(FITS[kind](X, y), store)
    with treeshard.open(store) as handle:
        assert not {"tree_params", "_loss"} & set(handle.config.fitted)


# --------------------------------------------------------------------------- 5. warm starts continue exactly
CONTINUED = {
    "rf-classifier": (lambda: RandomForestClassifier(n_estimators=4, max_depth=4, random_state=3), "multiclass"),
    "rf-oob": (lambda: RandomForestClassifier(n_estimators=8, max_depth=4, oob_score=True, random_state=3), "binary"),
    "et-regressor": (lambda: ExtraTreesRegressor(n_estimators=4, max_depth=5, bootstrap=True, random_state=3), "regression"),
    "gb-classifier-subsample": (lambda: GradientBoostingClassifier(n_estimators=4, subsample=0.6, max_features=3, random_state=3), "multiclass"),
    "gb-regressor-huber-subsample": (
        lambda: GradientBoostingRegressor(loss="huber", n_estimators=4, subsample=0.7, max_features=0.5, random_state=3),
        "regression",
    ),
    "gb-binary-depth-change": (lambda: GradientBoostingClassifier(n_estimators=4, max_depth=2, subsample=0.5, random_state=3), "binary"),
}


@pytest.mark.filterwarnings("ignore:Some inputs do not have OOB scores:UserWarning")
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("name", sorted(CONTINUED))
def test_continuing_a_warm_start_from_a_loaded_model_equals_continuing_the_original(name, lazy):
    make, task = CONTINUED[name]
    X, y = make_data(task)
    original = make().fit(X, y)
    loaded = round_trip(original, lazy=lazy)
    more = {"n_estimators": original.n_estimators + 3, "warm_start": True}
    if name.endswith("depth-change"):
        more["max_depth"] = 3
    original.set_params(**more).fit(X, y)
    loaded.set_params(**more).fit(X, y)
    assert_same_model(original, loaded, X)
    for attribute in ("train_score_", "oob_improvement_", "oob_scores_", "oob_decision_function_", "oob_prediction_"):
        if hasattr(original, attribute):
            assert np.array_equal(getattr(original, attribute), getattr(loaded, attribute)), attribute
    if hasattr(original, "oob_score_"):
        assert np.array_equal(original.oob_score_, loaded.oob_score_, equal_nan=True)
    if hasattr(original, "_rng"):
        state_a, state_b = original._rng.get_state(), loaded._rng.get_state()
        assert state_a[2:] == state_b[2:] and np.array_equal(state_a[1], state_b[1])
    # ... and a second round trip of the continued model is still the same model.
    assert_same_model(original, round_trip(loaded, lazy=False), X)


def test_a_tree_refit_after_loading_equals_the_original_refit():
    X, y = make_data("regression")
    original = DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, y)
    loaded = round_trip(original, lazy=False)
    assert_same_model(original.fit(X, y), loaded.fit(X, y), X)


def test_a_negative_huber_delta_is_refused(tmp_path):
    X, y = make_data("regression")
    path = tmp_path / "model"
    treeshard.save(GradientBoostingRegressor(loss="huber", n_estimators=2, random_state=0).fit(X, y), path)
    edit_config(path, lambda config: config["fitted"]["_loss"].update(delta={"float": -1.0}))
    reseal(path)
    with pytest.raises(ConfigError, match=re.escape("config.fitted._loss.delta: expected a finite float >= 0, got float -1.0")):
        treeshard.load(path)
