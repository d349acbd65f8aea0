"""The direct writer: the same bytes zarr-python writes, readable by plain zarr, digested as written."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers.data import make_data
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier

import treeshard
from treeshard import codecs, integrity, writer
from treeshard.adapters import adapter_for
from treeshard.codecs import best_shuffle, chunk_geometry, compressors, node_chunk_rows
from treeshard.columns import encode_values, to_columns
from treeshard.reader import FITTED_GROUP, NODES_GROUP
from treeshard.writer import encode_array


def _models() -> dict:
    X, y = make_data("multiclass")
    Xr, yr = make_data("multioutput_regression")
    return {
        "tree": DecisionTreeClassifier(random_state=0).fit(X, y),
        "forest-oob": RandomForestClassifier(n_estimators=12, oob_score=True, random_state=0).fit(X, y),
        "forest-regressor": RandomForestRegressor(n_estimators=4, random_state=0).fit(Xr, yr),
        "boosting": GradientBoostingClassifier(n_estimators=15, subsample=0.7, random_state=0).fit(X, y),
    }


MODELS = _models()


def _expected_arrays(model) -> tuple[dict[str, np.ndarray], int]:
    """What a save stores for ``model``, computed without the writer."""
    saved = adapter_for(model).to_saved(model)
    columns = to_columns(saved.trees, saved.layout)
    columns.value, _ = encode_values(columns)
    arrays = {f"{NODES_GROUP}/tree_ptr": columns.tree_ptr}
    arrays.update({f"{NODES_GROUP}/{name}": array for name, array in columns.arrays().items()})
    arrays.update({f"{FITTED_GROUP}/{name}": array for name, array in saved.arrays.items()})
    return arrays, saved.layout.value_width


def _write_with_zarr(path: Path, arrays: dict[str, np.ndarray], node_rows: int, *, codec: str, attributes: dict) -> None:
    """The store as zarr-python writes it (treeshard's writer before it wrote files itself)."""
    root = zarr.open_group(zarr.storage.LocalStore(path), mode="w")
    for name, data in arrays.items():
        node_column = name.startswith(f"{NODES_GROUP}/") and name != f"{NODES_GROUP}/tree_ptr"
        chunks, shards = chunk_geometry(data.shape, data.dtype.itemsize, rows=node_rows if node_column else None)
        array = root.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            shards=shards,
            compressors=compressors(codec, shuffle=best_shuffle(codec, data[: chunks[0]])),
            filters=None,
            fill_value=0,
            config={"write_empty_chunks": True},
        )
        array[...] = data
    root.attrs.put(attributes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(zarr.storage.LocalStore(path))


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(params=[64, 2], ids=["one-shard", "many-shards"])
def chunks_per_shard(request, monkeypatch):
    """Small shards make partial last shards (absent chunks in the index) with small models."""
    monkeypatch.setattr(codecs, "CHUNKS_PER_SHARD", request.param)
    return request.param


@pytest.mark.parametrize("codec", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_writer_bytes_equal_zarr_python(name, codec, chunks_per_shard, monkeypatch, tmp_path):
    if chunks_per_shard == 2:
        monkeypatch.setattr("treeshard.saving.node_chunk_rows", lambda width: 16)
    treeshard.save(MODELS[name], tmp_path / "direct", codec=codec)
    written = _files(tmp_path / "direct")
    attributes = json.loads(written["zarr.json"])["attributes"]
    arrays, width = _expected_arrays(MODELS[name])
    rows = 16 if chunks_per_shard == 2 else node_chunk_rows(width)
    with zarr.config.set({"json_indent": writer.JSON_INDENT}):
        _write_with_zarr(tmp_path / "zarr", arrays, rows, codec=codec, attributes=attributes)
    by_zarr = _files(tmp_path / "zarr")
    if chunks_per_shard == 2:
        assert any(key.endswith("/c/2") for key in by_zarr), "the test meant several shards per column"
    digest = written.pop(integrity.DIGEST_KEY)
    assert written.keys() == by_zarr.keys()
    for key in written:
        assert written[key] == by_zarr[key], key
    # The digest computed while writing is the one computed by reading the files back.
    assert json.loads(digest) == integrity.compute_digest(zarr.storage.LocalStore(tmp_path / "zarr"))


@pytest.mark.parametrize("kind", ["directory", "zip", "memory"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_plain_zarr_reads_every_array_as_written(name, kind, tmp_path):
    model = MODELS[name]
    if kind == "memory":
        store = zarr.storage.MemoryStore()
        treeshard.save(model, store)
    else:
        path = tmp_path / ("m.zip" if kind == "zip" else "m")
        treeshard.save(model, path)
        store = zarr.storage.ZipStore(path, mode="r") if kind == "zip" else zarr.storage.LocalStore(path, read_only=True)
    group = zarr.open_group(store, mode="r")
    expected, _ = _expected_arrays(model)
    seen = {}
    for path_, array in group.arrays():
        seen[path_] = array
    for sub in (NODES_GROUP, FITTED_GROUP):
        if sub in group:
            for key, array in group[sub].arrays():
                seen[f"{sub}/{key}"] = array
    assert set(seen) == set(expected)
    for key, data in expected.items():
        stored = zarr.open_array(store, path=key, mode="r")
        assert stored.dtype == data.dtype and stored.shape == data.shape, key
        assert np.array_equal(stored[...], data), key
    consolidated = zarr.open_consolidated(store, mode="r")
    assert sorted(consolidated.attrs.asdict()) == ["treeshard"]
    if kind != "memory":
        store.close()
        integrity.verify_store(path)


def test_empty_array_stores_no_chunk():
    encoded = encode_array("fitted/x", np.zeros(0, dtype=np.float64), codec="lz4")
    assert encoded.shards == {} and encoded.metadata["shape"] == [0]


def test_unsupported_dtype_is_refused():
    with pytest.raises(ValueError, match="cannot store dtype <U1"):
        encode_array("fitted/x", np.array(["a"]), codec="lz4")


def test_first_chunk_is_compressed_once_per_shuffle(monkeypatch):
    """The shuffle trial's winner is the stored chunk: a one-chunk column is compressed twice, not three times."""
    import numcodecs

    calls = []
    original = numcodecs.Blosc.encode

    def counting(self, buf):
        calls.append(self.shuffle)
        return original(self, buf)

    monkeypatch.setattr(numcodecs.Blosc, "encode", counting)
    encoded = encode_array("nodes/x", np.arange(1000, dtype=np.int64), codec="lz4", rows=1000)
    assert len(calls) == 2 and len(encoded.shards) == 1


def _count_fsyncs(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = os.fsync

    def counting(fd):
        calls.append(fd)
        return original(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_zip_save_fsyncs_the_file_and_its_directory(monkeypatch, tmp_path):
    calls = _count_fsyncs(monkeypatch)
    treeshard.save(MODELS["forest-oob"], tmp_path / "m.zip")
    assert len(calls) == 2


def test_directory_save_fsyncs_each_file_and_directory_once(monkeypatch, tmp_path):
    calls = _count_fsyncs(monkeypatch)
    treeshard.save(MODELS["forest-oob"], tmp_path / "m")
    files = [p for p in (tmp_path / "m").rglob("*") if p.is_file()]
    directories = [p for p in (tmp_path / "m").rglob("*") if p.is_dir()]
    # every file, every directory of the store and the store itself, then the parent (the rename)
    assert len(calls) == len(files) + len(directories) + 1 + 1


def test_node_rows_fill_any_range_as_to_columns():
    from treeshard.columns import TreeNodeRows

    model = MODELS["forest-oob"]
    saved = adapter_for(model).to_saved(model)
    expected = to_columns(saved.trees, saved.layout)
    rows = TreeNodeRows(saved.trees, saved.layout)
    assert np.array_equal(rows.tree_ptr, expected.tree_ptr)
    rng = np.random.RandomState(0)
    for start, stop in [(0, rows.n_nodes), (0, 1), (rows.n_nodes - 1, rows.n_nodes), *sorted(rng.randint(0, rows.n_nodes, size=(20, 2)).tolist())]:
        start, stop = min(start, stop), max(start, stop)
        for name, column in expected.arrays().items():
            out = np.empty_like(column[start:stop])
            rows.fill(name, start, stop, out)
            assert np.array_equal(out, column[start:stop]), (name, start, stop)


def test_value_falls_back_to_float64_when_a_later_chunk_is_not_counts(monkeypatch, tmp_path):
    """Fractional sample weights: the counts of some nodes are not integers, wherever they are."""
    X, y = make_data("multiclass")
    weights = np.ones(len(y))
    weights[-1] = 0.3  # only nodes that hold the last sample have fractional counts
    model = DecisionTreeClassifier(random_state=0).fit(X, y, sample_weight=weights)
    monkeypatch.setattr("treeshard.saving.node_chunk_rows", lambda width: 4)
    treeshard.save(model, tmp_path / "m")
    info = treeshard.open(tmp_path / "m").info
    loaded = treeshard.load(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "zarr.json").read_bytes())["attributes"]["treeshard"]["trees"]["value_encoding"] == "float64"
    assert info.arrays["nodes/value"]["nbytes"] == model.tree_.value.size * 8
    assert np.array_equal(loaded.tree_.value, model.tree_.value)
    stored = zarr.open_array(zarr.storage.LocalStore(tmp_path / "m", read_only=True), path="nodes/value", mode="r")
    assert stored.dtype == np.float64 and np.array_equal(stored[...], model.tree_.value.reshape(model.tree_.node_count, -1))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_metadata_documents_are_one_line(name, tmp_path):
    """``json_indent`` None, as zarr-python writes it with that setting: no whitespace but its separators."""
    treeshard.save(MODELS[name], tmp_path / "store")
    documents = {key: data for key, data in _files(tmp_path / "store").items() if key.endswith("zarr.json")}
    assert len(documents) > 2
    for key, data in documents.items():
        assert data == json.dumps(json.loads(data)).encode(), key
