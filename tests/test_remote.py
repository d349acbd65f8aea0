"""Models in object storage (issue 7): S3 and HTTP servers on loopback, request counting.

The servers (``tests/helpers/servers.py``) are started by the fixtures and count the
requests they answer, so frugality is asserted where it happens.
"""

from __future__ import annotations

import pickle
import re
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from helpers.compare import assert_same_predictions
from helpers.counting_store import CountingStore, node_chunk_extents, save_with_small_chunks
from helpers.data import make_data, query_points, query_targets
from helpers.stores import reseal
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
from treeshard import MissingDependencyError, RemoteStoreError
from treeshard.chunks import COALESCE_GAP_BYTES, MAX_COALESCED_BYTES, ChunkReader, _ChunkRead, _coalesce
from treeshard.storage import remote
from treeshard.storage.sources import is_local_store
from treeshard.storage.urls import is_url

pytest.importorskip("fsspec")
pytest_plugins = ["helpers.servers"]  # the S3 and HTTP server fixtures
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
    assert is_url("s3://bucket/model")
    assert is_url("https://host/model.zip")
    assert is_url("memory://model")
    assert not is_url("model.zip")
    assert not is_url("/tmp/model")
    assert not is_url(Path("s3:/x"))
    assert is_url("file:///tmp/model")


def test_an_http_url_with_a_fragment_is_refused_before_any_request(http_server: Any) -> None:
    """'model.zip#v2' was read as a directory: every key after the fragment was dropped by the
    client, the server answered with the zip, and the error was 'zarr.json: not valid JSON'."""
    treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), http_server.root / "fragment.zip")
    http_server.counter.reset()
    for url in (f"{http_server.url}/fragment.zip#v2", f"{http_server.url}/fragment.zip?x=1#v2"):
        with pytest.raises(treeshard.errors.InvalidStoreError) as excinfo:
            treeshard.load(url)
        assert str(excinfo.value) == f"{url!r}: an http(s) URL's '#fragment' is not sent to the server; remove it"
    assert http_server.counter.requests == 0
    assert treeshard.load(f"{http_server.url}/fragment.zip").predict([[1]]).tolist() == [1.0]


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


@pytest.mark.parametrize("cache", [False, True])
def test_a_remote_directory_parses_its_digest_record_once_per_open(http_server: Any, tmp_path: Path, monkeypatch: Any, cache: bool) -> None:
    """The source takes sizes from the record; the reader and the cache reuse its parse."""
    from treeshard.storage import digest

    from treeshard.spec import DIGEST_KEY

    name = _unique()
    X, y = make_data("regression")
    model = DecisionTreeRegressor(random_state=0).fit(X, y)
    treeshard.save(model, http_server.root / name)
    parsed: list[int] = []
    original = digest.parse_digest

    def counted(raw: bytes) -> Any:
        parsed.append(len(raw))
        return original(raw)

    monkeypatch.setattr(digest, "parse_digest", counted)
    monkeypatch.setattr(remote, "parse_digest", counted)
    if cache:
        monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "cache"))
    loaded = treeshard.load(f"{http_server.url}/{name}")
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert parsed == [(http_server.root / name / DIGEST_KEY).stat().st_size]


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
    from treeshard.storage.targets import writing

    with writing(url, overwrite=False, storage_options=s3_server.storage_options) as target:
        treeshard.save(model, target)
    reader = ChunkReader(url, s3_server.storage_options)
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
def test_open_reads_only_the_root_and_its_digest_record(http_server: Any, big_forest_urls: dict[str, str], suffix: str) -> None:
    """The root (config) and the digest record it is checked against: a directory's two
    documents, or a zip's tail (which holds both)."""
    http_server.counter.reset()
    with treeshard.open(big_forest_urls[suffix]) as handle:
        assert handle.info.n_estimators == 100
    path = urlsplit(big_forest_urls[suffix]).path
    expected = [path] if suffix else [f"{path}/zarr.json", f"{path}/treeshard.sha256"]
    assert [p for _, p, _ in http_server.counter.log] == expected
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
    assert (part_requests, full_requests) == (REQUESTS[suffix]["10 trees, eager"], REQUESTS[suffix]["all trees, eager"])
    assert 0.05 * full_bytes <= part_bytes <= 0.15 * full_bytes, (part_bytes, full_bytes)


