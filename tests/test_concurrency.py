"""Thread safety: many threads using one lazily loaded model at once.

Threads start together (a barrier) on a freshly loaded model, so that they
race to read and build the same trees; every result must be identical to
the eagerly loaded model's. Nothing here is timed.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import zarr
from helpers.compare import assert_equal_outputs, assert_same_state
from helpers.counting_store import save_with_small_chunks
from helpers.data import make_data
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier

import treeshard
from treeshard import Predictor

N_THREADS = 8


@functools.cache
def forest():  # type: ignore[no-untyped-def]
    """(original, X, memory store): 16 fully grown trees, node columns in chunks of 512 nodes."""
    X, y = make_data("multiclass")
    original = RandomForestClassifier(n_estimators=16, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    save_with_small_chunks(original, store, chunk_rows=512, chunks_per_shard=2)
    return original, X, store


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    original, _, _ = forest()
    path = str(tmp_path_factory.mktemp("concurrency") / "forest.zip")
    save_with_small_chunks(original, path, chunk_rows=512, chunks_per_shard=2)
    return path


@functools.cache
def eager(method: str) -> np.ndarray:
    _, X, store = forest()
    return getattr(treeshard.load(store, lazy=False), method)(X)


def needed_bytes(store: Any) -> int:
    estimators = treeshard.load(store).estimators_
    return int(estimators.source.tree_bytes(estimators.indices).sum())


def run_together(tasks: list[Callable[[], Any]]) -> list[Any]:
    """Run every task in its own thread, all released at once; re-raise the first error."""
    barrier = threading.Barrier(len(tasks))

    def start(task: Callable[[], Any]) -> Any:
        barrier.wait()
        return task()

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(start, task) for task in tasks]
        return [future.result() for future in futures]


# --------------------------------------------------------------------------- predicting at once
@pytest.mark.parametrize("engine", ["sklearn", "auto"])
@pytest.mark.parametrize("source", ["memory", "zip"])
def test_threads_predicting_on_one_lazy_model(source, engine, zip_path, monkeypatch):
    original, X, store = forest()
    built = []
    for_trees = Predictor.for_trees.__func__
    monkeypatch.setattr(Predictor, "for_trees", classmethod(lambda cls, *a: built.append(1) or for_trees(cls, *a)))
    model = treeshard.load(store if source == "memory" else zip_path, engine=engine)  # cold: nothing built yet
    methods = ["predict_proba", "predict", "apply", "predict_proba"] * (N_THREADS // 4)
    results = run_together([functools.partial(getattr(model, m), X) for m in methods])
    for method, result in zip(methods, results):
        assert_equal_outputs(eager(method), result, method)
        assert_equal_outputs(getattr(original, method)(X), result, method)
    if engine == "sklearn":
        assert len(model.estimators_.cache) == 16 and built == []
    else:  # this small X: the flat engine, built once for all threads; no sklearn tree
        assert len(model.estimators_.cache) == 0 and built == [1]


def test_threads_predicting_on_one_streaming_model():
    _, X, store = forest()
    budget = needed_bytes(store) // 3
    model = treeshard.load(store, max_memory=budget)
    assert model.estimators_.cache.capacity_bytes == budget // 4
    methods = ["predict_proba", "apply"] * (N_THREADS // 2)
    for _ in range(2):
        results = run_together([functools.partial(getattr(model, m), X) for m in methods])
        for method, result in zip(methods, results):
            assert_equal_outputs(eager(method), result, method)
    assert model.estimators_.cache.nbytes <= budget // 4


def test_streaming_and_unbudgeted_models_side_by_side():
    _, X, store = forest()
    budget = needed_bytes(store) // 4
    streaming, lazy = treeshard.load(store, max_memory=budget), treeshard.load(store)
    models = [streaming, lazy] * (N_THREADS // 2)
    results = run_together([functools.partial(m.predict_proba, X) for m in models])
    for result in results:
        assert_equal_outputs(eager("predict_proba"), result, "predict_proba")


def test_a_regressor_streaming_from_many_threads():
    X, y = make_data("multioutput_regression")
    original = ExtraTreesRegressor(n_estimators=10, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    save_with_small_chunks(original, store, chunk_rows=256, chunks_per_shard=2)
    model = treeshard.load(store, max_memory=needed_bytes(store) // 2)
    results = run_together([functools.partial(model.predict, X) for _ in range(N_THREADS // 2)])
    for result in results:
        assert_equal_outputs(original.predict(X), result, "predict")


# --------------------------------------------------------------------------- estimators_[i] at once
@pytest.mark.parametrize("budget", [None, "third"])
def test_threads_indexing_estimators(budget):
    original, _, store = forest()
    max_memory = None if budget is None else needed_bytes(store) // 3
    model = treeshard.load(store, max_memory=max_memory)
    n = len(original.estimators_)

    def visit(seed: int) -> list[tuple[int, Any]]:
        order = list(range(n)) + [-1, -n]
        random.Random(seed).shuffle(order)
        return [(i, model.estimators_[i]) for i in order]

    for visits in run_together([functools.partial(visit, seed) for seed in range(N_THREADS)]):
        for i, estimator in visits:
            assert_same_state(original.estimators_[i], estimator, f"estimators_[{i}]")
    if max_memory is not None:
        assert model.estimators_.cache.nbytes <= max_memory // 4


def test_threads_indexing_while_others_predict():
    original, X, store = forest()
    budget = needed_bytes(store) // 3
    model = treeshard.load(store, max_memory=budget)

    def index_all() -> bool:
        for i in range(len(original.estimators_)):
            assert_same_state(original.estimators_[i], model.estimators_[i], f"estimators_[{i}]")
        return True

    tasks: list[Callable[[], Any]] = [index_all, functools.partial(model.predict_proba, X)] * (N_THREADS // 2)
    for task, result in zip(tasks, run_together(tasks)):
        if task is index_all:
            assert result is True
        else:
            assert_equal_outputs(eager("predict_proba"), result, "predict_proba")


def test_threads_loading_the_same_zip(zip_path):
    _, X, _ = forest()

    def load_and_predict() -> np.ndarray:
        return treeshard.load(zip_path).predict_proba(X)

    for result in run_together([load_and_predict] * N_THREADS):
        assert_equal_outputs(eager("predict_proba"), result, "predict_proba")


# --------------------------------------------------------------------------- a race made deterministic
def test_iteration_survives_an_eviction_right_after_the_cache_lookup(monkeypatch):
    """Iteration takes every cached tree under one lock (TreeCache.get_all): an eviction
    by another thread right after that lookup cannot make it yield a missing tree."""
    original, X, store = forest()
    model = treeshard.load(store, max_memory=needed_bytes(store) // 3)
    view = model.estimators_[:1]  # shares the model's bounded cache
    view[0]  # now cached
    cache = view.cache
    get_all = cache.get_all

    def get_all_then_evicted(indices: np.ndarray):
        answer = get_all(indices)
        # what another thread streaming the forest does at this moment: evict the oldest trees
        with cache._lock:
            cache._items.clear()
            cache._bytes = 0
        return answer

    monkeypatch.setattr(cache, "get_all", get_all_then_evicted)
    (estimator,) = list(view)
    assert_equal_outputs(original.estimators_[0].predict_proba(X), estimator.predict_proba(X), "estimators_[0]")
