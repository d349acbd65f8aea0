"""The direct writer: the same bytes zarr-python writes, readable by plain zarr, digested as written."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
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
from treeshard.columns import NODE_COLUMNS as NODE_DTYPES
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


@pytest.fixture(params=["caller", "workers"])
def threads(request, monkeypatch):
    """Encoded in the caller's thread (a small model) or by the worker pipeline (forced)."""
    if request.param == "workers":
        monkeypatch.setattr(writer, "PARALLEL_BYTES", 0)
        monkeypatch.setattr(writer, "encoding_threads", lambda: 2)
    return request.param


@pytest.mark.parametrize("codec", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_writer_bytes_equal_zarr_python(name, codec, chunks_per_shard, threads, monkeypatch, tmp_path):
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


@pytest.fixture
def blosc_calls(monkeypatch) -> list[int]:
    """The Blosc shuffle of every ``numcodecs.Blosc.encode`` call, in order."""
    import numcodecs

    calls: list[int] = []
    original = numcodecs.Blosc.encode

    def counting(self, buf):  # noqa: ANN001, ANN202
        calls.append(self.shuffle)
        return original(self, buf)

    monkeypatch.setattr(numcodecs.Blosc, "encode", counting)
    return calls


def test_first_chunk_is_compressed_once_per_shuffle(blosc_calls):
    """The shuffle trial's winner is the stored chunk: a one-chunk column is compressed once per
    candidate (byte, bit and, for a large float chunk, no shuffle), never again."""
    calls = blosc_calls
    encoded = encode_array("nodes/x", np.arange(1000, dtype=np.int64), codec="lz4", rows=1000)
    assert calls == [1, 2] and len(encoded.shards) == 1
    calls.clear()
    encoded = encode_array("nodes/x", np.arange(8192, dtype=np.float64), codec="lz4", rows=8192)
    assert calls == [1, 2, 0] and len(encoded.shards) == 1


def test_mostly_zero_floats_are_stored_without_shuffle():
    """A float column of mostly exact zeros (a fully grown forest's impurity) compresses best
    unshuffled: the trial picks it, and the column reads back exactly."""
    values = np.zeros(65536)
    values[::3] = np.random.default_rng(0).random(len(values[::3]))
    encoded = encode_array("nodes/impurity", values, codec="lz4", rows=len(values))
    blosc = encoded.metadata["codecs"][0]["configuration"]["codecs"][1]
    assert blosc["configuration"]["shuffle"] == "noshuffle"
    assert codecs.best_shuffle("lz4", values) == "noshuffle"
    store = zarr.storage.MemoryStore()
    prototype = zarr.core.buffer.default_buffer_prototype()
    for key, value in writer.store_files([encoded], {}).items():
        zarr.core.sync.sync(store.set(key, prototype.buffer.from_bytes(value if isinstance(value, bytes) else b"".join(value))))
    assert np.array_equal(zarr.open_array(store, path="nodes/impurity", mode="r")[...], values)


@pytest.mark.parametrize(
    "dtype, nbytes, expected",
    [
        ("float64", 64 * 1024, ("shuffle", "bitshuffle", "noshuffle")),
        ("float32", 1 << 20, ("shuffle", "bitshuffle", "noshuffle")),
        ("float64", 64 * 1024 - 8, ("shuffle", "bitshuffle")),
        ("int32", 1 << 20, ("shuffle", "bitshuffle")),
        ("uint8", 1 << 20, ("shuffle", "bitshuffle")),
        ("float64", 1016, ("shuffle",)),
        ("uint8", 1000, ("bitshuffle",)),
    ],
)
def test_shuffle_candidates(dtype, nbytes, expected):
    """Only large float chunks are tried unshuffled (a small model's save pays no third trial);
    a chunk under 1 KiB gets zarr's default alone."""
    assert codecs.shuffle_candidates(np.dtype(dtype), nbytes) == expected


@pytest.mark.parametrize(
    ("data", "shuffle"),
    [(np.arange(100, dtype=np.int64), "shuffle"), (np.arange(100, dtype=np.uint8), "bitshuffle"), (np.zeros(127, dtype=np.float64), "shuffle")],
    ids=["int64", "uint8", "float64"],
)
def test_a_first_chunk_under_the_trial_size_is_compressed_once_with_zarrs_shuffle(data, shuffle, blosc_calls):
    calls = blosc_calls
    assert data.nbytes < codecs.SHUFFLE_TRIAL_BYTES
    encoded = encode_array("nodes/x", data, codec="lz4")
    assert len(calls) == 1
    assert encoded.metadata["codecs"][0]["configuration"]["codecs"][1]["configuration"]["shuffle"] == shuffle
    assert best_shuffle("lz4", data) == shuffle


def test_a_first_chunk_of_the_trial_size_takes_the_better_shuffle():
    data = np.random.RandomState(0).randint(0, 4, codecs.SHUFFLE_TRIAL_BYTES // 4).astype(np.int32)  # bit shuffle wins
    assert data.nbytes == codecs.SHUFFLE_TRIAL_BYTES and best_shuffle("lz4", data) == "bitshuffle"
    encoded = encode_array("nodes/x", data, codec="lz4")
    assert encoded.metadata["codecs"][0]["configuration"]["codecs"][1]["configuration"]["shuffle"] == "bitshuffle"


@pytest.mark.parametrize("text", ["\x00consolidated\x00", "\x00attributes\x00", '"}]{['])
def test_root_document_keeps_attributes_that_look_like_its_placeholders(text, tmp_path):
    """The root's template is split before anything is put in: no value is mistaken for a slot."""
    encoded = [encode_array("nodes/x", np.arange(3), codec="lz4")]
    attributes = {"treeshard": {"note": text}, "other": [text]}
    as_dict = writer.store_files(encoded, attributes)["zarr.json"]
    assert writer.store_files(encoded, writer.dumps(attributes))["zarr.json"] == as_dict
    root = json.loads(as_dict)
    assert root["attributes"] == attributes
    assert list(root["consolidated_metadata"]["metadata"]) == ["nodes", "nodes/x"]
    treeshard.save(MODELS["tree"], tmp_path / "m.zip", metadata={"note": text})
    assert treeshard.open(tmp_path / "m.zip").info.metadata == {"note": text}
    group = zarr.open_group(zarr.storage.ZipStore(tmp_path / "m.zip", mode="r"), mode="r")
    assert group.attrs["treeshard"]["metadata"] == {"note": text}


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


def _fake_tree(records: np.ndarray, values: np.ndarray):
    """What TreeNodeRows reads of a sklearn Tree: its node count and the arrays of ``__getstate__``."""

    class Tree:
        node_count = len(records)

        def __getstate__(self):
            return {"nodes": records, "values": values}

    return Tree()


def _numpy_fill(rows, start, stop, expected):
    """TreeNodeRows' numpy path: every column but value, and whether value is exact weighted counts."""
    from treeshard.columns import NotWeightedCounts

    out = {name: np.empty_like(column[start:stop]) for name, column in expected.arrays().items() if name != "value"}
    for name, buffer in out.items():
        rows.fill(name, start, stop, buffer)
    counts = np.empty((stop - start, rows.value_width), dtype=np.int32)
    try:
        rows.fill_weighted_counts(start, stop, counts, {})
    except NotWeightedCounts:
        return out, None
    return out, counts


@pytest.mark.parametrize("case", ["counts", "fractional-weights", "regressor", "boosting"])
def test_compiled_fill_columns_equals_the_numpy_path(case):
    """One compiled pass (_kernels.fill_node_columns) fills what the numpy copies and checks do."""
    from treeshard.columns import TreeNodeRows

    X, y = make_data("multiclass")
    if case == "fractional-weights":
        weights = np.ones(len(y))
        weights[-1] = 0.3  # only nodes that hold the last sample have fractional counts
        model = RandomForestClassifier(n_estimators=3, bootstrap=False, random_state=0).fit(X, y, sample_weight=weights)
    else:
        model = {"counts": MODELS["forest-oob"], "regressor": MODELS["forest-regressor"], "boosting": MODELS["boosting"]}[case]
    saved = adapter_for(model).to_saved(model)
    expected = to_columns(saved.trees, saved.layout)
    rows = TreeNodeRows(saved.trees, saved.layout)
    assert rows._compiled is not None
    rng = np.random.RandomState(0)
    exact_seen = set()
    for start, stop in [(0, rows.n_nodes), (0, 0), (0, 1), (rows.n_nodes - 1, rows.n_nodes), *rng.randint(0, rows.n_nodes, size=(20, 2)).tolist()]:
        start, stop = min(start, stop), max(start, stop)
        numpy_out, numpy_counts = _numpy_fill(rows, start, stop, expected)
        out = {name: np.full_like(buffer, 7) for name, buffer in numpy_out.items()}
        counts = np.empty((stop - start, rows.value_width), dtype=np.int32)
        exact = rows.fill_columns(start, stop, out, counts)
        for name, buffer in numpy_out.items():
            assert np.array_equal(out[name], buffer), (name, start, stop)
            assert np.array_equal(out[name], expected.arrays()[name][start:stop]), (name, start, stop)
        assert exact == (numpy_counts is not None), (start, stop)
        if exact:
            assert np.array_equal(counts, numpy_counts)
        exact_seen.add(exact)
    # Empty ranges are exact; so are some ranges of regression values that happen to be integers.
    assert exact_seen == ({True} if case == "counts" else {True, False})


def test_compiled_fill_columns_reads_records_without_missing_go_to_left():
    """sklearn < 1.3's node record has no missing_go_to_left (nothing goes left): stored as 0."""
    from treeshard.columns import TreeNodeRows
    from treeshard.record import TreeLayout

    old = np.dtype(
        {
            "names": ["left_child", "right_child", "feature", "threshold", "impurity", "n_node_samples", "weighted_n_node_samples"],
            "formats": ["<i8", "<i8", "<i8", "<f8", "<f8", "<i8", "<f8"],
            "offsets": [0, 8, 16, 24, 32, 40, 48],
            "itemsize": 56,
        }
    )
    records = np.zeros(3, dtype=old)
    records["left_child"], records["right_child"] = [1, -1, -1], [2, -1, -1]
    records["feature"], records["threshold"] = [4, -2, -2], [0.5, -2.0, -2.0]
    records["impurity"], records["n_node_samples"], records["weighted_n_node_samples"] = [0.5, 0.0, 0.0], [4, 2, 2], [4.0, 2.0, 2.0]
    values = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]).reshape(3, 1, 2)
    layout = TreeLayout(n_trees=1, n_nodes=3, n_features=5, n_outputs=1, n_classes=(2,))
    rows = TreeNodeRows([_fake_tree(records, values)], layout)
    assert rows._compiled is not None and rows._compiled[4][7] == -1
    out = {name: np.full(3, 9, dtype=dtype) for name, dtype in NODE_DTYPES.items() if name != "value"}
    counts = np.empty((3, 2), dtype=np.int32)
    assert rows.fill_columns(0, 3, out, counts) is True
    assert out["left_child_offset"].tolist() == [1, 0, 0] and out["right_child_offset"].tolist() == [2, 0, 0]
    assert out["feature"].tolist() == [4, -2, -2] and out["missing_go_to_left"].tolist() == [0, 0, 0]
    assert counts.tolist() == [[2, 2], [2, 0], [0, 2]]


