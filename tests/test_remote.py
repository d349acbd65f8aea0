"""Models in object storage (issue 7): S3 and HTTP servers on loopback, request counting.

The servers (``tests/servers.py``) are started by the fixtures and count the
requests they answer, so frugality is asserted where it happens.
"""

from __future__ import annotations

import pickle
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import assert_same_predictions, make_data, query_points, query_targets
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
from treeshard import remote
from treeshard._fastread import FastReader
from treeshard.errors import MissingDependencyError, RemoteStoreError

pytest.importorskip("fsspec")
pytest_plugins = ["servers"]  # the S3 and HTTP server fixtures
BUCKET = "models"  # created by the s3_server fixture

ESTIMATORS = {
    "DecisionTreeClassifier": lambda: DecisionTreeClassifier(max_depth=6, random_state=0),
    "DecisionTreeRegressor": lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
    "ExtraTreeClassifier": lambda: ExtraTreeClassifier(random_state=0),
    "ExtraTreeRegressor": lambda: ExtraTreeRegressor(random_state=0),
    "RandomForestClassifier": lambda: RandomForestClassifier(n_estimators=4, random_state=0),
    "RandomForestRegressor": lambda: RandomForestRegressor(n_estimators=4, random_state=0),
    "ExtraTreesClassifier": lambda: ExtraTreesClassifier(n_estimators=4, random_state=0),
    "ExtraTreesRegressor": lambda: ExtraTreesRegressor(n_estimators=4, random_state=0),
    "GradientBoostingClassifier": lambda: GradientBoostingClassifier(n_estimators=4, max_depth=2, random_state=0),
    "GradientBoostingRegressor": lambda: GradientBoostingRegressor(n_estimators=4, max_depth=2, random_state=0),
}


def _fit(name: str) -> tuple[Any, np.ndarray, np.ndarray]:
    X, y = make_data("multiclass" if "Classifier" in name else "regression")
    return ESTIMATORS[name]().fit(X, y), X, y


def _unique(suffix: str = "") -> str:
    return f"m-{uuid.uuid4().hex[:10]}{suffix}"


def _save_remote(model: Any, location: str, *, http: Any) -> str:
    """Save ``model`` where ``location`` says; return the URL to read it from."""
    suffix = ".zip" if location.endswith("zip") else ""
    name = _unique(suffix)
    if location.startswith("s3"):
        url = f"s3://{BUCKET}/{name}"
        treeshard.save(model, url)
        return url
    treeshard.save(model, http.root / name)  # an HTTP server serves what was saved to its directory
    return f"{http.url}/{name}"


