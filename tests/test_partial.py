"""Partial loads: ``load(store, estimators=...)`` is the model of just those trees.

A forest loaded with a selection of trees equals a copy of the original
holding those trees (``n_estimators`` set, out-of-bag results dropped); a
gradient boosting model loaded with a prefix of its stages equals the
original stopped at that stage (its staged outputs). Read counting proves
that only the chunks covering the selected trees are read, so that the bytes
read for k of n trees are about k/n of a full read.
"""

from __future__ import annotations

import copy
import functools
import re

import numpy as np
import pytest
import zarr
from helpers.compare import assert_equal_outputs, assert_same_predictions, assert_same_state
from helpers.data import make_data, query_points, query_targets
from helpers.counting_store import (
    CountingStore,
    is_node_column_key,
    node_chunk_extents,
    save_with_small_chunks,
    stored_tree_ptr,
)
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeRegressor

import treeshard
from treeshard.columns import NODE_COLUMNS

pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")

N_TREES = 100
FOREST_CHUNK_ROWS = 64
GB_CHUNK_ROWS = 32


@functools.cache
def forest():  # type: ignore[no-untyped-def]
    """(original, X, y, store): 100 small trees, node columns in chunks of 64 nodes."""
    X, y = make_data("multiclass")
    original = RandomForestClassifier(n_estimators=N_TREES, max_depth=5, oob_score=True, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    save_with_small_chunks(original, store, chunk_rows=FOREST_CHUNK_ROWS, chunks_per_shard=8)
    return original, X, y, store


@functools.cache
def boosting(kind: str):  # type: ignore[no-untyped-def]
    """(original, X, y, store) for a multiclass classifier (3 trees a stage) or a regressor, 40 stages."""
    if kind == "classifier":
        X, y = make_data("multiclass")
        original = GradientBoostingClassifier(n_estimators=40, max_depth=2, subsample=0.8, random_state=0).fit(X, y)
    else:
        X, y = make_data("regression")
        original = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    save_with_small_chunks(original, store, chunk_rows=GB_CHUNK_ROWS, chunks_per_shard=4)
    return original, X, y, store


def selected(spec, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    """The tree ids ``estimators=spec`` names, in order."""
    if isinstance(spec, (int, np.integer)):
        return list(range(int(spec)))
    if isinstance(spec, slice):
        return np.arange(n)[spec].tolist()
    return [int(i) % n for i in spec]


def forest_of(original, ids: list[int]):  # type: ignore[no-untyped-def]
    """The original forest cut down to the trees ``ids`` (in that order): what a
    partial load must equal. Out-of-bag results hold only for all the trees."""
    reference = copy.copy(original)
    reference.estimators_ = [original.estimators_[i] for i in ids]
    reference.n_estimators = len(ids)
    if sorted(ids) != list(range(len(original.estimators_))):
        for name in ("oob_score_", "oob_decision_function_", "oob_prediction_"):
            reference.__dict__.pop(name, None)
    return reference


FOREST_SPECS = {
    "1": 1,
    "10": 10,
    "half": N_TREES // 2,
    "all": N_TREES,
    "np.int64": np.int64(7),
    "slice": slice(5, 25),
    "step": slice(None, None, 7),
    "tail": slice(-10, None),
    "reversed": slice(None, None, -1),
    "clipped": slice(90, 200),
    "unsorted": [3, 0, 7],
    "negative": [-1, 0, 50],
    "array": np.array([10, 11, 12, 40]),
    "range": range(4, 9),
    "tuple": (2, 1),
}


def lazy_and_some_eager(specs: dict, eager: tuple[str, ...]) -> list:  # type: ignore[type-arg]
    """Parameters: every spec lazily, the ``eager`` ones also with ``lazy=False``."""
    cases = [pytest.param(spec, True, id=f"{name}-lazy") for name, spec in specs.items()]
    return cases + [pytest.param(specs[name], False, id=f"{name}-eager") for name in eager]


# --------------------------------------------------------------------------- forests
@pytest.mark.parametrize(("spec", "lazy"), lazy_and_some_eager(FOREST_SPECS, ("10", "unsorted")))
def test_partial_forest_is_the_forest_of_those_trees(spec, lazy):
    original, X, y, store = forest()
    ids = selected(spec, N_TREES)
    loaded = treeshard.load(store, estimators=spec, lazy=lazy)
    assert loaded.n_estimators == len(loaded.estimators_) == len(ids)
    if len(ids) < N_TREES:
        for name in ("oob_score_", "oob_decision_function_"):
            assert not hasattr(loaded, name), name
    else:
        assert loaded.oob_score_ == original.oob_score_
    reference = forest_of(original, ids)
    if len(ids) <= 20:
        assert_same_state(reference, loaded)  # trees (in the order asked), random states, every attribute
    else:  # the same, but the trees compared through their outputs (below) and random states
        assert [e.random_state for e in loaded.estimators_] == [e.random_state for e in reference.estimators_]
        for name in ("n_estimators", "n_outputs_", "n_features_in_"):
            assert getattr(loaded, name) == getattr(reference, name), name
    Xq = query_points(X, original)
    if ids in (list(range(10)), [3, 0, 7]):
        assert_same_predictions(reference, loaded, Xq, query_targets(y))  # every method
    else:
        for method in ("predict_proba", "predict", "apply"):
            assert_equal_outputs(getattr(reference, method)(Xq), getattr(loaded, method)(Xq), method)


def test_handle_load_takes_the_same_selection():
    original, X, _, store = forest()
    with treeshard.open(store) as handle:
        loaded = handle.load(estimators=[5, 2], lazy=False)
    assert np.array_equal(loaded.predict_proba(X), forest_of(original, [5, 2]).predict_proba(X))


def test_partial_forest_streams_within_a_budget():
    original, X, _, store = forest()
    full = treeshard.load(store, estimators=slice(0, 60))
    needed = int(full.estimators_.source.tree_bytes(full.estimators_.indices).sum())
    loaded = treeshard.load(store, estimators=slice(0, 60), max_memory=needed // 3)
    assert loaded.estimators_.cache.capacity_bytes == needed // 3 // 4
    assert np.array_equal(loaded.predict_proba(X), forest_of(original, list(range(60))).predict_proba(X))
    assert loaded.estimators_.cache.nbytes <= needed // 3 // 4


# --------------------------------------------------------------------------- what a partial load reads
def chunk_reads(log) -> list[tuple[str, tuple[int, int]]]:  # type: ignore[no-untyped-def]
    """Node chunk reads (shard index reads excluded), one entry per request."""
    return [(r.key, r.byte_range) for r in log.gets() if is_node_column_key(r.key)]


def chunks_of(inner, tree_ptr: np.ndarray, ids: list[int]) -> set[tuple[str, tuple[int, int]]]:  # type: ignore[no-untyped-def]
    """(shard key, byte range) of every chunk holding a node of the trees ``ids``."""
    spans = [(int(tree_ptr[i]), int(tree_ptr[i + 1])) for i in ids]
    out = set()
    for column in NODE_COLUMNS:
        for extent in node_chunk_extents(inner, f"nodes/{column}"):
            if any(extent.rows[0] < stop and start < extent.rows[1] for start, stop in spans):
                out.add((extent.key, extent.byte_range))
    return out


def all_chunks(inner) -> set[tuple[str, tuple[int, int]]]:  # type: ignore[no-untyped-def]
    return {(e.key, e.byte_range) for column in NODE_COLUMNS for e in node_chunk_extents(inner, f"nodes/{column}")}


def chunks_read(log, inner) -> set[tuple[str, tuple[int, int]]]:  # type: ignore[no-untyped-def]
    """The chunks that node reads fetched: a request is one chunk, or (an eager load, which reads
    a shard's run of chunks at once) adjacent whole chunks of one shard, none cut."""
    chunks = all_chunks(inner)
    out = set()
    for key, (start, stop) in chunk_reads(log):
        covered = {(k, r) for k, r in chunks if k == key and start <= r[0] and r[1] <= stop}
        if sum(r[1] - r[0] for _, r in covered) == stop - start:  # whole chunks only (not a shard index)
            out |= covered
    return out


def read_trees(store, *, lazy: bool = True, **kwargs):  # type: ignore[no-untyped-def]
    """Load from a counting store and use every loaded tree; returns (model, log)."""
    counting = CountingStore(store)
    model = treeshard.load(counting, lazy=lazy, **kwargs)
    if hasattr(model, "estimators_") and not isinstance(model.estimators_, np.ndarray):
        list(model.estimators_)
    return model, counting.log


READ_SPECS = {"1": 1, "10": 10, "half": N_TREES // 2, "slice": slice(20, 30), "unsorted": [3, 0, 7], "step": slice(None, None, 10)}


@pytest.mark.parametrize(("spec", "lazy"), lazy_and_some_eager(READ_SPECS, ("10", "unsorted")))
def test_partial_forest_reads_only_the_chunks_of_its_trees(spec, lazy):
    _, _, _, store = forest()
    tree_ptr = stored_tree_ptr(store)
    assert len(node_chunk_extents(store, "nodes/threshold")) >= 30  # really chunked
    ids = selected(spec, N_TREES)
    _, log = read_trees(store, lazy=lazy, estimators=spec)
    wanted = chunks_of(store, tree_ptr, ids)
    # every chunk of the selected trees, and no other chunk (decoded chunks may be reused)
    assert chunks_read(log, store) == wanted
    assert not {r for r in chunk_reads(log) if r[1] is None}  # no whole-shard reads


@functools.cache
def full_read_bytes() -> int:
    """Node bytes read by a full load of the forest that uses every tree."""
    _, log = read_trees(forest()[3])
    return log.node_bytes()


@pytest.mark.parametrize(("k", "low", "high"), [(1, 0.0, 0.10), (10, 0.05, 0.25), (N_TREES // 2, 0.35, 0.65), (N_TREES, 1.0, 1.0)])
def test_bytes_read_for_k_of_n_trees_are_about_k_over_n(k, low, high):
    _, _, _, store = forest()
    _, partial = read_trees(store, estimators=k)
    ratio = partial.node_bytes() / full_read_bytes()
    assert low <= ratio <= high, ratio


def test_partial_load_reads_nothing_before_its_trees_are_used():
    _, _, _, store = forest()
    counting = CountingStore(store)
    loaded = treeshard.load(counting, estimators=10)
    assert not {key for key in counting.log.touched(kind=None) if is_node_column_key(key)}
    assert len(loaded.estimators_) == 10


# --------------------------------------------------------------------------- gradient boosting
GB_SPECS = {
    "1": 1,
    "10": 10,
    "all": 40,
    "slice": slice(0, 10),
    "open-slice": slice(None, 25),
    "whole-slice": slice(None),
    "list": [0, 1, 2],
    "array": np.arange(5),
}


def stage(iterator, k: int):  # type: ignore[no-untyped-def]
    """The ``k``-th (1-based) item of a staged iterator."""
    for i, item in enumerate(iterator, start=1):
        if i == k:
            return item
    raise AssertionError(f"fewer than {k} stages")


@pytest.mark.parametrize(("spec", "lazy"), lazy_and_some_eager(GB_SPECS, ("10",)))
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_gradient_boosting_prefix_is_the_model_stopped_at_that_stage(kind, spec, lazy):
    original, X, _, store = boosting(kind)
    k = len(selected(spec, 40))
    loaded = treeshard.load(store, estimators=spec, lazy=lazy)
    per_stage = original.estimators_.shape[1]
    assert loaded.n_estimators_ == loaded.n_estimators == k
    assert loaded.estimators_.shape == (k, per_stage)
    assert_same_state(original.estimators_[:k], loaded.estimators_)
    assert_equal_outputs(original.train_score_[:k], loaded.train_score_, "train_score_")
    if kind == "classifier":  # subsample < 1: out-of-bag improvements, cut at stage k
        assert_equal_outputs(original.oob_improvement_[:k], loaded.oob_improvement_, "oob_improvement_")
        assert_equal_outputs(original.oob_scores_[:k], loaded.oob_scores_, "oob_scores_")
        assert loaded.oob_score_ == original.oob_scores_[k - 1]
    Xq = query_points(X, original)
    assert_equal_outputs(stage(original.staged_predict(Xq), k), loaded.predict(Xq), "predict")
    if kind == "classifier":
        assert_equal_outputs(stage(original.staged_decision_function(Xq), k), loaded.decision_function(Xq), "decision_function")
        assert_equal_outputs(stage(original.staged_predict_proba(Xq), k), loaded.predict_proba(Xq), "predict_proba")
    staged = list(loaded.staged_predict(Xq))
    assert len(staged) == k
    for i, (a, b) in enumerate(zip(original.staged_predict(Xq), staged)):
        assert_equal_outputs(a, b, f"staged_predict[{i}]")
    assert_equal_outputs(original.apply(Xq)[:, :k], loaded.apply(Xq), "apply")
    if k == 40:
        assert_same_state(original, loaded)


def test_gradient_boosting_prefix_equals_a_truncated_copy():
    original, X, y, store = boosting("regressor")
    loaded = treeshard.load(store, estimators=12)
    reference = copy.copy(original)
    reference.estimators_ = original.estimators_[:12]
    reference.n_estimators = reference.n_estimators_ = 12
    reference.train_score_ = original.train_score_[:12]
    assert_same_state(reference, loaded)
    assert_same_predictions(reference, loaded, query_points(X, original), query_targets(y))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_gradient_boosting_prefix_reads_about_k_over_n(kind):
    original, _, _, store = boosting(kind)
    per_stage = original.estimators_.shape[1]
    tree_ptr = stored_tree_ptr(store)
    assert len(node_chunk_extents(store, "nodes/threshold")) >= 15  # really chunked
    _, full = read_trees(store)
    _, partial = read_trees(store, estimators=4)
    assert partial.node_bytes() / full.node_bytes() < 0.25
    assert chunks_read(partial, store) == chunks_of(store, tree_ptr, list(range(4 * per_stage)))


# --------------------------------------------------------------------------- errors
FOREST_ERRORS = [
    (0, ValueError),
    (-1, ValueError),
    (N_TREES + 1, ValueError),
    ([1, 1], ValueError),  # duplicates
    ([0, -N_TREES], ValueError),  # the same tree twice
    ([], ValueError),
    (np.array([], dtype=np.int64), ValueError),
    (slice(5, 5), ValueError),  # selects nothing
    (slice(200, None), ValueError),
    (slice(None, None, 0), ValueError),
    ([N_TREES], IndexError),
    ([-N_TREES - 1], IndexError),
    ("3", TypeError),
    (2.0, TypeError),
    (np.float64(2), TypeError),
    (True, TypeError),
    (np.bool_(True), TypeError),
    ([1.0, 2.0], TypeError),
    ([True, False], TypeError),
    ([1, "a"], TypeError),
    ({1, 2}, TypeError),
    ({1: 2}, TypeError),
    (iter([1, 2]), TypeError),
    (slice("a"), TypeError),
]


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize(("spec", "error"), FOREST_ERRORS, ids=[repr(s) for s, _ in FOREST_ERRORS])
def test_bad_forest_selections_raise(spec, error, lazy):
    _, _, _, store = forest()
    counting = CountingStore(store)
    with pytest.raises(error) as caught:
        treeshard.load(counting, estimators=spec, lazy=lazy)
    assert type(caught.value) is error
    assert not {key for key in counting.log.touched(kind=None) if is_node_column_key(key)}  # refused before reading trees


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([3, N_TREES], f"estimators: index {N_TREES} is out of range for {N_TREES} trees (0 to {N_TREES - 1}, or -{N_TREES} to -1)"),
        (np.array([-N_TREES - 1, 99]), f"estimators: index {-N_TREES - 1} is out of range for {N_TREES} trees (0 to {N_TREES - 1}, or -{N_TREES} to -1)"),
    ],
    ids=["list", "negative-array"],
)
def test_an_index_out_of_range_is_named(spec, message):
    _, _, _, store = forest()
    with pytest.raises(IndexError, match=f"^{re.escape(message)}$"):
        treeshard.load(store, estimators=spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([4, 1, 1], "estimators: indices must be distinct; tree 1 is selected twice (at positions 1 and 2)"),
        (np.array([5, 0, -N_TREES]), "estimators: indices must be distinct; tree 0 is selected twice (at positions 1 and 2)"),
        ([2, 7, 3, -N_TREES + 2], "estimators: indices must be distinct; tree 2 is selected twice (at positions 0 and 3)"),
    ],
    ids=["list", "negative-array", "far-apart"],
)
def test_a_tree_selected_twice_is_named(spec, message):
    _, _, _, store = forest()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        treeshard.load(store, estimators=spec)


@pytest.mark.parametrize("spec", [np.array([[0], [1]]), np.array([[0, 1], [2, 3]]), [[0], [1]]], ids=["column", "square", "nested-list"])
def test_a_two_dimensional_selection_is_refused_at_load(spec):
    _, _, _, store = forest()
    with pytest.raises(TypeError, match="estimators: expected a 1-D list of indices"):
        treeshard.load(store, estimators=spec)


@pytest.mark.parametrize("spec", [b"\x01", bytearray(b"\x01")], ids=["bytes", "bytearray"])
def test_bytes_are_not_a_selection(spec):
    _, _, _, store = forest()
    with pytest.raises(TypeError):
        treeshard.load(store, estimators=spec)


GB_ERRORS = [
    (0, ValueError),
    (41, ValueError),
    ([1, 2], ValueError),  # not a prefix
    ([2, 1, 0], ValueError),  # a prefix, out of order
    (slice(1, 5), ValueError),
    (slice(None, None, 2), ValueError),
    (slice(None, None, -1), ValueError),
    ([0, 0], ValueError),
    ([40], IndexError),
    (1.0, TypeError),
    ("2", TypeError),
]


@pytest.mark.parametrize(("spec", "error"), GB_ERRORS, ids=[repr(s) for s, _ in GB_ERRORS])
def test_bad_gradient_boosting_selections_raise(spec, error):
    _, _, _, store = boosting("classifier")
    with pytest.raises(error) as caught:
        treeshard.load(store, estimators=spec)
    assert type(caught.value) is error


def test_gradient_boosting_prefix_error_names_the_rule():
    _, _, _, store = boosting("classifier")
    with pytest.raises(ValueError, match="gradient boosting loads a prefix of its stages"):
        treeshard.load(store, estimators=[1, 2])
    with pytest.raises(ValueError, match="choose between 1 and 40 stages"):
        treeshard.load(store, estimators=41)


@pytest.mark.parametrize("spec", [1, slice(None), [0]], ids=str)
def test_a_single_tree_takes_no_selection(spec):
    X, y = make_data("regression")
    store = zarr.storage.MemoryStore()
    treeshard.save(DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, y), store)
    with pytest.raises(TypeError, match="a DecisionTreeRegressor has one tree"):
        treeshard.load(store, estimators=spec)
    assert treeshard.load(store, estimators=None).tree_.node_count > 1