def test_compiled_fill_refuses_columns_that_do_not_match_the_range():
    from treeshard import _kernels
    from treeshard.columns import TreeNodeRows

    model = MODELS["tree"]
    saved = adapter_for(model).to_saved(model)
    rows = TreeNodeRows(saved.trees, saved.layout)
    out = [np.empty(4, dtype=dtype) for name, dtype in NODE_DTYPES.items() if name != "value"]
    with pytest.raises(ValueError, match="fill_node_columns: columns and range do not match"):
        _kernels.fill_node_columns(*rows._compiled, 0, 5, *out, None)
    with pytest.raises(ValueError, match="fill_node_columns: counts and range do not match"):
        _kernels.fill_node_columns(*rows._compiled, 0, 4, *out, np.empty((4, rows.value_width + 1), dtype=np.int32))
    source = list(rows._compiled)
    source[4] = (0, 8, 16, 24, 32, 40, 60, 56)  # a float64 field past the end of the 64-byte record
    with pytest.raises(ValueError, match="record offsets do not fit the record size"):
        _kernels.fill_node_columns(*source, 0, 4, *out, None)


@pytest.mark.parametrize("threads", ["caller", "workers"], indirect=True)
def test_value_falls_back_to_float64_when_a_later_chunk_is_not_counts(threads, monkeypatch, tmp_path):
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