@pytest.fixture(scope="module")
def big_forest() -> Any:
    """100 trees of 6399 nodes: about 10 trees per 65536-node chunk, so 10 trees are a tenth of the bytes."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(3200, 4))
    y = X[:, 0] + rng.normal(size=3200)
    return ExtraTreesRegressor(n_estimators=100, max_features=1, random_state=0).fit(X, y), X


@pytest.fixture(scope="module")
def big_forest_urls(big_forest: Any, http_server: Any) -> dict[str, str]:
    """The big forest served over HTTP as a directory (``""``) and as a zip (``".zip"``)."""
    model, _ = big_forest
    urls = {}
    for suffix in ("", ".zip"):
        name = _unique(suffix)
        treeshard.save(model, http_server.root / name)
        urls[suffix] = f"{http_server.url}/{name}"
    return urls


# --------------------------------------------------------------------------- URLs
def test_is_url() -> None:
    assert remote.is_url("s3://bucket/model")
    assert remote.is_url("https://host/model.zip")
    assert remote.is_url("memory://model")
    assert not remote.is_url("model.zip")
    assert not remote.is_url("/tmp/model")
    assert not remote.is_url(Path("s3:/x"))
    assert remote.is_url("file:///tmp/model")


@pytest.mark.parametrize("key", ["../secret", "a/../../b", "/etc/passwd", "a?x=1", "a#b", "a//b", ""])
def test_keys_cannot_leave_the_store(http_server: Any, key: str) -> None:
    name = _unique()
    treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), http_server.root / name)
    source = remote.open_url_for_reading(f"{http_server.url}/{name}")
    http_server.counter.reset()
    with pytest.raises(treeshard.FormatError, match="not a plain relative path"):
        source.get(key)
    with pytest.raises(treeshard.FormatError, match="not a plain relative path"):
        source.get_range(key, 0, 10)
    assert http_server.counter.requests == 0


# --------------------------------------------------------------------------- round trips
# Every estimator through S3 (one zip, one put) and HTTP (a directory); the other two
# layouts (an S3 directory, a zip over HTTP) with one forest and one boosting model.
ROUND_TRIPS = [(name, "s3-zip") for name in sorted(ESTIMATORS)] + [(name, "http") for name in sorted(ESTIMATORS)]
ROUND_TRIPS += [(name, location) for name in ("RandomForestClassifier", "GradientBoostingRegressor") for location in ("s3", "http-zip")]


@pytest.mark.parametrize(("name", "location"), ROUND_TRIPS)
def test_round_trip(name: str, location: str, s3_env: Any, http_server: Any) -> None:
    model, X, y = _fit(name)
    url = _save_remote(model, location, http=http_server)
    loaded = treeshard.load(url)
    assert type(loaded) is type(model)
    assert_same_predictions(model, loaded, query_points(X, model), query_targets(y))


@pytest.mark.parametrize("url", ["memory://treeshard-tests/{}", "memory://treeshard-tests/{}.zip"])
def test_memory_url_round_trip_and_overwrite(url: str) -> None:
    url = url.format(_unique())
    first, X, _ = _fit("RandomForestClassifier")
    second = RandomForestClassifier(n_estimators=3, random_state=1).fit(*make_data("binary"))
    treeshard.save(first, url)
    with pytest.raises(treeshard.StoreExistsError):
        treeshard.save(second, url)
    assert np.array_equal(treeshard.load(url).predict_proba(X), first.predict_proba(X))
    treeshard.save(second, url, overwrite=True)
    assert np.array_equal(treeshard.load(url).predict_proba(X), second.predict_proba(X))


def test_storage_options_reach_the_filesystem(s3_server: Any, tmp_path: Path) -> None:
    """No credentials in the environment: they come from ``storage_options`` alone."""
    model, _, _ = _fit("ExtraTreesClassifier")
    url = f"s3://{BUCKET}/{_unique()}.zip"
    from treeshard.stores import writing

    with writing(url, overwrite=False, storage_options=s3_server.storage_options) as target:
        treeshard.save(model, target)
    reader = FastReader(url, s3_server.storage_options)
    assert reader.attributes["treeshard"]["estimator"] == "ExtraTreesClassifier"
    reader.close()


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_storage_options_through_the_public_api(s3_server: Any, suffix: str) -> None:
    """save, open, load (lazy and eager) and Predictor all take ``storage_options``."""
    model, X, _ = _fit("RandomForestClassifier")
    url = f"s3://{BUCKET}/{_unique()}{suffix}"
    options = s3_server.storage_options
    treeshard.save(model, url, storage_options=options)
    with treeshard.open(url, storage_options=options) as handle:
        assert handle.info.estimator == "RandomForestClassifier"
    for lazy in (True, False):
        loaded = treeshard.load(url, lazy=lazy, storage_options=options)
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert np.array_equal(treeshard.Predictor(url, storage_options=options).predict_proba(X), model.predict_proba(X))


# --------------------------------------------------------------------------- frugal reads
@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_open_reads_only_the_root(http_server: Any, big_forest_urls: dict[str, str], suffix: str) -> None:
    http_server.counter.reset()
    with treeshard.open(big_forest_urls[suffix]) as handle:
        assert handle.info.n_estimators == 100
    assert 1 <= http_server.counter.requests <= 2
    assert {path for _, path, _ in http_server.counter.log} <= {urlsplit(big_forest_urls[suffix]).path, urlsplit(big_forest_urls[suffix]).path + "/zarr.json"}
    assert http_server.counter.bytes_sent <= 2 * remote.ZIP_TAIL_BYTES


@pytest.mark.parametrize("location", ["s3", "s3-zip"])
def test_open_on_s3_is_one_request(s3_env: Any, http_server: Any, location: str) -> None:
    model, _, _ = _fit("RandomForestRegressor")
    url = _save_remote(model, location, http=http_server)
    s3_env.counter.reset()
    with treeshard.open(url) as handle:
        assert handle.info.estimator == "RandomForestRegressor"
    assert 1 <= s3_env.counter.requests <= 2


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_partial_load_reads_a_tenth(http_server: Any, big_forest: Any, big_forest_urls: dict[str, str], suffix: str) -> None:
    model, X = big_forest
    url = big_forest_urls[suffix]
    counter = http_server.counter

    counter.reset()
    full = treeshard.load(url, lazy=False)
    full_requests, full_bytes = counter.requests, counter.bytes_sent
    assert np.array_equal(full.predict(X), model.predict(X))

    counter.reset()
    part = treeshard.load(url, estimators=10, lazy=False)
    part_requests, part_bytes = counter.requests, counter.bytes_sent
    expected = np.mean([tree.predict(X) for tree in model.estimators_[:10]], axis=0)
    assert np.array_equal(part.predict(X), expected)
    n_arrays = len(treeshard.open(url).info.arrays)
    # root (+ digest record) and, per array, a shard index and one chunk
    assert part_requests <= 2 + 2 * n_arrays
    assert part_requests < full_requests
    assert 0.05 * full_bytes <= part_bytes <= 0.15 * full_bytes, (part_bytes, full_bytes)


def test_full_load_fetches_ranges_concurrently(http_server: Any) -> None:
    model, X, _ = _fit("RandomForestClassifier")
    name = _unique()
    treeshard.save(model, http_server.root / name)
    counter = http_server.counter
    counter.reset()
    counter.delay = 0.01  # each GET held 10 ms: concurrent requests overlap at the server
    try:
        loaded = treeshard.load(f"{http_server.url}/{name}", lazy=False)
    finally:
        counter.delay = 0.0
    assert counter.max_in_flight >= 2
    assert np.array_equal(loaded.predict(X), model.predict(X))


# --------------------------------------------------------------------------- cache
def test_cache_serves_a_warm_open_and_is_keyed_by_content(http_server: Any, tmp_path: Path) -> None:
    first, _, _ = _fit("RandomForestClassifier")
    second = RandomForestClassifier(n_estimators=6, random_state=3).fit(*make_data("multiclass", seed=1))
    name = _unique()
    treeshard.save(first, http_server.root / name)
    url, cache = f"{http_server.url}/{name}", tmp_path / "cache"
    counter = http_server.counter

    counter.reset()
    cold = remote.open_url_for_reading(url, cache_dir=cache)
    for key in cold.files:
        cold.get(key)
    assert cold.misses == len(cold.files) and counter.requests >= len(cold.files)
    digest = cold.digest
    assert sorted(p.name for p in cache.iterdir()) == [digest]

    counter.reset()
    warm = remote.open_url_for_reading(url, cache_dir=cache)
    for key in warm.files:
        assert warm.get(key) == (http_server.root / name / key).read_bytes()
    assert warm.hits == len(warm.files) and warm.misses == 0
    assert counter.requests == 1  # the digest record: is the cached model still the one at the URL?

    # The model at the URL changes: a new digest, a new cache entry, never the stale one.
    treeshard.save(second, http_server.root / name, overwrite=True)
    fresh = remote.open_url_for_reading(url, cache_dir=cache)
    assert fresh.digest != digest and fresh.misses == 0
    assert fresh.get("zarr.json") == (http_server.root / name / "zarr.json").read_bytes()


def test_cache_through_load(http_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, X, _ = _fit("ExtraTreesRegressor")
    name = _unique(".zip")
    treeshard.save(model, http_server.root / name)
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "cache"))
    url = f"{http_server.url}/{name}"
    assert np.array_equal(treeshard.load(url).predict(X), model.predict(X))
    http_server.counter.reset()
    assert np.array_equal(treeshard.load(url).predict(X), model.predict(X))
    # One request per open of the store (its tail: is the cached model still the one at the
    # URL?); a lazy load currently opens it twice (the handle, then the model's own reader).
    assert 1 <= http_server.counter.requests <= 2
    assert {path for _, path, _ in http_server.counter.log} == {f"/{name}"}


def test_cache_refuses_a_file_that_does_not_match_the_record(http_server: Any, tmp_path: Path) -> None:
    model, _, _ = _fit("RandomForestRegressor")
    name = _unique()
    treeshard.save(model, http_server.root / name)
    source = remote.open_url_for_reading(f"{http_server.url}/{name}", cache_dir=tmp_path)
    shard = next(k for k in source.files if k.startswith("nodes/threshold/c"))
    path = http_server.root / name / shard
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(treeshard.IntegrityError, match="does not match"):
        source.get_range(shard, 0, 4)
    assert not (tmp_path / source.digest / shard).exists()


# --------------------------------------------------------------------------- writing
def test_http_is_read_only(http_server: Any) -> None:
    with pytest.raises(treeshard.InvalidStoreError, match="read-only"):
        treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), f"{http_server.url}/{_unique()}")


def test_failed_upload_leaves_the_old_model(s3_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    first, X, _ = _fit("RandomForestRegressor")
    second = RandomForestRegressor(n_estimators=2, random_state=5).fit(*make_data("regression", seed=2))
    url = f"s3://{BUCKET}/{_unique()}"
    treeshard.save(first, url)
    calls = {"n": 0}
    original = s3fs.S3FileSystem._pipe_file

    async def flaky(self: Any, path: str, data: bytes, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionResetError("connection reset by peer")
        return await original(self, path, data, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_pipe_file", flaky)
    with pytest.raises(RemoteStoreError, match="upload failed"):
        treeshard.save(second, url, overwrite=True)
    monkeypatch.setattr(s3fs.S3FileSystem, "_pipe_file", original)
    assert np.array_equal(treeshard.load(url).predict(X), first.predict(X))
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    assert [p for p in fs.ls(BUCKET) if ".tmp-" in p] == []  # the temporary prefix was removed


def test_save_refuses_a_prefix_holding_other_objects(s3_env: Any) -> None:
    import s3fs

    prefix = _unique()
    s3fs.S3FileSystem(skip_instance_cache=True).pipe(f"{BUCKET}/{prefix}/notes.txt", b"not a model")
    with pytest.raises(treeshard.StoreExistsError, match="no treeshard store"):
        treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), f"s3://{BUCKET}/{prefix}", overwrite=True)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_missing_remote_store(http_server: Any, s3_env: Any, suffix: str) -> None:
    for url in (f"{http_server.url}/absent{suffix}", f"s3://{BUCKET}/absent{suffix}"):
        with pytest.raises(treeshard.StoreNotFoundError):
            treeshard.load(url)


def test_not_a_zip_at_a_zip_url(http_server: Any) -> None:
    (http_server.root / "fake.zip").write_bytes(b"not a zip at all" * 100)
    with pytest.raises(treeshard.FormatError, match="not a zip file"):
        treeshard.load(f"{http_server.url}/fake.zip")


def test_compressed_zip_members_are_refused(http_server: Any) -> None:
    import zipfile

    name = _unique(".zip")
    treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), http_server.root / "src.zip")
    with zipfile.ZipFile(http_server.root / "src.zip") as source, zipfile.ZipFile(http_server.root / name, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    with pytest.raises(treeshard.FormatError, match="is compressed"):
        treeshard.load(f"{http_server.url}/{name}")


def test_unreachable_server_raises_remote_store_error() -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RemoteStoreError):
        treeshard.load(f"http://127.0.0.1:{port}/model")


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.delitem(importlib.import_module("fsspec.registry")._registry, "s3", raising=False)
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(MissingDependencyError, match=r"pip install treeshard\[s3\]"):
        treeshard.load("s3://bucket/model")


# --------------------------------------------------------------------------- pickling
@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_lazy_model_pickles_as_a_reference(http_server: Any, big_forest: Any, big_forest_urls: dict[str, str], suffix: str) -> None:
    model, X = big_forest
    url = big_forest_urls[suffix]
    lazy = treeshard.load(url, estimators=[3, 5, 7])
    payload = pickle.dumps(lazy)
    assert len(payload) < 4096  # the 100-tree store holds about 20 MB of nodes
    from treeshard import distributed

    distributed.clear_opened()
    http_server.counter.reset()
    copy = pickle.loads(payload)
    # Unpickling opens the store and reads the tree offsets and small fitted arrays: no tree yet.
    stored = treeshard.open(url).info.stored_bytes
    assert http_server.counter.bytes_sent < 0.02 * stored
    assert not [path for _, path, _ in http_server.counter.log if "/nodes/" in path and "/tree_ptr/" not in path]
    assert copy.estimators_.indices.tolist() == [3, 5, 7]
    expected = np.mean([model.estimators_[i].predict(X) for i in (3, 5, 7)], axis=0)
    assert np.array_equal(copy.predict(X), expected)
    assert pickle.loads(payload).estimators_ is copy.estimators_  # one open store per process


def test_model_from_a_store_object_pickles_its_trees() -> None:
    import zarr

    model, X, _ = _fit("RandomForestClassifier")
    store = zarr.storage.MemoryStore()
    treeshard.save(model, store)
    copy = pickle.loads(pickle.dumps(treeshard.load(store)))
    assert isinstance(copy.estimators_, list)
    assert np.array_equal(copy.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_predictor_reads_a_url(http_server: Any, suffix: str) -> None:
    model, X, _ = _fit("RandomForestClassifier")
    name = _unique(suffix)
    treeshard.save(model, http_server.root / name)
    predictor = treeshard.Predictor(f"{http_server.url}/{name}")
    assert np.array_equal(predictor.predict_proba(X), model.predict_proba(X))
