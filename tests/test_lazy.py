"""Trees on demand: a lazy load is the eager load, and reads only what is used.

- every supported estimator loads lazily with outputs identical to the
  original's and to the eager load's, and is a real sklearn estimator;
- a lazy forest's ``estimators_`` behaves as a list (len, indices, slices,
  iteration) while reading trees only when asked;
- read counting (``helpers.counting_store``) proves that ``load`` reads the config and
  the tree offsets only, ``open`` the config only, and ``estimators_[i]`` only
  the chunks that hold tree ``i``, through every kind of source.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import os

import numpy as np
import pytest
import zarr
from helpers.compare import assert_same_predictions, assert_same_state, assert_trees_equal
from helpers.data import make_data, query_points, query_targets
from helpers.counting_store import (
    CountingStore,
    count_path_reads,
    is_node_column_key,
    node_chunk_extents,
    save_with_small_chunks,
    shard_index_range,
    stored_tree_ptr,
)
from sklearn.base import clone
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import NotFittedError
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
from treeshard.columns import NODE_COLUMNS
from treeshard.lazy import StoredEstimators

# predict_log_proba of a tree that gives a class probability 0
pytestmark = [
    pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Some inputs do not have OOB scores:UserWarning"),  # a 6-tree forest's oob_score
]

CASES = {
    "RandomForestClassifier-multiclass": (RandomForestClassifier(n_estimators=6, max_depth=6, oob_score=True, random_state=0), "multiclass"),
    "RandomForestClassifier-multioutput": (RandomForestClassifier(n_estimators=5, max_depth=5, random_state=1), "multioutput"),
    "RandomForestClassifier-nan": (RandomForestClassifier(n_estimators=5, max_depth=5, random_state=2), "nan"),
    "ExtraTreesClassifier-string": (ExtraTreesClassifier(n_estimators=5, max_depth=6, random_state=0), "string"),
    "RandomForestRegressor": (RandomForestRegressor(n_estimators=5, max_depth=6, random_state=0), "regression"),
    "ExtraTreesRegressor-multioutput": (ExtraTreesRegressor(n_estimators=5, max_depth=6, random_state=0), "multioutput_regression"),
    "GradientBoostingClassifier-binary": (GradientBoostingClassifier(n_estimators=6, max_depth=2, random_state=0), "binary"),
    "GradientBoostingClassifier-string": (GradientBoostingClassifier(n_estimators=4, max_depth=2, random_state=0), "string"),
    "GradientBoostingRegressor": (GradientBoostingRegressor(n_estimators=6, max_depth=3, subsample=0.8, random_state=0), "regression"),
    "DecisionTreeClassifier": (DecisionTreeClassifier(max_depth=6, random_state=0), "multiclass"),
    "DecisionTreeRegressor-multioutput": (DecisionTreeRegressor(max_depth=6, random_state=0), "multioutput_regression"),
    "ExtraTreeClassifier-string": (ExtraTreeClassifier(max_depth=6, random_state=0), "string"),
    "ExtraTreeRegressor": (ExtraTreeRegressor(max_depth=6, random_state=0), "regression"),
}
FORESTS = [name for name in CASES if "Forest" in name or "ExtraTrees" in name]
KINDS = ("memory", "directory", "zip")


@functools.cache
def fitted(name: str):  # type: ignore[no-untyped-def]
    """(original, X, y) for CASES[name]."""
    estimator, task = CASES[name]
    X, y = make_data(task)
    return clone(estimator).fit(X, y), X, y


@functools.cache
def saved(name: str, kind: str = "memory", directory: str | None = None):  # type: ignore[no-untyped-def]
    """A store (or path) holding CASES[name]; path stores live under ``directory``."""
    original, _, _ = fitted(name)
    if kind == "memory":
        store = zarr.storage.MemoryStore()
    else:
        store = os.path.join(directory, f"{name}.zip" if kind == "zip" else name)
    treeshard.save(original, store)
    return store


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("lazy"))


def store_for(name: str, kind: str, store_dir: str):  # type: ignore[no-untyped-def]
    return saved(name, kind, None if kind == "memory" else store_dir)


def original_trees(original):  # type: ignore[no-untyped-def]
    """The original's sub-estimators in storage order (GBM: stage-major)."""
    if hasattr(original, "tree_"):
        return [original]
    return list(np.asarray(original.estimators_, dtype=object).reshape(-1))


# --------------------------------------------------------------------------- lazy == eager == original
@pytest.mark.parametrize("name", list(CASES))
def test_lazy_and_eager_loads_predict_exactly_like_the_original(name):
    original, X, y = fitted(name)
    store = saved(name)
    Xq, yq = query_points(X, original), query_targets(y)
    lazy, eager = treeshard.load(store), treeshard.load(store, lazy=False)
    for loaded in (lazy, eager):
        assert type(loaded) is type(original)
        assert_same_predictions(original, loaded, Xq, yq)
    if name in FORESTS:
        assert isinstance(lazy.estimators_, StoredEstimators)
        assert type(eager.estimators_) is list
    # the lazy model's whole state (trees included) is the original's
    assert_same_state(original, lazy)
    assert_same_state(original, eager)


@pytest.mark.parametrize(("name", "kind"), [("RandomForestClassifier-multiclass", "zip"), ("ExtraTreesRegressor-multioutput", "directory")])
def test_lazy_load_from_paths_predicts_exactly(name, kind, store_dir):
    original, X, y = fitted(name)
    loaded = treeshard.load(store_for(name, kind, store_dir))
    assert_same_predictions(original, loaded, query_points(X, original), query_targets(y))