def test_large_chunks_are_written_as_zarr_python_writes_them(threads, tmp_path):
    """Chunks too large to join with their crc32c are kept as parts: the same file, the same digests."""
    import hashlib

    data = np.random.RandomState(0).normal(size=300_000)  # five 512 KB chunks that lz4 cannot shrink much
    encoded = encode_array("nodes/x", data, codec="lz4", rows=65536)
    shard = encoded.shards["c/0"]
    assert len(shard) > 5 + 2, "the test meant chunks kept as parts"
    _write_with_zarr(tmp_path / "zarr", {"nodes/x": data}, 65536, codec="lz4", attributes={})
    written = b"".join(shard)
    assert written == (tmp_path / "zarr" / "nodes" / "x" / "c" / "0").read_bytes()
    assert encoded.shard_sha256["c/0"] == hashlib.sha256(written).hexdigest()
    for offset, length, digest in encoded.inner["c/0"][:5]:
        assert hashlib.sha256(written[offset : offset + length]).hexdigest() == digest


def test_buffer_addresses_checks_items_and_contiguity():
    from treeshard import _kernels

    arrays = [np.arange(3, dtype=np.float64), np.zeros((2, 2))]
    out = np.zeros(2, dtype=np.uint64)
    assert _kernels.buffer_addresses(arrays, 8, b"d", out) is True
    assert out.tolist() == [a.__array_interface__["data"][0] for a in arrays]
    assert _kernels.buffer_addresses([np.zeros(2, dtype=np.float32)], 8, b"d", out[:1]) is False
    assert _kernels.buffer_addresses([np.zeros(2, dtype=np.int64)], 8, b"d", out[:1]) is False
    assert _kernels.buffer_addresses([np.zeros((4, 4))[:, 1]], 8, b"d", out[:1]) is False
    with pytest.raises(ValueError, match="buffer_addresses: one address per array"):
        _kernels.buffer_addresses(arrays, 8, b"d", out[:1])