# Requests for the big forest (100 trees, one shard of 10 chunks per node column), also in
# docs/REMOTE.md and BENCHMARKS.md. A directory's open reads its root and its digest record
# (the root is checked against it; it gives the sha256 of every chunk and the sizes of the
# files); a zip, one tail of 64 KiB (end record, central directory, digest record and root).
# Then each array read costs its shard index and one request for the chunks it needs (a
# shard's adjacent chunks come in one). Lazily, every tree is read in one batch (32 MB of
# stored columns); eagerly, in batches of about one chunk, to keep memory low.
REQUESTS = {
    "": {"open": 2, "lazy load": 6, "every tree, lazily": 18, "10 trees, eager": 24, "all trees, eager": 96, "Predictor": 16},
    ".zip": {"open": 1, "lazy load": 5, "every tree, lazily": 17, "10 trees, eager": 22, "all trees, eager": 94, "Predictor": 15},
}


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_request_counts(http_server: Any, big_forest: Any, big_forest_urls: dict[str, str], suffix: str) -> None:
    model, X = big_forest
    url, counter = big_forest_urls[suffix], http_server.counter
    expected = REQUESTS[suffix]
    counter.reset()
    with treeshard.open(url) as handle:
        assert handle.info.n_trees == 100
    assert counter.requests == expected["open"]
    counter.reset()
    loaded = treeshard.load(url)
    assert counter.requests == expected["lazy load"]
    counter.reset()
    for got, tree in zip(loaded.estimators_, model.estimators_):
        assert np.array_equal(got.tree_.threshold, tree.tree_.threshold)
    assert counter.requests == expected["every tree, lazily"]
    counter.reset()
    treeshard.Predictor(url)
    assert counter.requests == expected["Predictor"]


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_lazy_load_reads_the_root_once(http_server: Any, big_forest: Any, big_forest_urls: dict[str, str], suffix: str) -> None:
    """The lazy model reads through the handle's open store: the root is not read again."""
    model, X = big_forest
    url, counter = big_forest_urls[suffix], http_server.counter
    root_path = urlsplit(url).path + ("" if suffix else "/zarr.json")

    def root_reads() -> int:
        # a zip's root comes with its tail (a suffix request)
        return sum(1 for _, path, byte_range in counter.log if path == root_path and (not suffix or (byte_range or "").startswith("bytes=-")))

    counter.reset()
    treeshard.load(url)
    assert root_reads() == 1
    with treeshard.open(url) as handle:
        counter.reset()
        loaded = handle.load(estimators=[2, 40])
        assert root_reads() == 0 and counter.requests == REQUESTS[suffix]["lazy load"] - REQUESTS[suffix]["open"]
    expected = np.mean([model.estimators_[i].predict(X) for i in (2, 40)], axis=0)
    assert np.array_equal(loaded.predict(X), expected)  # the handle is closed, the model reads on
    assert root_reads() == 0


# --------------------------------------------------------------------------- coalesced chunk reads
def _reads(*extents: tuple[int, int]) -> list[Any]:
    return [_ChunkRead("nodes/x", "nodes/x/c/0", extent, lambda data: None) for extent in extents]


def test_coalesce_merges_close_ranges_of_a_shard() -> None:
    gap = COALESCE_GAP_BYTES
    runs = _coalesce(_reads((100, 50), (0, 100), (150 + gap, 10), (161 + 2 * gap, 5)))
    assert [[read.extent for read in run] for run in runs] == [[(0, 100), (100, 50), (150 + gap, 10)], [(161 + 2 * gap, 5)]]
    # overlapping extents (a malformed index) share a run; no run outgrows MAX_COALESCED_BYTES
    half = MAX_COALESCED_BYTES // 2
    runs = _coalesce(_reads((0, half), (10, 20), (half, half), (2 * half, 1)))
    assert [[read.extent for read in run] for run in runs] == [[(0, half), (10, 20), (half, half)], [(2 * half, 1)]]
    assert [[read.extent for read in run] for run in _coalesce(_reads((0, 3 * half)))] == [[(0, 3 * half)]]


