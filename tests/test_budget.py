"""Scoring within a memory budget: ``load(store, max_memory=...)``.

- ``max_memory`` takes bytes or a human string, and refuses anything else
  with a ValueError;
- a forest whose trees exceed the budget streams them through memory: every
  output is identical to the unbudgeted model's, and the tree cache stays
  within a quarter of the budget;
- a model that fits the budget loads as if no budget was set;
- what cannot stream (gradient boosting, single trees, ``lazy=False``) raises
  :class:`treeshard.MemoryBudgetError` before reading any tree.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections import Counter

import numpy as np
import pytest
import zarr
from helpers.compare import assert_equal_outputs, assert_same_state
from helpers.data import make_data
from helpers.counting_store import (
    CountingStore,
    is_node_column_key,
    node_chunk_extents,
    save_with_small_chunks,
)
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier

import treeshard
from treeshard import MemoryBudgetError, TreeshardError
from treeshard.columns import NODE_COLUMNS
from treeshard.lazy import DEFAULT_BATCH_BYTES, TreeSource
from treeshard.planning import parse_memory

# --------------------------------------------------------------------------- parsing
GOOD = [
    (1000, 1000),
    (np.int64(4096), 4096),
    ("512MB", 512 * 10**6),
    ("1GiB", 2**30),
    ("1.5 GiB", 3 * 2**29),
    (" 2kb ", 2000),
    ("64KiB", 65536),
    ("100", 100),
    ("100B", 100),
    ("3TB", 3 * 10**12),
    ("1e3", 1000),
]
BAD = [0, -1, -(2**40), "", "MB", "-1MB", "0", "0MB", "-0.5GB", "1 XB", "1MBB", "1e", "nan MB", "inf", "1,5GB", "GiB1", True, False, 1.5, 2.0**30, [1], b"1MB"]


@pytest.mark.parametrize(("value", "expected"), GOOD, ids=[repr(v) for v, _ in GOOD])
def test_max_memory_parses_bytes_and_human_strings(value, expected):
    parsed = parse_memory(value)
    assert parsed == expected and type(parsed) is int


def test_a_float_is_refused_with_what_to_write_instead():
    message = "max_memory must be an integer number of bytes or a string like '512MB', '1.5GiB' or '2e9', got 2000000000.0"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_memory(2e9)
    assert parse_memory("2e9") == 2 * 10**9


def test_no_budget_is_none():
    assert parse_memory(None) is None


@pytest.mark.parametrize("value", BAD, ids=[repr(v) for v in BAD])
def test_bad_max_memory_raises_value_error(value):
    with pytest.raises(ValueError, match="max_memory must be"):
        parse_memory(value)


@pytest.mark.parametrize("value", ["-1MB", 0, "lots", -5])
def test_load_refuses_a_bad_budget(value):
    store, _, _, _ = budget_forest()
    with pytest.raises(ValueError, match="max_memory must be"):
        treeshard.load(store, max_memory=value)


@pytest.mark.parametrize("value", ["0.4B", "0.5", "0.0001KB"])
def test_a_budget_that_rounds_to_zero_bytes_is_refused(value):
    with pytest.raises(ValueError, match="max_memory must be"):
        parse_memory(value)


# --------------------------------------------------------------------------- models
@functools.cache
def budget_forest():  # type: ignore[no-untyped-def]
    """(store, original, X, needed): a forest of about 3 MB of trees in memory,
    node columns in chunks of 2048 nodes so that streaming runs in many batches."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(3000, 6))
    y = np.digitize(X[:, 0] + rng.normal(size=3000), [-0.5, 0.5])
    original = RandomForestClassifier(n_estimators=24, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    save_with_small_chunks(original, store, chunk_rows=2048, chunks_per_shard=4)
    return store, original, X[:600], needed_bytes(store)


def needed_bytes(store, **kwargs) -> int:  # type: ignore[no-untyped-def]
    """What the selected trees need in memory, as load() counts it against max_memory."""
    estimators = treeshard.load(store, **kwargs).estimators_
    return int(estimators.source.tree_bytes(estimators.indices).sum())


@functools.cache
def unbudgeted_outputs(method: str) -> np.ndarray:
    store, _, X, _ = budget_forest()
    return getattr(treeshard.load(store), method)(X)


# --------------------------------------------------------------------------- over budget: streaming
def test_the_forest_is_larger_than_the_budget():
    _, _, _, needed = budget_forest()
    assert needed > 2 * 10**6  # the trees need about 3 MB; the budget below is 1 MB


@pytest.mark.parametrize("method", ["predict_proba", "predict", "apply", "predict_log_proba"])
def test_over_budget_forest_predicts_exactly_like_the_unbudgeted_one(method):
    store, original, X, _ = budget_forest()
    budgeted = treeshard.load(store, max_memory="1MB")
    cache = budgeted.estimators_.cache
    assert cache.capacity_bytes == 10**6 // 4
    assert budgeted.estimators_.batch_bytes == 10**6 // 64
    with np.errstate(divide="ignore"):
        got = getattr(budgeted, method)(X)
        assert_equal_outputs(unbudgeted_outputs(method), got, method)
        assert_equal_outputs(getattr(original, method)(X), got, method)
    assert 0 < cache.nbytes <= 10**6 // 4
    # a second pass reads the trees again, and still gives the same results
    with np.errstate(divide="ignore"):
        assert_equal_outputs(got, getattr(budgeted, method)(X), f"{method} again")
    assert cache.nbytes <= 10**6 // 4


def test_over_budget_forest_scores_and_ranks_features_exactly():
    store, original, X, _ = budget_forest()
    budgeted = treeshard.load(store, max_memory=10**6)
    y = original.predict(X)
    assert budgeted.score(X, y) == original.score(X, y)
    assert_equal_outputs(original.feature_importances_, budgeted.feature_importances_, "feature_importances_")
    indicator, n_nodes_ptr = budgeted.decision_path(X[:50])
    expected_indicator, expected_ptr = original.decision_path(X[:50])
    assert (indicator != expected_indicator).nnz == 0 and np.array_equal(n_nodes_ptr, expected_ptr)
    assert budgeted.estimators_.cache.nbytes <= 10**6 // 4


def test_the_cache_stays_within_a_quarter_of_the_budget_while_streaming():
    store, original, _, _ = budget_forest()
    budgeted = treeshard.load(store, max_memory="1MB")
    cache = budgeted.estimators_.cache
    seen = 0
    for i, estimator in enumerate(budgeted.estimators_):
        assert_same_state(original.estimators_[i], estimator, f"estimators_[{i}]")
        assert cache.nbytes <= 10**6 // 4
        seen += 1
    assert seen == 24
    assert len(cache) < 24  # the trees did not all stay


def test_over_budget_items_are_built_on_demand():
    store, original, _, _ = budget_forest()
    budgeted = treeshard.load(store, max_memory="1MB")
    for i in (5, -1, 0, 5):
        assert_same_state(original.estimators_[i], budgeted.estimators_[i])
    assert budgeted.estimators_.cache.nbytes <= 10**6 // 4


def test_multioutput_regressor_over_budget_predicts_exactly():
    X, y = make_data("multioutput_regression")
    original = ExtraTreesRegressor(n_estimators=12, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    save_with_small_chunks(original, store, chunk_rows=256, chunks_per_shard=2)
    needed = needed_bytes(store)
    budgeted = treeshard.load(store, max_memory=needed // 3)
    assert budgeted.estimators_.cache.capacity_bytes == needed // 3 // 4
    assert_equal_outputs(original.predict(X), budgeted.predict(X), "predict")
    assert_equal_outputs(original.apply(X), budgeted.apply(X), "apply")
    assert budgeted.estimators_.cache.nbytes <= needed // 3 // 4


def test_default_geometry_forest_streams_within_a_budget_too():
    X, y = make_data("string")
    original = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    needed = needed_bytes(store)
    budgeted = treeshard.load(store, max_memory=needed // 2)
    assert_equal_outputs(original.predict_proba(X), budgeted.predict_proba(X), "predict_proba")
    assert_equal_outputs(original.predict(X), budgeted.predict(X), "predict")
    assert budgeted.estimators_.cache.nbytes <= needed // 2 // 4


# --------------------------------------------------------------------------- within budget: as if none
@pytest.mark.parametrize("extra", [0, 1, 10**9])
def test_a_forest_within_the_budget_loads_as_without_one(extra):
    store, _, X, needed = budget_forest()
    # engine="sklearn": the trees, not the flat engine (tests/test_dispatch.py), score this small X
    loaded = treeshard.load(store, max_memory=needed + extra, engine="sklearn")  # exactly the need fits
    estimators = loaded.estimators_
    assert estimators.cache.capacity_bytes is None
    assert estimators.batch_bytes == min(DEFAULT_BATCH_BYTES, max(1, extra // 8 // 8))
    assert_equal_outputs(unbudgeted_outputs("predict_proba"), loaded.predict_proba(X), "predict_proba")
    assert len(estimators.cache) == 24  # every tree stays in memory, as without a budget
    assert estimators.cache.nbytes == needed


def test_one_byte_under_the_need_streams():
    store, _, X, needed = budget_forest()
    loaded = treeshard.load(store, max_memory=needed - 1)
    assert loaded.estimators_.cache.capacity_bytes == (needed - 1) // 4
    assert_equal_outputs(unbudgeted_outputs("predict"), loaded.predict(X), "predict")
    assert loaded.estimators_.cache.nbytes <= (needed - 1) // 4


def test_eager_load_within_the_budget_works():
    store, original, X, needed = budget_forest()
    loaded = treeshard.load(store, max_memory=needed, lazy=False)
    assert type(loaded.estimators_) is list and len(loaded.estimators_) == 24
    assert_equal_outputs(original.predict_proba(X), loaded.predict_proba(X), "predict_proba")


def test_a_selection_that_fits_the_budget_loads_in_full():
    store, _, X, needed = budget_forest()
    few = needed_bytes(store, estimators=3)
    assert few < needed // 4
    loaded = treeshard.load(store, estimators=3, max_memory=few, lazy=False)
    assert len(loaded.estimators_) == 3
    lazy = treeshard.load(store, estimators=3, max_memory=few)
    assert lazy.estimators_.cache.capacity_bytes is None
    assert_equal_outputs(loaded.predict_proba(X), lazy.predict_proba(X), "predict_proba")


# --------------------------------------------------------------------------- what cannot stream
@functools.cache
def gradient_boosting_store():  # type: ignore[no-untyped-def]
    X, y = make_data("multiclass")
    original = GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(original, store)
    return store, original, X


def test_gradient_boosting_over_budget_raises():
    store, _, _ = gradient_boosting_store()
    for lazy in (True, False):
        counting = CountingStore(store)
        with pytest.raises(MemoryBudgetError, match="only forests stream trees") as caught:
            treeshard.load(counting, max_memory="1kB", lazy=lazy)
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, TreeshardError)
        assert "max_memory=1,000" in str(caught.value)
        assert not {key for key in counting.log.touched(kind=None) if is_node_column_key(key)}


def test_gradient_boosting_within_budget_loads():
    store, original, X = gradient_boosting_store()
    loaded = treeshard.load(store, max_memory="1GB")
    assert_equal_outputs(original.predict_proba(X), loaded.predict_proba(X), "predict_proba")


def test_a_prefix_of_gradient_boosting_that_fits_the_budget_loads():
    store, original, X = gradient_boosting_store()
    with pytest.raises(MemoryBudgetError):
        treeshard.load(store, max_memory=20_000)
    loaded = treeshard.load(store, estimators=1, max_memory=20_000)
    assert loaded.n_estimators_ == 1
    assert_equal_outputs(next(original.staged_decision_function(X)), loaded.decision_function(X), "decision_function")


def test_single_tree_over_budget_raises():
    X, y = make_data("multiclass")
    store = zarr.storage.MemoryStore()
    treeshard.save(DecisionTreeClassifier(random_state=0).fit(X, y), store)
    with pytest.raises(MemoryBudgetError, match="a DecisionTreeClassifier: only forests stream trees"):
        treeshard.load(store, max_memory=100)


def test_eager_forest_over_budget_raises():
    store, _, _, needed = budget_forest()
    counting = CountingStore(store)
    with pytest.raises(MemoryBudgetError, match=r"cannot load with lazy=False: only lazily loaded forests stream trees \(load lazily") as caught:
        treeshard.load(counting, max_memory="1MB", lazy=False)
    assert f"need {needed:,} bytes" in str(caught.value)
    assert not {key for key in counting.log.touched(kind=None) if is_node_column_key(key)}
    with treeshard.open(store) as handle, pytest.raises(MemoryBudgetError):
        handle.load(max_memory="1MB", lazy=False)


def test_streaming_reads_every_chunk_and_each_at_most_twice_a_pass():
    """Batches are cut at chunk boundaries: a chunk is shared by at most two batches."""
    store, _, X, _ = budget_forest()
    counting = CountingStore(store)
    budgeted = treeshard.load(counting, max_memory="1MB")
    counting.log.clear()
    assert_equal_outputs(unbudgeted_outputs("predict"), budgeted.predict(X), "predict")
    extents = {(e.key, e.byte_range) for column in NODE_COLUMNS for e in node_chunk_extents(store, f"nodes/{column}")}
    assert len(extents) >= 9 * 10  # many chunks: many batches
    reads = Counter((r.key, r.byte_range) for r in counting.log.gets() if (r.key, r.byte_range) in extents)
    assert set(reads) == extents
    assert max(reads.values()) <= 2



@pytest.mark.parametrize("fits", [False, True], ids=["streamed", "within-the-budget"])
def test_a_pass_over_the_trees_holds_about_an_eighth_of_what_is_left_in_batches(monkeypatch, fits):
    """The read-ahead pipeline's column buffers and the batches of trees it has built but not
    yet handed out, alive at once, stay within the batches' eighth (of the budget when the trees
    stream, of what the trees leave when they fit), give or take what rounding a batch to whole
    chunks and trees adds to each of them."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(2000, 4))
    original = ExtraTreesRegressor(n_estimators=1000, max_depth=3, random_state=0).fit(X, X[:, 0])
    store = zarr.storage.MemoryStore()
    chunk_rows = 64
    save_with_small_chunks(original, store, chunk_rows=chunk_rows, chunks_per_shard=64)
    needed = needed_bytes(store)
    budget = needed + needed // 2 if fits else needed // 2
    share = (budget - needed) // 8 if fits else budget // 8
    live, peak = [0], [0]

    def release(nbytes: int) -> None:
        live[0] -= nbytes

    def track(obj, nbytes):  # type: ignore[no-untyped-def]
        live[0] += nbytes
        peak[0] = max(peak[0], live[0])
        weakref.finalize(obj, release, nbytes)

    def column_buffers(self, n_nodes):  # type: ignore[no-untyped-def]
        out = original_buffers(self, n_nodes)
        block = out["value"]
        while block.base is not None:
            block = block.base
        track(block, block.nbytes)
        return out

    def allocate(self, first, stop):  # type: ignore[no-untyped-def]
        built = original_allocate(self, first, stop)
        track(built, sum(a.nbytes for a in (*built.nodes, *built.values)))
        return built

    original_buffers, original_allocate = TreeSource.column_buffers, TreeSource.allocate
    monkeypatch.setattr(TreeSource, "column_buffers", column_buffers)
    monkeypatch.setattr(TreeSource, "allocate", allocate)
    budgeted = treeshard.load(store, max_memory=budget, engine="sklearn")
    assert budgeted.estimators_.cache.capacity_bytes == (None if fits else budget // 4)
    assert_equal_outputs(original.predict(X[:100]), budgeted.predict(X[:100]), "predict")
    source = budgeted.estimators_.source
    # each of the 3 column buffers and 3 batches of built trees may exceed its share by a chunk and a tree
    rounding = 6 * (chunk_rows + int(source.node_counts.max())) * source.node_bytes
    assert 0 < peak[0] <= share + rounding


def test_an_open_handle_tells_what_a_load_counts_against_the_budget():
    store, _, _, needed = budget_forest()
    with treeshard.open(store) as handle:
        assert handle.needed_bytes() == needed
        assert handle.needed_bytes(estimators=[3, 0]) == needed_bytes(store, estimators=[3, 0])
        with pytest.raises(ValueError, match=r"^estimators=0: choose between 1 and 24 trees$"):
            handle.needed_bytes(estimators=0)
    with treeshard.open(gradient_boosting_store()[0]) as handle:
        with pytest.raises(MemoryBudgetError, match=f"^the selected trees need {handle.needed_bytes():,} bytes in memory, over max_memory=1,000;"):
            handle.load(max_memory=1000)