@pytest.mark.parametrize("name", list(CASES))
def test_lazy_model_is_a_real_sklearn_estimator(name):
    original, X, y = fitted(name)
    loaded = treeshard.load(saved(name))
    assert isinstance(loaded, type(original))
    check_is_fitted(loaded)
    assert loaded.get_params(deep=True) == original.get_params(deep=True)
    fresh = clone(loaded)
    assert type(fresh) is type(original) and fresh.get_params() == original.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)
    # a fitted step of a pipeline: same outputs as the pipeline around the original
    scaler = StandardScaler().fit(X)
    expected = Pipeline([("scale", scaler), ("model", original)]).predict(X)
    assert np.array_equal(Pipeline([("scale", scaler), ("model", loaded)]).predict(X), expected)
    # the loaded model is usable inside a pipeline that is fitted again (a clone of it)
    refit = Pipeline([("model", clone(loaded))]).fit(X, y)
    assert np.array_equal(refit.predict(X), Pipeline([("model", clone(original))]).fit(X, y).predict(X))


def test_isinstance_holds_for_every_lazy_forest():
    for name in FORESTS:
        loaded = treeshard.load(saved(name))
        assert isinstance(loaded, type(fitted(name)[0])), name
    assert isinstance(treeshard.load(saved("RandomForestClassifier-multiclass")), RandomForestClassifier)


# --------------------------------------------------------------------------- estimators_ as a sequence
@pytest.mark.parametrize("name", FORESTS)
def test_estimators_behave_as_a_list(name):
    original, _, _ = fitted(name)
    n = len(original.estimators_)
    estimators = treeshard.load(saved(name)).estimators_
    assert len(estimators) == n
    for i in (0, 1, n - 1, -1, -n, np.int64(2), np.int32(-2)):
        assert_same_state(original.estimators_[int(i)], estimators[i], f"estimators_[{i}]")
    for bad in (n, -n - 1, 10**9, np.int64(n)):
        with pytest.raises(IndexError):
            estimators[bad]
    for bad in ("0", 1.0, None, True, [0]):
        with pytest.raises(TypeError):
            estimators[bad]
    for part in (slice(None), slice(1, 3), slice(None, None, -1), slice(-2, None), slice(None, None, 2), slice(n, None)):
        got = estimators[part]
        want = original.estimators_[part]
        assert len(got) == len(want), part
        for k, (a, b) in enumerate(zip(want, got)):
            assert_same_state(a, b, f"estimators_[{part}][{k}]")
    # slices of slices
    assert_same_state(original.estimators_[1:][::-1][0], estimators[1:][::-1][0])


@pytest.mark.parametrize("name", FORESTS)
def test_iterating_twice_gives_the_same_trees(name):
    original, _, _ = fitted(name)
    estimators = treeshard.load(saved(name)).estimators_
    first, second = list(estimators), list(estimators)
    assert len(first) == len(second) == len(original.estimators_)
    for i, (a, b, c) in enumerate(zip(original.estimators_, first, second)):
        assert_same_state(a, b, f"first[{i}]")
        assert_same_state(a, c, f"second[{i}]")
    # Sequence protocol helpers work on the lazy list
    assert estimators.index(second[2]) == 2 and second[2] in estimators
    assert [e.random_state for e in reversed(estimators)] == [e.random_state for e in original.estimators_[::-1]]


def test_abandoned_iteration_does_not_disturb_the_next():
    original, X, _ = fitted("RandomForestClassifier-multiclass")
    loaded = treeshard.load(saved("RandomForestClassifier-multiclass"))
    iterator = iter(loaded.estimators_)
    assert_same_state(original.estimators_[0], next(iterator))
    iterator.close()
    del iterator
    assert np.array_equal(loaded.predict_proba(X), original.predict_proba(X))