def test_node_rows_without_the_kernel_fill_the_same_columns():
    """Values the kernel cannot read in place (strided) take the numpy path, with the same result."""
    from treeshard.columns import TreeNodeRows

    model = MODELS["tree"]
    saved = adapter_for(model).to_saved(model)
    state = saved.trees[0].__getstate__()
    expected = to_columns(saved.trees, saved.layout)
    rows = TreeNodeRows([_fake_tree(state["nodes"], state["values"])], saved.layout)
    assert rows._compiled is not None
    wide = np.zeros((*state["values"].shape[:2], 2 * state["values"].shape[2]))
    wide[:, :, ::2] = state["values"]
    slow = TreeNodeRows([_fake_tree(state["nodes"], wide[:, :, ::2])], saved.layout)
    assert slow._compiled is None
    n = rows.n_nodes
    for source in (rows, slow):
        out = {name: np.empty_like(column) for name, column in expected.arrays().items() if name != "value"}
        assert source.fill_columns(0, n, out, np.empty((n, source.value_width), dtype=np.int32)) is True
        for name, buffer in out.items():
            assert np.array_equal(buffer, expected.arrays()[name]), name


def test_node_column_rows_are_never_taken_from_an_earlier_save():
    """A thread's scratch outlives a save: the next save's specs refill it, even for the same source."""
    from treeshard.columns import NODE_COLUMNS as dtypes
    from treeshard.writer import _scratch, node_column_specs

    class Source:
        n_nodes, value_width, fill_value = 4, 2, 1

        def fill_columns(self, start, stop, out, counts):
            for buffer in (*out.values(), counts):
                buffer[...] = self.fill_value
            return True

    source = Source()
    first = node_column_specs(source, "nodes", rows=4)
    assert first[0].chunk(0, 4, _scratch()).tolist() == [1, 1, 1, 1]
    source.fill_value = 2
    again = node_column_specs(source, "nodes", rows=4)
    assert [spec.chunk(0, 4, _scratch()).tolist() for spec in again][:3] == [[2, 2, 2, 2]] * 3
    assert list(dtypes) == [spec.path.split("/")[1] for spec in again]