def test_only_stores_behind_a_network_coalesce() -> None:
    import zarr
    from zarr.storage import FsspecStore

    assert is_local_store(CountingStore(zarr.storage.MemoryStore()))
    assert is_local_store(FsspecStore.from_url("memory://treeshard-tests/x"))
    assert not is_local_store(FsspecStore.from_url("http://127.0.0.1:9/model"))
    assert remote.RemoteDirectorySource.coalesce_reads and remote.RemoteZipSource.coalesce_reads


CHUNK_ROWS, CHUNKS_PER_SHARD = 128, 4  # 3 shards of 4 chunks per node column


@pytest.fixture(scope="module")
def chunked_forest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray, Path]:
    """A forest saved with small chunks (local copy, to be served or edited)."""
    X, y = make_data("multiclass")
    model = RandomForestClassifier(n_estimators=20, max_depth=7, random_state=0).fit(X, y)
    path = tmp_path_factory.mktemp("chunked") / "forest"
    save_with_small_chunks(model, path, chunk_rows=CHUNK_ROWS, chunks_per_shard=CHUNKS_PER_SHARD)
    return model, X, path


def _serve(http: Any, path: Path) -> tuple[Path, str]:
    """A copy of the store at ``path`` served over HTTP: ``(its directory, its URL)``."""
    name = _unique()
    shutil.copytree(path, http.root / name)
    return http.root / name, f"{http.url}/{name}"


def _gets_per_shard(counter: Any, url: str, column: str) -> dict[str, int]:
    prefix = f"{urlsplit(url).path}/nodes/{column}/c/"
    out: dict[str, int] = {}
    for method, path, _ in counter.log:
        if method == "GET" and path.startswith(prefix):
            out[path] = out.get(path, 0) + 1
    return out