# --------------------------------------------------------------------------- open(store).tree(i)
@pytest.mark.parametrize("name", list(CASES))
def test_open_tree_is_the_original_tree(name):
    original, X, _ = fitted(name)
    trees = original_trees(original)
    n = len(trees)
    with treeshard.open(saved(name)) as handle:
        assert handle.info.n_nodes == sum(t.tree_.node_count for t in trees)
        for i in sorted({0, n // 2, n - 1, -1, -n}):
            tree = handle.tree(i)
            assert type(tree) is type(trees[i])
            assert_trees_equal(trees[i].tree_, tree.tree_, f"tree({i})")
            if name in FORESTS:
                assert_same_state(trees[i], tree, f"tree({i})")
            assert np.array_equal(tree.predict(X), trees[i].predict(X))
        for bad in (n, -n - 1):
            with pytest.raises(IndexError):
                handle.tree(bad)


@pytest.mark.parametrize("name", ["RandomForestClassifier-multiclass", "GradientBoostingRegressor", "DecisionTreeClassifier"])
def test_info_counts_estimators_as_load_selects_them(name):
    original = fitted(name)[0]
    with treeshard.open(saved(name)) as handle:
        n = handle.info.n_estimators
    assert n == getattr(original, "n_estimators_", len(getattr(original, "estimators_", [original])))
    if n > 1:
        assert len(treeshard.load(saved(name), estimators=n).estimators_) == n


def test_info_counts_the_stages_of_a_multiclass_gradient_boosting():
    name = "GradientBoostingClassifier-string"  # 3 classes: 3 trees a stage
    original = fitted(name)[0]
    with treeshard.open(saved(name)) as handle:
        n = handle.info.n_estimators
    assert n == original.n_estimators_ == 4
    assert treeshard.load(saved(name), estimators=n).n_estimators_ == 4


@pytest.mark.parametrize("index", ["0", 1.0, True, None], ids=repr)
def test_open_tree_rejects_non_integers_with_type_error(index):
    with treeshard.open(saved("RandomForestRegressor")) as handle, pytest.raises(TypeError, match="tree index must be an integer"):
        handle.tree(index)


# --------------------------------------------------------------------------- what is read
# A forest of about 6000 nodes stored in chunks of 128 nodes, 4 chunks a shard:
# about 12 shards of 4 chunks per column, and trees that straddle chunk boundaries.
CHUNK_ROWS, CHUNKS_PER_SHARD = 128, 4


@pytest.fixture(scope="module")
def chunked(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(original, {source kind: store to load}, {kind: unwrapped zarr store to inspect}, log getter)."""
    X, y = make_data("multiclass")
    original = RandomForestClassifier(n_estimators=20, max_depth=7, random_state=0).fit(X, y)
    memory = zarr.storage.MemoryStore()
    save_with_small_chunks(original, memory, chunk_rows=CHUNK_ROWS, chunks_per_shard=CHUNKS_PER_SHARD)
    directory = tmp_path_factory.mktemp("chunked") / "forest"
    save_with_small_chunks(original, directory, chunk_rows=CHUNK_ROWS, chunks_per_shard=CHUNKS_PER_SHARD)
    zip_path = directory.parent / "forest.zip"
    save_with_small_chunks(original, zip_path, chunk_rows=CHUNK_ROWS, chunks_per_shard=CHUNKS_PER_SHARD)
    return original, memory, directory, zip_path


def counted_store(kind: str, chunked, monkeypatch):  # type: ignore[no-untyped-def]
    """``(store to load, read log)`` for a source kind of the chunked forest."""
    _, memory, directory, zip_path = chunked
    if kind == "memory":
        store = CountingStore(memory)
        return store, store.log
    if kind == "localstore":
        store = CountingStore(zarr.storage.LocalStore(directory, read_only=True))
        return store, store.log
    if kind == "zipstore":
        store = CountingStore(zarr.storage.ZipStore(zip_path, mode="r"))
        return store, store.log
    log = count_path_reads(monkeypatch)
    return (directory if kind == "directory" else zip_path), log


SOURCES = ("memory", "localstore", "zipstore", "directory", "zip")


@pytest.mark.parametrize("kind", SOURCES)
def test_open_reads_only_the_root_metadata_and_its_digest_record(kind, chunked, monkeypatch):
    """The root (config and array metadata) and the digest record it is checked against."""
    store, log = counted_store(kind, chunked, monkeypatch)
    with treeshard.open(store) as handle:
        info = handle.info
        assert info.n_estimators == 20
    assert log.touched(kind=None) == {"zarr.json", "treeshard.sha256"}


@pytest.mark.parametrize("kind", SOURCES)
def test_lazy_load_reads_no_node_column(kind, chunked, monkeypatch):
    original = chunked[0]
    store, log = counted_store(kind, chunked, monkeypatch)
    loaded = treeshard.load(store)
    touched = log.touched(kind=None)
    assert not {key for key in touched if is_node_column_key(key)}
    assert "zarr.json" in touched and "nodes/tree_ptr/c/0" in log.touched()
    assert all(key in ("zarr.json", "treeshard.sha256") or key.startswith(("nodes/tree_ptr/", "fitted/")) for key in touched), sorted(touched)
    # metadata and len() read nothing more
    log.clear()
    assert len(loaded.estimators_) == 20
    assert loaded.n_estimators == 20 and loaded.n_features_in_ == original.n_features_in_
    assert np.array_equal(loaded.classes_, original.classes_)
    repr(loaded.estimators_)
    assert log.reads == []


def expected_tree_ranges(inner, tree_ptr: np.ndarray, trees: list[int]) -> dict[str, set]:
    """Per shard key: the byte ranges of the chunks holding ``trees`` and of the shard indexes."""
    expected: dict[str, set] = {}
    spans = [(int(tree_ptr[i]), int(tree_ptr[i + 1])) for i in trees]
    for column in NODE_COLUMNS:
        for extent in node_chunk_extents(inner, f"nodes/{column}"):
            if any(extent.rows[0] < stop and start < extent.rows[1] for start, stop in spans):
                ranges = expected.setdefault(extent.key, set())
                ranges.add(extent.byte_range)
                ranges.add(shard_index_range(inner, extent.key, CHUNKS_PER_SHARD))
    return expected


def node_ranges_read(log) -> dict[str, set]:  # type: ignore[no-untyped-def]
    out: dict[str, set] = {}
    for read in log.gets():
        if is_node_column_key(read.key):
            out.setdefault(read.key, set()).add(read.byte_range)
    return out


def interesting_trees(tree_ptr: np.ndarray) -> list[int]:
    """The first and last trees, one inside a chunk and one straddling a chunk boundary."""
    starts, stops = tree_ptr[:-1], tree_ptr[1:]
    inside = np.flatnonzero(starts // CHUNK_ROWS == (stops - 1) // CHUNK_ROWS)
    straddling = np.flatnonzero(starts // CHUNK_ROWS != (stops - 1) // CHUNK_ROWS)
    assert inside.size and straddling.size
    return sorted({0, int(inside[-1]), int(straddling[len(straddling) // 2]), len(tree_ptr) - 2})


@pytest.mark.parametrize("kind", SOURCES)
def test_estimators_item_reads_only_the_chunks_of_that_tree(kind, chunked, monkeypatch):
    original, memory = chunked[0], chunked[1]
    store, log = counted_store(kind, chunked, monkeypatch)
    tree_ptr = stored_tree_ptr(memory)
    assert len(node_chunk_extents(memory, "nodes/threshold")) >= 8  # the store really is chunked
    for i in interesting_trees(tree_ptr):
        loaded = treeshard.load(store)  # fresh: nothing decoded yet
        log.clear()
        tree = loaded.estimators_[i]
        assert_same_state(original.estimators_[i], tree, f"estimators_[{i}]")
        assert node_ranges_read(log) == expected_tree_ranges(memory, tree_ptr, [i]), f"tree {i}"
        # nothing but node columns (their shard sizes) is touched
        assert {key for key in log.touched(kind=None) if not is_node_column_key(key)} == set()
        # a second access is served from the cache
        log.clear()
        assert loaded.estimators_[i] is tree
        assert log.reads == []


def test_iteration_reads_each_chunk_once(chunked):
    original, memory = chunked[0], chunked[1]
    store = CountingStore(memory)
    loaded = treeshard.load(store)
    store.log.clear()
    for a, b in zip(original.estimators_, loaded.estimators_):
        assert_same_state(a, b)
    extents = {(e.key, e.byte_range) for column in NODE_COLUMNS for e in node_chunk_extents(memory, f"nodes/{column}")}
    reads = [(r.key, r.byte_range) for r in store.log.gets() if is_node_column_key(r.key)]
    chunk_reads = [r for r in reads if r in extents]
    assert sorted(chunk_reads) == sorted(extents)  # every chunk read, each exactly once


def test_gradient_boosting_and_single_trees_read_everything_at_load():
    for name in ("GradientBoostingClassifier-binary", "DecisionTreeClassifier"):
        store = CountingStore(saved(name))
        loaded = treeshard.load(store)
        read = {key.split("/")[1] for key in store.log.touched() if is_node_column_key(key)}
        assert read == set(NODE_COLUMNS), name
        store.log.clear()
        loaded.predict(fitted(name)[1])
        assert store.log.reads == [], name


# --------------------------------------------------------------------------- lifetime of the open store
def test_lazy_forest_outlives_the_handle_that_loaded_it(store_dir):
    name = "RandomForestClassifier-multiclass"
    original, X, _ = fitted(name)
    with treeshard.open(store_for(name, "zip", store_dir)) as handle:
        loaded = handle.load()
    assert np.array_equal(loaded.predict_proba(X), original.predict_proba(X))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open file descriptors through /proc")
def test_lazy_loads_of_a_zip_do_not_leak_file_descriptors(store_dir):
    name = "RandomForestClassifier-multiclass"
    path = store_for(name, "zip", store_dir)
    _, X, _ = fitted(name)
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(4):
        loaded = treeshard.load(path)
        loaded.predict(X)
        del loaded
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_copy_of_a_lazy_forest_predicts_alike():
    name = "ExtraTreesClassifier-string"
    original, X, _ = fitted(name)
    loaded = treeshard.load(saved(name))
    duplicate = copy.copy(loaded)
    assert np.array_equal(duplicate.predict(X), original.predict(X))


def same_shaped_forests():  # type: ignore[no-untyped-def]
    """Two different forests whose trees have the same node counts (so their arrays have the same shapes)."""
    X, y = make_data("multiclass")
    first = RandomForestClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, y)
    counts = [e.tree_.node_count for e in first.estimators_]
    for seed in range(1, 100):
        second = RandomForestClassifier(n_estimators=5, max_depth=2, random_state=seed).fit(X, y)
        if [e.tree_.node_count for e in second.estimators_] == counts:
            assert not np.array_equal(first.predict_proba(X), second.predict_proba(X))
            return first, second, X
    raise AssertionError("no forest of the same shape")


@pytest.mark.parametrize(
    "kind",
    [
        "directory",
        "zip",
    ],
)
def test_a_lazy_forest_never_uses_the_trees_of_a_model_saved_over_it(kind, tmp_path):
    first, second, X = same_shaped_forests()
    path = tmp_path / ("model.zip" if kind == "zip" else "model")
    treeshard.save(first, path)
    loaded = treeshard.load(path)  # reads the config and tree offsets only
    treeshard.save(second, path, overwrite=True)  # an atomic replacement, as a model registry does
    try:
        got = loaded.predict_proba(X)
    except treeshard.TreeshardError:
        return  # refusing is acceptable; mixing the two models is not
    assert np.array_equal(got, first.predict_proba(X))


# --------------------------------------------------------------------------- the lazy model shares the handle's open store
@pytest.mark.parametrize("kind", SOURCES)
def test_lazy_load_reads_the_root_metadata_once(kind, chunked, monkeypatch):
    """The lazy model reads through the handle's open store: no second read of the root or the tree offsets."""
    store, log = counted_store(kind, chunked, monkeypatch)
    treeshard.load(store)
    gets = log.count()
    assert gets["zarr.json"] == 1
    assert gets["nodes/tree_ptr/c/0"] == 2  # its shard index, then its chunk


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_lazy_models_outlive_their_closed_handle(kind, store_dir):
    from treeshard.distributed import reference_of

    name = "RandomForestClassifier-multiclass"
    original, X, _ = fitted(name)
    path = store_for(name, kind, store_dir)
    with treeshard.open(path) as handle:
        whole = handle.load()
        some = handle.load(estimators=[4, 1])
    handle.close()  # closing twice is harmless
    assert np.array_equal(whole.predict_proba(X), original.predict_proba(X))
    assert_same_state(original.estimators_[1], some.estimators_[1])
    assert reference_of(some.estimators_) == (os.path.abspath(path), None)  # still pickles as a reference


@pytest.mark.parametrize("options", [{}, {"max_memory": 10_000}, {"check_chunks": False}], ids=["lazy", "streamed", "unchecked"])
def test_a_lazy_model_whose_directory_was_replaced_says_so(tmp_path, options):
    """A save over the directory a lazy model reads from: its next read names the replacement
    (a zip file keeps being read from the file it opened: the old model's)."""
    import re
    import warnings

    from sklearn.ensemble import RandomForestClassifier

    original, X, y = fitted("RandomForestClassifier-multiclass")
    other = RandomForestClassifier(n_estimators=6, random_state=1).fit(X, y)
    for kind in ("directory", "zip"):
        path = str(tmp_path / f"forest {kind}{'.zip' if kind == 'zip' else ''}")
        treeshard.save(original, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", treeshard.UnverifiedStoreWarning)
            model = treeshard.load(path, **options)
        treeshard.save(other, path, overwrite=True)
        if kind == "zip":
            assert np.array_equal(model.predict_proba(X), original.predict_proba(X))
            continue
        message = f"{path}: the store was replaced or deleted after it was opened; load it again"
        with pytest.raises(treeshard.FormatError, match=f"^{re.escape(message)}$"):
            model.predict_proba(X)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open file descriptors through /proc")
@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_the_store_closes_with_the_last_of_its_models(kind, store_dir):
    name = "RandomForestClassifier-multiclass"
    original, X, _ = fitted(name)
    path = store_for(name, kind, store_dir)
    store = os.path.realpath(path)

    def open_in_store() -> int:
        """File descriptors of this process open on the store (other tests' threads may open
        and close unrelated ones meanwhile, so the process's total is not compared)."""
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(f"/proc/self/fd/{fd}").startswith(store)
        return count

    gc.collect()
    assert open_in_store() == 0
    with treeshard.open(path) as handle:
        first, second = handle.load(), handle.load(estimators=[0, 2])
    del first
    gc.collect()
    assert open_in_store() > 0  # the store is still open for the second model
    assert_same_state(original.estimators_[2], second.estimators_[1])
    del second
    gc.collect()
    assert open_in_store() == 0


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_a_store_saved_over_between_open_and_load_is_never_mixed(kind, tmp_path):
    """The handle's config and the lazy model's trees come from the same store, even when
    another model is saved over it in between (a reopen by path would pair them wrongly)."""
    first, second, X = same_shaped_forests()
    path = tmp_path / ("model.zip" if kind == "zip" else "model")
    treeshard.save(first, path)
    handle = treeshard.open(path)
    treeshard.save(second, path, overwrite=True)
    try:
        loaded = handle.load()
        got = loaded.predict_proba(X)
    except treeshard.TreeshardError:
        return  # refusing is acceptable; mixing the two models is not
    finally:
        handle.close()
    assert np.array_equal(got, first.predict_proba(X))


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_a_lazy_forest_from_a_closed_handle_never_uses_the_trees_of_a_model_saved_over_it(kind, tmp_path):
    first, second, X = same_shaped_forests()
    path = tmp_path / ("model.zip" if kind == "zip" else "model")
    treeshard.save(first, path)
    with treeshard.open(path) as handle:
        loaded = handle.load()
    treeshard.save(second, path, overwrite=True)
    try:
        got = loaded.predict_proba(X)
    except treeshard.TreeshardError:
        return
    assert np.array_equal(got, first.predict_proba(X))


# --------------------------------------------------------------------------- pickled references keep the load's checks
def _forest_store(path: str):  # type: ignore[no-untyped-def]
    original, X, _ = fitted("RandomForestClassifier-multiclass")
    treeshard.save(original, path)
    return original, X


def _unpickled(payload: bytes):  # type: ignore[no-untyped-def]
    import pickle

    from treeshard import distributed

    distributed.clear_opened()  # reopened as another process would
    return pickle.loads(payload)


def test_a_pickled_lazy_model_keeps_check_chunks_false(tmp_path):
    import pickle
    import warnings

    from treeshard.distributed import load_options_of

    path = str(tmp_path / "forest")
    original, X = _forest_store(path)
    os.remove(os.path.join(path, "treeshard.sha256"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unchecked = treeshard.load(path, check_chunks=False)
        copy = _unpickled(pickle.dumps(unchecked))
    assert load_options_of(copy.estimators_) == {"check_chunks": False}
    assert np.array_equal(copy.predict_proba(X), original.predict_proba(X))
    with pytest.warns(treeshard.UnverifiedStoreWarning):
        checked = treeshard.load(path)
    with pytest.warns(treeshard.UnverifiedStoreWarning):
        _unpickled(pickle.dumps(checked))  # a default load's reference checks as it did


def test_a_pickled_lazy_model_keeps_the_key_it_required(tmp_path):
    import pickle

    from treeshard import integrity
    from treeshard.distributed import load_options_of

    alice_private, alice_public = integrity.generate_key_pair()
    mallory_private, mallory_public = integrity.generate_key_pair()
    path = str(tmp_path / "forest")
    original, X = _forest_store(path)
    integrity.sign_store(path, alice_private)
    payload = pickle.dumps(treeshard.load(path, public_key=alice_public))
    copy = _unpickled(payload)
    assert load_options_of(copy.estimators_) == {"public_key": alice_public}
    assert np.array_equal(copy.predict_proba(X), original.predict_proba(X))
    integrity.sign_store(path, mallory_private)  # the store signed by someone else since
    with pytest.raises(treeshard.SignatureError, match=f"^store is signed by key {integrity.key_id(mallory_public)}, not by the expected key {integrity.key_id(alice_public)}$"):
        _unpickled(payload)


def test_a_pickled_lazy_model_keeps_verify(tmp_path):
    import pickle

    from treeshard.distributed import load_options_of

    path = str(tmp_path / "forest")
    original, X = _forest_store(path)
    model = treeshard.load(path, estimators=[0], verify=True)
    payload = pickle.dumps(model)
    assert load_options_of(model.estimators_) == {"verify": True}
    chunk = os.path.join(path, "nodes", "threshold", "c", "0")
    data = bytearray(open(chunk, "rb").read())
    data[-1] ^= 0xFF
    with open(chunk, "wb") as handle:
        handle.write(bytes(data))
    expected = "^store differs from the digest recorded at save time \\(1 problem\\(s\\)\\):\n  array 'nodes/threshold', shard 'c/0'"
    with pytest.raises(treeshard.IntegrityError, match=expected):
        _unpickled(payload)  # refused on opening, before any tree is read


@pytest.mark.parametrize(("n_estimators", "error", "what"), [(6, treeshard.IntegrityError, ""), (3, treeshard.FormatError, "the store no longer holds the referenced trees (")])
def test_a_pickled_lazy_model_refuses_a_store_replaced_since(tmp_path, n_estimators, error, what):
    """A reference is pinned to its model: another model saved at that location since (as many
    trees, or too few for the selection) is refused by name, never scored with."""
    import pickle
    import re

    from sklearn.ensemble import RandomForestClassifier

    path = str(tmp_path / "my forest.zip")
    original, X = _forest_store(path)
    model = treeshard.load(path, estimators=[4, 2])
    payload = pickle.dumps(model)
    assert np.array_equal(_unpickled(payload).predict_proba(X), model.predict_proba(X))
    X_other, y_other = make_data("multiclass")
    treeshard.save(RandomForestClassifier(n_estimators=n_estimators, random_state=1).fit(X_other, y_other), path, overwrite=True)
    replaced = "the model stored there was replaced since this reference was pickled: reload it, or refer to an immutable location (model/v3.zip)"
    message = f"{path!r}: {what}{replaced}{')' if what else ''}"
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        _unpickled(payload)


@pytest.mark.parametrize("ref", ["production", "latest"])
def test_a_model_loaded_by_alias_pickles_as_the_version_the_alias_named(tmp_path, ref):
    """``load("REPO@production")`` pickles as a reference to the version it loaded: moving the
    alias afterwards does not change what the unpickled model scores with."""
    import pickle

    from sklearn.ensemble import RandomForestClassifier

    from treeshard.distributed import reference_of

    original, X, y = fitted("RandomForestClassifier-multiclass")
    repo = treeshard.Repository(str(tmp_path / "repo"))
    first = repo.save(original)
    repo.set_alias("production", first)
    model = treeshard.load(f"{tmp_path / 'repo'}@{ref}")
    assert reference_of(model.estimators_) == (f"{tmp_path / 'repo'}@{first}", None)
    payload = pickle.dumps(model)
    second = repo.save(RandomForestClassifier(n_estimators=6, random_state=1).fit(X, y))
    repo.set_alias("production", second)
    copy = _unpickled(payload)
    assert np.array_equal(copy.predict_proba(X), original.predict_proba(X))


def test_a_reference_pickled_without_a_content_digest_still_loads(tmp_path):
    """References pickled before they carried the digest (eight arguments) load unpinned."""
    from treeshard import distributed
    from treeshard.api import load_reference

    path = str(tmp_path / "forest.zip")
    original, X = _forest_store(path)
    model = treeshard.load(path, estimators=[3, 1])
    opener, arguments = model.estimators_.__reduce__()
    assert opener is load_reference and len(arguments) == 9 and arguments[-1] == distributed.content_digest_of(model.estimators_)
    distributed.clear_opened()
    old = load_reference(*arguments[:8])
    assert list(old.indices) == [3, 1]
    assert_same_state(original.estimators_[3], old[0])


# --------------------------------------------------------------------------- the eager pipeline
def _node_bytes(tree) -> tuple[bytes, bytes, int]:  # type: ignore[no-untyped-def]
    state = tree.__getstate__()
    return state["nodes"].tobytes(), state["values"].tobytes(), state["max_depth"]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_trees_in_many_batches_are_the_original_trees_byte_for_byte(chunked, workers):
    from treeshard.lazy import TreeSource
    from treeshard.reader import StoreReader

    original, memory = chunked[0], chunked[1]
    source = TreeSource(StoreReader(memory))
    indices = np.arange(len(original.estimators_))
    assert len(source.batches(indices, batch_nodes=CHUNK_ROWS)) > 3  # several batches in flight
    got = list(source.trees(indices, batch_nodes=CHUNK_ROWS, workers=workers))
    assert [index for index, _ in got] == indices.tolist()
    for estimator, (_, tree) in zip(original.estimators_, got):
        assert _node_bytes(tree) == _node_bytes(estimator.tree_)  # record padding included


def _break_tree(source, index: int):  # type: ignore[no-untyped-def]
    """``source.prepare_range`` that gives tree ``index`` a root split on a feature the model lacks."""
    prepare = source.prepare_range

    def broken(first, stop, out=None):  # type: ignore[no-untyped-def]
        read = prepare(first, stop, out)
        if first <= index < stop:
            read.columns.feature[int(read.columns.tree_ptr[index - first])] = 10_000
        return read

    return broken


def test_a_broken_batch_fails_the_load_and_hands_out_none_of_its_trees(chunked, monkeypatch):
    from treeshard.lazy import TreeSource
    from treeshard.reader import StoreReader

    original, memory = chunked[0], chunked[1]
    source = TreeSource(StoreReader(memory))
    indices = np.arange(len(original.estimators_))
    ranges = source.batches(indices, batch_nodes=CHUNK_ROWS)
    first, stop = ranges[len(ranges) // 2]
    monkeypatch.setattr(source, "prepare_range", _break_tree(source, stop - 1))
    handed_out = []
    with pytest.raises(treeshard.TreeStructureError, match=rf"^tree {stop - 1}, node 0: split feature out of range \[0, \d+\)$"):
        for index, _ in source.trees(indices, batch_nodes=CHUNK_ROWS, workers=2):
            handed_out.append(index)
    assert handed_out == list(range(first))


def test_an_abandoned_pipeline_stops_its_threads(chunked):
    import threading

    from treeshard.lazy import TreeSource
    from treeshard.reader import StoreReader

    original, memory = chunked[0], chunked[1]
    source = TreeSource(StoreReader(memory))
    trees = source.trees(np.arange(len(original.estimators_)), batch_nodes=CHUNK_ROWS, workers=2)
    index, tree = next(trees)
    assert _node_bytes(tree) == _node_bytes(original.estimators_[0].tree_)
    assert any(t.name.startswith("treeshard-read-ahead") for t in threading.enumerate())
    trees.close()
    assert not any(t.name.startswith(("treeshard-read-ahead", "treeshard-fill")) for t in threading.enumerate())


def test_columns_read_into_reused_buffers_are_the_columns_read(chunked):
    from treeshard.lazy import TreeSource
    from treeshard.reader import StoreReader

    reader = StoreReader(chunked[1])
    source = TreeSource(reader)
    buffers = source.column_buffers(int(reader.tree_ptr[-1]))
    for first, stop in [(0, 3), (3, 4), (2, 9)]:  # a partial chunk kept by one read is copied by the next
        expected = TreeSource(StoreReader(chunked[1])).prepare_range(first, stop).columns
        got = source.prepare_range(first, stop, buffers).columns
        for name in NODE_COLUMNS:
            assert np.array_equal(getattr(got, name), getattr(expected, name)), name
            assert np.shares_memory(getattr(got, name), buffers[name]), name
    with pytest.raises(ValueError, match=r"^nodes/threshold: output float64\[3\] does not hold rows 0:\d+$"):
        reader.read_columns(["threshold"], [(0, int(reader.tree_ptr[2]))], out={"threshold": np.empty(3)})


def test_a_batch_or_tree_too_large_for_memory_is_an_array_error(chunked):
    from treeshard.lazy import TreeSource
    from treeshard.reader import StoreReader

    source = TreeSource(StoreReader(chunked[1]))
    with pytest.raises(treeshard.ArrayError, match=r"^nodes: a batch of 1099511627776 nodes does not fit in memory$"):
        source.column_buffers(2**40)
    with pytest.raises(treeshard.ArrayError, match=r"^nodes: a tree of 35184372088832 nodes does not fit in memory$"):
        source._zero_state(2**45)


# --------------------------------------------------------------------------- the eager stream (whole chunks)
def _eager_source(chunked, kind: str):  # type: ignore[no-untyped-def]
    from treeshard.lazy import TreeSource
    from treeshard.reader import StoreReader

    _, memory, directory, zip_path = chunked
    return TreeSource(StoreReader({"memory": memory, "directory": directory, "zip": zip_path}[kind]))


@pytest.fixture(scope="module")
def fine_chunks(chunked, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The chunked forest in chunks of 32 nodes, 3 to a shard: every tree (about 60 nodes) spans chunks."""
    path = tmp_path_factory.mktemp("fine") / "forest.zip"
    save_with_small_chunks(chunked[0], path, chunk_rows=32, chunks_per_shard=3)
    return path


@pytest.mark.parametrize("rows", [CHUNK_ROWS, 32])
@pytest.mark.parametrize("batch_nodes", [1, CHUNK_ROWS, 5 * CHUNK_ROWS])
def test_chunk_batches_decode_each_chunk_once_and_carry_cut_trees(chunked, fine_chunks, rows, batch_nodes):
    from treeshard.lazy import TreeSource
    from treeshard.reader import StoreReader

    source = TreeSource(StoreReader(chunked[2] if rows == CHUNK_ROWS else fine_chunks))
    ptr = source.tree_ptr
    indices = np.arange(len(chunked[0].estimators_))
    batches = source.chunk_batches(indices, batch_nodes=batch_nodes)
    assert [(b.first, b.stop) for b in batches] == list(zip([0] + [b.stop for b in batches[:-1]], [b.stop for b in batches]))
    assert batches[-1].stop == len(indices) and all(b.stop > b.first for b in batches)
    assert [(b.chunk_first, b.chunk_stop) for b in batches] == list(
        zip([0] + [b.chunk_stop for b in batches[:-1]], [b.chunk_stop for b in batches])
    )
    assert batches[-1].chunk_stop == -(-int(ptr[-1]) // rows)
    for b in batches:
        assert b.origin == (b.chunk_first * rows if b.first == 0 else int(ptr[b.first]))
        assert b.carry == b.chunk_first * rows - b.origin >= 0
        assert int(ptr[b.stop]) <= b.chunk_stop * rows  # its trees end in what it decoded
        assert b.stop == len(indices) or int(ptr[b.stop + 1]) > b.chunk_stop * rows  # and no tree that does is left out
    if batch_nodes == 1:  # one chunk a batch, unless a tree is longer
        assert len(batches) > 5 and sum(b.carry > 0 for b in batches) > 3
        assert any(b.chunk_stop - b.chunk_first > 1 for b in batches) == (rows == 32)


def test_chunk_batches_of_a_selection_start_again_at_each_gap(chunked):
    source = _eager_source(chunked, "directory")
    batches = source.chunk_batches(np.array([0, 1, 5, 6, 7, 12]), batch_nodes=CHUNK_ROWS)
    runs = [(b.first, b.stop) for b in batches]
    assert runs[0][0] == 0 and runs[-1][1] == 13
    assert {2, 8, 13} <= {stop for _, stop in runs}  # each run's last batch ends at its end
    starts = [b for b in batches if b.first in (5, 12)]
    assert [b.carry for b in starts] == [0, 0]  # a new run carries nothing
    assert [b.origin for b in starts] == [b.chunk_first * CHUNK_ROWS for b in starts]
    assert sum(b.stop - b.first for b in batches) == 6


@pytest.mark.parametrize("kind", ["memory", "directory", "zip"])
@pytest.mark.parametrize("batch_nodes", [1, CHUNK_ROWS, 3 * CHUNK_ROWS, 10**6])
def test_whole_chunk_stream_gives_the_original_trees_byte_for_byte(chunked, kind, batch_nodes):
    original = chunked[0]
    source = _eager_source(chunked, kind)
    indices = np.arange(len(original.estimators_))
    got = list(source.trees(indices, batch_nodes=batch_nodes, workers=1, whole_chunks=True))
    assert [index for index, _ in got] == indices.tolist()
    for estimator, (_, tree) in zip(original.estimators_, got):
        assert _node_bytes(tree) == _node_bytes(estimator.tree_)  # record padding included


@pytest.mark.parametrize("batch_nodes", [1, 64, 10**6])
def test_whole_chunk_stream_of_trees_longer_than_a_chunk(chunked, fine_chunks, batch_nodes):
    from treeshard.lazy import TreeSource
    from treeshard.reader import StoreReader

    original = chunked[0]
    source = TreeSource(StoreReader(fine_chunks))
    got = list(source.trees(np.arange(len(original.estimators_)), batch_nodes=batch_nodes, workers=1, whole_chunks=True))
    for estimator, (_, tree) in zip(original.estimators_, got, strict=True):
        assert _node_bytes(tree) == _node_bytes(estimator.tree_)


@pytest.mark.parametrize("indices", [[0, 1, 5, 6, 7, 12, 19], [3], [19], [18, 19], list(range(4, 20, 3))])
def test_whole_chunk_stream_of_a_selection_gives_those_trees(chunked, indices):
    original = chunked[0]
    source = _eager_source(chunked, "zip")
    got = list(source.trees(indices, batch_nodes=CHUNK_ROWS, workers=1, whole_chunks=True))
    assert [index for index, _ in got] == indices
    for index, tree in got:
        assert _node_bytes(tree) == _node_bytes(original.estimators_[index].tree_)


def test_whole_chunk_stream_without_the_compiled_decoder_reads_alike(chunked, monkeypatch):
    """Where a library is missing, read_chunks reads through read_many: the same trees."""
    from treeshard import chunks

    monkeypatch.setattr(chunks, "native_functions", lambda: None)
    original = chunked[0]
    source = _eager_source(chunked, "directory")
    got = list(source.trees(np.arange(len(original.estimators_)), batch_nodes=CHUNK_ROWS, workers=1, whole_chunks=True))
    for estimator, (_, tree) in zip(original.estimators_, got):
        assert _node_bytes(tree) == _node_bytes(estimator.tree_)


def test_a_broken_batch_fails_the_stream_and_hands_out_none_of_its_trees(chunked, monkeypatch):
    source = _eager_source(chunked, "directory")
    indices = np.arange(len(chunked[0].estimators_))
    batches = source.chunk_batches(indices, batch_nodes=CHUNK_ROWS)
    broken = batches[len(batches) // 2]
    read_batch = source.read_batch

    def read_broken(batch, out, previous, fetched=None):  # type: ignore[no-untyped-def]
        read = read_batch(batch, out, previous, fetched)
        if batch == broken:
            read.columns.feature[int(read.columns.tree_ptr[-2])] = 10_000  # the root of its last tree
        return read

    monkeypatch.setattr(source, "read_batch", read_broken)
    handed_out = []
    with pytest.raises(treeshard.TreeStructureError, match=rf"^tree {broken.stop - 1}, node 0: split feature out of range \[0, \d+\)$"):
        for index, _ in source.trees(indices, batch_nodes=CHUNK_ROWS, workers=1, whole_chunks=True):
            handed_out.append(index)
    assert handed_out == list(range(broken.first))


def test_an_abandoned_stream_stops_its_thread(chunked):
    import threading

    original = chunked[0]
    source = _eager_source(chunked, "zip")
    trees = source.trees(np.arange(len(original.estimators_)), batch_nodes=CHUNK_ROWS, workers=1, whole_chunks=True)
    index, tree = next(trees)
    assert _node_bytes(tree) == _node_bytes(original.estimators_[0].tree_)
    assert any(t.name.startswith("treeshard-read") for t in threading.enumerate())
    trees.close()
    assert not any(t.name.startswith("treeshard-read") for t in threading.enumerate())


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_an_eager_load_in_many_batches_predicts_exactly(chunked, kind, monkeypatch):
    from treeshard import planning

    monkeypatch.setattr(planning, "MIN_EAGER_BATCH_BYTES", 1)  # batches of about a 32nd of the model
    original = chunked[0]
    loaded = treeshard.load(chunked[2] if kind == "directory" else chunked[3], lazy=False)
    for a, b in zip(original.estimators_, loaded.estimators_):
        assert_same_state(a, b)
    X, y = make_data("multiclass")
    assert_same_predictions(original, loaded, query_points(X, original), query_targets(y))


@pytest.mark.parametrize("batch_nodes", [CHUNK_ROWS, 10**6])  # several batches, and one
def test_a_batch_is_allocated_only_once_its_read_succeeded(chunked, monkeypatch, batch_nodes):
    source = _eager_source(chunked, "zip")
    indices = np.arange(len(chunked[0].estimators_))
    batches = source.chunk_batches(indices, batch_nodes=batch_nodes)
    failing = batches[-1]
    read_batch, allocate = source.read_batch, source.allocate
    allocated = []

    def read_or_fail(batch, out, previous, fetched=None):  # type: ignore[no-untyped-def]
        if batch == failing:
            raise treeshard.IntegrityError("nodes/threshold: chunk checksum mismatch at row 0")
        return read_batch(batch, out, previous, fetched)

    def allocate_logged(first, stop):  # type: ignore[no-untyped-def]
        allocated.append((first, stop))
        return allocate(first, stop)

    monkeypatch.setattr(source, "read_batch", read_or_fail)
    monkeypatch.setattr(source, "allocate", allocate_logged)
    with pytest.raises(treeshard.IntegrityError, match=r"^nodes/threshold: chunk checksum mismatch at row 0$"):
        list(source.trees(indices, batch_nodes=batch_nodes, workers=1, whole_chunks=True))
    assert allocated == [(b.first, b.stop) for b in batches[:-1]]