def test_node_records_of_unexpected_field_types_take_the_numpy_path():
    from treeshard.columns import TreeNodeRows

    model = MODELS["tree"]
    saved = adapter_for(model).to_saved(model)
    state = saved.trees[0].__getstate__()
    fields = dict(state["nodes"].dtype.fields)
    odd = np.dtype({"names": list(fields), "formats": [np.dtype("<i8") if name == "threshold" else f[0] for name, f in fields.items()], "offsets": [f[1] for f in fields.values()], "itemsize": state["nodes"].dtype.itemsize})
    records = state["nodes"].astype(odd)
    assert TreeNodeRows([_fake_tree(state["nodes"], state["values"])], saved.layout)._compiled is not None
    assert TreeNodeRows([_fake_tree(records, state["values"])], saved.layout)._compiled is None


@pytest.fixture
def large(monkeypatch):
    """Every model counts as large: encoded by the workers, its digest computed while it is written."""
    monkeypatch.setattr(writer, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(writer, "encoding_threads", lambda: 2)


@pytest.mark.parametrize("kind", ["m.zip", "m"])
def test_digest_computed_while_writing_is_the_one_read_back(large, kind, tmp_path):
    path = tmp_path / kind
    treeshard.save(MODELS["forest-oob"], path)
    if kind.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            stored = json.loads(archive.read(integrity.DIGEST_KEY))
    else:
        stored = json.loads((path / integrity.DIGEST_KEY).read_bytes())
    assert stored == integrity.compute_digest(path)
    integrity.verify_store(path)


def test_encode_files_waits_for_the_digest(large, tmp_path):
    """What a repository stores is plain bytes, the digest included, as a save writes them."""
    from treeshard.saving import encode_files

    files = encode_files(MODELS["forest-oob"])
    assert all(isinstance(value, (bytes, list)) for value in files.values())
    treeshard.save(MODELS["forest-oob"], tmp_path / "m")
    digest = json.loads(files[integrity.DIGEST_KEY])
    written = json.loads((tmp_path / "m" / integrity.DIGEST_KEY).read_bytes())
    assert written["arrays"] == digest["arrays"]


@pytest.mark.parametrize("kind", ["m.zip", "m"])
def test_failed_digest_leaves_the_old_model(large, kind, monkeypatch, tmp_path):
    """A digest thread that fails fails the save before anything is put in place."""
    path = tmp_path / kind
    old = MODELS["tree"]
    treeshard.save(old, path)
    before = sorted(p.name for p in tmp_path.iterdir())

    def failing(encoded, *, threads=1):
        raise MemoryError("no memory left to hash")

    monkeypatch.setattr(writer, "hash_shard_files", failing)
    with pytest.raises(MemoryError, match="no memory left to hash"):
        treeshard.save(MODELS["forest-oob"], path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    X, _ = make_data("multiclass")
    assert np.array_equal(treeshard.load(path).predict_proba(X), old.predict_proba(X))