@pytest.mark.parametrize("how", ["url", "zarr store"])
def test_a_shards_adjacent_chunks_come_in_one_request(http_server: Any, chunked_forest: Any, how: str) -> None:
    model, X, path = chunked_forest
    _, url = _serve(http_server, path)
    from zarr.storage import FsspecStore

    store = url if how == "url" else FsspecStore.from_url(url, read_only=True)
    counter = http_server.counter
    loaded = treeshard.load(store)
    counter.reset()
    assert len(list(loaded.estimators_)) == 20
    shards = _gets_per_shard(counter, url, "threshold")
    n_chunks = len(node_chunk_extents(FsspecStore.from_url(url, read_only=True), "nodes/threshold"))
    assert len(shards) == -(-n_chunks // CHUNKS_PER_SHARD) >= 3
    assert set(shards.values()) == {2}  # its index, then all of its chunks at once
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def _edit_shard(path: Path, column: str, edit: Any) -> None:
    """Rewrite shard 0 of ``column``: ``edit(chunks, index)`` on its chunk bytes (a list) and
    index rows (``[offset, length]``, editable); the shard is rebuilt and its index checksummed."""
    import google_crc32c

    shard = path / "nodes" / column / "c" / "0"
    raw = shard.read_bytes()
    index = np.frombuffer(raw[-(16 * CHUNKS_PER_SHARD + 4) : -4], dtype="<u8").reshape(CHUNKS_PER_SHARD, 2).astype(np.int64)
    chunks = [raw[offset : offset + length] for offset, length in index]
    body = edit(chunks, index)
    index_bytes = index.astype("<u8").tobytes()
    shard.write_bytes(body + index_bytes + google_crc32c.value(index_bytes).to_bytes(4, "little"))
    reseal(path)  # as anyone could: the structural checks are what this edit meets


def _padded(after_chunk: int, padding: int) -> Any:
    """Insert ``padding`` bytes after a chunk (a valid shard: zarr reads chunks by the index)."""

    def edit(chunks: list[bytes], index: np.ndarray) -> bytes:
        body, offset = b"", 0
        for k, chunk in enumerate(chunks):
            index[k] = (offset, len(chunk))
            body += chunk
            offset += len(chunk)
            if k == after_chunk:
                body += b"\xab" * padding
                offset += padding
        return body

    return edit


@pytest.mark.parametrize(("padding", "requests"), [(1000, 2), (COALESCE_GAP_BYTES, 2), (COALESCE_GAP_BYTES + 1, 3)])
def test_chunks_a_small_gap_apart_come_in_one_request(http_server: Any, chunked_forest: Any, padding: int, requests: int) -> None:
    model, X, path = chunked_forest
    served, url = _serve(http_server, path)
    _edit_shard(served, "threshold", _padded(1, padding))
    assert np.array_equal(treeshard.load(path).predict_proba(X), model.predict_proba(X))
    http_server.counter.reset()
    assert np.array_equal(treeshard.load(url, lazy=False).predict_proba(X), model.predict_proba(X))
    assert _gets_per_shard(http_server.counter, url, "threshold")[f"{urlsplit(url).path}/nodes/threshold/c/0"] == requests


def _flip_in_chunk(k: int) -> Any:
    def edit(chunks: list[bytes], index: np.ndarray) -> bytes:
        chunk = bytearray(chunks[k])
        chunk[len(chunk) // 2] ^= 0x40
        chunks[k] = bytes(chunk)
        return b"".join(chunks)

    return edit


def _index_edit(change: Any) -> Any:
    def edit(chunks: list[bytes], index: np.ndarray) -> bytes:
        change(index, sum(map(len, chunks)))
        return b"".join(chunks)

    return edit


def _set_row(k: int, value: Any) -> Any:
    def change(index: np.ndarray, body: int) -> None:
        index[k] = value(index, body)

    return change


SHARD_EDITS = {
    "flipped byte in a chunk": _flip_in_chunk(2),
    "chunk past the end of the shard": _index_edit(_set_row(3, lambda index, body: (body - 10, index[3, 1]))),
    "chunk over the shard index": _index_edit(_set_row(1, lambda index, body: (index[1, 0], body + 8))),
    "chunk missing from the index": _index_edit(_set_row(1, lambda index, body: (-1, -1))),
    "half a missing entry": _index_edit(_set_row(2, lambda index, body: (-1, index[2, 1]))),
    "chunks swapped in the index": _index_edit(lambda index, body: index.__setitem__([1, 2], index[[2, 1]])),  # loads: resealed, checksums hold
    "chunks overlapping": _index_edit(_set_row(2, lambda index, body: (index[1, 0], index[2, 1]))),
    "truncated chunk": _index_edit(_set_row(2, lambda index, body: (index[2, 0], index[2, 1] - 5))),
}


@pytest.mark.parametrize("edit", list(SHARD_EDITS))
def test_a_malformed_shard_fails_as_locally(http_server: Any, chunked_forest: Any, edit: str) -> None:
    """Coalesced reads (over HTTP) check every chunk as one read per chunk (a local directory)
    does: the same FormatError and message, or (swapped chunks, with the digest record
    rewritten to match) the same predictions."""
    _, X, path = chunked_forest
    served, url = _serve(http_server, path)
    _edit_shard(served, "threshold", SHARD_EDITS[edit])
    outcomes = []
    for store in (served, url):
        try:
            outcomes.append(treeshard.load(store, lazy=False).predict_proba(X).tolist())
        except treeshard.FormatError as exc:
            outcomes.append((type(exc), str(exc)))
    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[0], tuple) == (edit != "chunks swapped in the index")


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
    # URL?); the lazy model reads through the handle's open store.
    assert http_server.counter.requests == 1
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


def test_a_joblib_file_at_a_url_gets_the_convert_hint(http_server: Any) -> None:
    (http_server.root / "model.joblib").write_bytes(b"\x80\x04not a store")
    url = f"{http_server.url}/model.joblib"
    message = (
        f"{url!r} is not a treeshard store (no zarr.json): by its name a joblib or pickle file. Loading a pickle runs "
        "whatever code it holds: if you made it or fully trust it, download it and convert it once with "
        "`treeshard convert FILE model.zip --trust-pickle`"
    )
    for opening in (treeshard.load, treeshard.open, treeshard.Predictor):
        with pytest.raises(treeshard.StoreNotFoundError, match=f"^{re.escape(message)}$"):
            opening(url)
    with pytest.raises(treeshard.StoreNotFoundError, match=r"is not a treeshard store \(no zarr.json\)$"):
        treeshard.open(f"{http_server.url}/")


def test_a_cache_directory_that_cannot_be_written_is_named(http_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a FileNotFoundError/NotADirectoryError from mkdir (a missing store's type): the variable to fix."""
    model, X, _ = _fit("RandomForestClassifier")
    name = _unique(".zip")
    treeshard.save(model, http_server.root / name)
    url = f"{http_server.url}/{name}"
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv(remote.CACHE_ENV, str(blocker))
    for opening in (treeshard.load, treeshard.Predictor):
        with pytest.raises(treeshard.RemoteStoreError) as caught:
            opening(url)
        assert str(caught.value) == (
            f"{url}: cannot write the cache under {str(blocker)!r} (NotADirectoryError: Not a directory): "
            "set TREESHARD_CACHE_DIR to a writable directory (on AWS Lambda, one under /tmp) or unset it"
        )
    assert blocker.read_bytes() == b""
    monkeypatch.delenv(remote.CACHE_ENV)
    assert np.array_equal(treeshard.Predictor(url).predict(X), model.predict(X))


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


# --------------------------------------------------------------------------- servers without (suffix) ranges
SERVERS = ["plain_http_server", "no_suffix_http_server"]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_servers_without_ranges(request: pytest.FixtureRequest, server: str, suffix: str) -> None:
    """``python -m http.server`` (whole files for every range) and a server refusing suffix
    ranges both serve a store: lazily, eagerly, in part and to the Predictor, exactly."""
    http = request.getfixturevalue(server)
    model, X, _ = _fit("RandomForestClassifier")
    name = _unique(suffix)
    treeshard.save(model, http.root / name)
    url = f"{http.url}/{name}"
    lazy = treeshard.load(url)
    assert np.array_equal(lazy.predict_proba(X), model.predict_proba(X))
    for got, tree in zip(lazy.estimators_, model.estimators_):
        assert np.array_equal(got.tree_.value, tree.tree_.value)
    assert np.array_equal(treeshard.load(url, lazy=False).predict_proba(X), model.predict_proba(X))
    expected = np.mean([tree.predict_proba(X) for tree in model.estimators_[1:3]], axis=0)
    assert np.array_equal(treeshard.load(url, estimators=[1, 2], lazy=False).predict_proba(X), expected)
    assert np.array_equal(treeshard.Predictor(url).predict_proba(X), model.predict_proba(X))


def test_a_server_ignoring_ranges_sends_each_file_once(plain_http_server: Any, big_forest: Any) -> None:
    """Whole files come instead of ranges: each is kept for the next ranges of one open store."""
    model, X = big_forest
    counter = plain_http_server.counter
    for suffix in ("", ".zip"):
        name = _unique(suffix)
        treeshard.save(model, plain_http_server.root / name)
        counter.reset()
        loaded = treeshard.load(f"{plain_http_server.url}/{name}", lazy=False)
        paths = [path for _, path, _ in counter.log]
        if suffix:
            assert paths == [f"/{name}"]  # the whole zip, once
        else:  # the root, the digest record and every shard file, each once
            folder = plain_http_server.root / name
            shards = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and "/c/" in p.relative_to(folder).as_posix()]
            files = ["zarr.json", "treeshard.sha256", *shards]
            assert sorted(paths) == sorted(f"/{name}/{key}" for key in files)
        assert np.array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_a_server_refusing_suffix_ranges_gets_explicit_ones(no_suffix_http_server: Any, suffix: str) -> None:
    """One refused suffix range at most per open store; then a size lookup and explicit ranges."""
    model, X, _ = _fit("ExtraTreesRegressor")
    name = _unique(suffix)
    treeshard.save(model, no_suffix_http_server.root / name)
    counter = no_suffix_http_server.counter
    counter.reset()
    assert np.array_equal(treeshard.load(f"{no_suffix_http_server.url}/{name}", lazy=False).predict(X), model.predict(X))
    suffix_requests = [(method, byte_range) for method, _, byte_range in counter.log if (byte_range or "").startswith("bytes=-")]
    heads = [path for method, path, _ in counter.log if method == "HEAD"]
    # A directory knows every file's size from its digest record: it never asks for a suffix.
    assert (len(suffix_requests), len(heads)) == ((1, 1) if suffix else (0, 0))


def test_a_server_refusing_every_range_is_named(tmp_path_factory: pytest.TempPathFactory) -> None:
    from helpers.servers import HTTPStoreServer

    root = tmp_path_factory.mktemp("no-ranges")
    treeshard.save(DecisionTreeRegressor().fit([[0], [1]], [0, 1]), root / "model")
    server = HTTPStoreServer(root, ranges=False).start()
    try:
        with pytest.raises(RemoteStoreError, match=r"the server refuses byte ranges \(HTTP 416 for bytes=0-\d+ of 'zarr.json'\); treeshard needs a server that serves byte ranges or whole files"):
            treeshard.load(f"{server.url}/model")
    finally:
        server.stop()


# --------------------------------------------------------------------------- chunks bound to their place, remotely
@pytest.mark.parametrize("server", ["http_server", "plain_http_server"])
@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_a_duplicated_shard_fails_over_http(request: pytest.FixtureRequest, tmp_path: Path, server: str, suffix: str) -> None:
    """A shard file copied over another of equal size (valid crc32c) is refused by every read path."""
    import zipfile

    http = request.getfixturevalue(server)
    X, y = make_data("multiclass")
    model = RandomForestClassifier(n_estimators=6, max_depth=6, random_state=0).fit(X, y)
    folder = tmp_path / "model"
    save_with_small_chunks(model, folder, chunk_rows=32, chunks_per_shard=2, codec="none")
    shards = folder / "nodes" / "threshold" / "c"
    assert (shards / "0").stat().st_size == (shards / "1").stat().st_size
    (shards / "1").write_bytes((shards / "0").read_bytes())
    name = _unique(suffix)
    if suffix:
        with zipfile.ZipFile(http.root / name, "w") as archive:
            for file in sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p == folder / "zarr.json"):
                archive.write(file, file.relative_to(folder).as_posix())
    else:
        shutil.copytree(folder, http.root / name)
    url = f"{http.url}/{name}"
    message = (
        "nodes/threshold: chunk 0 of shard nodes/threshold/c/1 does not match its sha256 in treeshard.sha256 "
        "(a swapped, duplicated, misplaced or changed chunk)"
    )
    for read in (lambda: treeshard.load(url, lazy=False), lambda: treeshard.Predictor(url), lambda: list(treeshard.load(url).estimators_)):
        with pytest.raises(treeshard.IntegrityError) as caught:
            read()
        assert str(caught.value) == message


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_a_signature_is_checked_over_http(http_server: Any, big_forest: Any, tmp_path: Path, suffix: str) -> None:
    """``public_key=`` on a URL: one small read more (a directory's treeshard.sig; a zip's is
    in its tail), then every chunk read is checked against the signed record."""
    pytest.importorskip("cryptography")
    from treeshard import integrity

    model, X = big_forest
    private, public = integrity.generate_key_pair()
    name = _unique(suffix)
    treeshard.save(model, http_server.root / name)
    integrity.sign_store(http_server.root / name, private)
    url, counter = f"{http_server.url}/{name}", http_server.counter
    counter.reset()
    loaded = treeshard.load(url, public_key=public, estimators=[2, 40])
    assert counter.requests == REQUESTS[suffix]["lazy load"] + (0 if suffix else 1)
    expected = np.mean([model.estimators_[i].predict(X) for i in (2, 40)], axis=0)
    assert np.array_equal(loaded.predict(X), expected)
    with pytest.raises(treeshard.SignatureError, match="not by the expected key"):
        treeshard.load(url, public_key=integrity.generate_key_pair()[1])


@pytest.mark.parametrize("location", ["s3-zip", "http"])
def test_isolation_forest_round_trip(location: str, s3_env: Any, http_server: Any) -> None:
    """Trees, their columns and path lengths read over the network: lazy, eager and the Predictor."""
    from sklearn.ensemble import IsolationForest

    X, _ = make_data("nan")
    model = IsolationForest(n_estimators=5, max_features=0.6, contamination=0.1, random_state=0).fit(X)
    url = _save_remote(model, location, http=http_server)
    for loaded in (treeshard.load(url), treeshard.load(url, lazy=False), treeshard.Predictor(url)):
        for method in ("score_samples", "decision_function", "predict"):
            assert np.array_equal(getattr(loaded, method)(X), getattr(model, method)(X)), method
