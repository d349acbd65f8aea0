"""A table of malformed stores, each raising the exact error expected.

Each store is made by saving a small valid model to a directory and then
editing it: its config record (in ``zarr.json``), an array rewritten through
zarr with the store's own codecs, or the bytes of a shard file. The digest
record is then rewritten to match (``helpers.stores.reseal``), as anyone can do to
an unsigned store: the per-chunk sha256 check passes and the structural
checks below are what the edit meets. Loading must raise a
:class:`treeshard.TreeshardError` subclass naming what is wrong: never a
KeyError, an IndexError, a hang or a crash.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from helpers.data import make_data
from helpers.stores import edit_config, reseal
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeRegressor

import treeshard
from treeshard import (
    ArrayError,
    ConfigError,
    FormatError,
    IntegrityError,
    InvalidStoreError,
    StoreNotFoundError,
    TreeshardError,
    TreeStructureError,
    UnsupportedFormatVersionError,
)
from treeshard.codecs import compressors

N_FEATURES = 5


@pytest.fixture(scope="module")
def model() -> RandomForestClassifier:
    X, y = make_data("multiclass")
    return RandomForestClassifier(n_estimators=2, max_depth=3, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def pristine(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "model"
    treeshard.save(model, path)
    return path


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    """A fresh copy of the valid store, to be broken by a test."""
    path = tmp_path / "model"
    shutil.copytree(pristine, path)
    return path


def load_and_use(path: Any, *, lazy: bool) -> Any:
    """Load, predict (for a lazy forest: with the flat engine, which reads only what
    prediction needs), then build every tree: where a malformed store must fail."""
    X, _ = make_data("multiclass")
    model = treeshard.load(path, lazy=lazy)
    model.predict(X)
    list(getattr(model, "estimators_", ()))
    return model


# --------------------------------------------------------------------------- editing helpers
def open_group(path: Path) -> Any:
    return zarr.open_group(zarr.storage.LocalStore(path), mode="r+", use_consolidated=False)


def set_values(name: str, edit: Callable[[np.ndarray, np.ndarray], None]) -> Callable[[Path], None]:
    """Rewrite ``nodes/<name>`` (or another array path) through zarr: ``edit(values, tree_ptr)``."""
    path_in_store = name if "/" in name else f"nodes/{name}"

    def mutate(path: Path) -> None:
        group = open_group(path)
        array = group[path_in_store]
        values = array[...]
        edit(values, group["nodes/tree_ptr"][...])
        array[...] = values

    return mutate


def replace_array(name: str, data: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    """Replace an array by another (other dtype or shape) written with the store's codecs."""

    def mutate(path: Path) -> None:
        group = open_group(path)
        old = group[name][...]
        del group[name]
        new = data(old)
        group.create_array(name, shape=new.shape, dtype=new.dtype, compressors=compressors("lz4"), fill_value=0)
        group[name][...] = new
        consolidate(path)

    return mutate


def consolidate(path: Path) -> None:
    """Rewrite the consolidated metadata after an array changed (as a writer would)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Consolidated metadata is ...", unknown files
        zarr.consolidate_metadata(zarr.storage.LocalStore(path))


def remove_array(name: str) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        group = open_group(path)
        del group[name]
        consolidate(path)

    return mutate


def config_edit(edit: Callable[[dict], Any]) -> Callable[[Path], None]:
    return lambda path: edit_config(path, edit)


def _set(d: dict, keys: str, value: Any) -> None:
    *parents, last = keys.split(".")
    for key in parents:
        d = d[key]
    d[last] = value


def _del(d: dict, keys: str) -> None:
    *parents, last = keys.split(".")
    for key in parents:
        d = d[key]
    del d[last]


def setting(keys: str, value: Any) -> Callable[[Path], None]:
    return config_edit(lambda cfg: _set(cfg, keys, value))


def deleting(keys: str) -> Callable[[Path], None]:
    return config_edit(lambda cfg: _del(cfg, keys))


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _shared_child(path: Path) -> None:
    group = open_group(path)
    left, right = group["nodes/left_child_offset"], group["nodes/right_child_offset"]
    r = right[...]
    r[0] = left[0]  # both children of the root are the same node
    right[...] = r


def _leaf_with_feature(values: np.ndarray, tree_ptr: np.ndarray) -> None:
    values[np.argmax(values == -2)] = 1


def _cycle(path: Path) -> None:
    group = open_group(path)
    left = group["nodes/left_child_offset"]
    values = left[...]
    child = int(values[0])
    assert values[child] != 0, "the root's left child must be a split for this case"
    values[child] = -child  # points back to the root
    left[...] = values


def _bytes_edit(array: str, edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        shard = path / array / "c" / "0"
        if not shard.is_file():  # 2-D arrays: first shard of the first column block
            shard = path / array / "c" / "0" / "0"
        shard.write_bytes(edit(shard.read_bytes()))

    return mutate


def _flip(offset: int) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        buf = bytearray(data)
        buf[offset] ^= 0x40
        return bytes(buf)

    return edit


def _delete_chunk(array: str) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        shutil.rmtree(path / array / "c")

    return mutate


def _config_text(text: str) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        (path / "zarr.json").write_text(text)

    return mutate


def array_metadata(name: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """Edit an array's zarr metadata: both its own ``zarr.json`` and the consolidated copy."""

    def mutate(path: Path) -> None:
        own = path / name / "zarr.json"
        document = json.loads(own.read_text())
        edit(document)
        own.write_text(json.dumps(document))
        root = json.loads((path / "zarr.json").read_text())
        edit(root["consolidated_metadata"]["metadata"][name])
        (path / "zarr.json").write_text(json.dumps(root))

    return mutate


def _huge_chunks(document: dict) -> None:
    document["chunk_grid"]["configuration"]["chunk_shape"] = [2**28]
    document["codecs"][0]["configuration"]["chunk_shape"] = [2**28]


def _attributes(value: Any) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        document = json.loads((path / "zarr.json").read_text())
        document["attributes"] = value
        (path / "zarr.json").write_text(json.dumps(document))

    return mutate


# --------------------------------------------------------------------------- the table
CASES: dict[str, tuple[Callable[[Path], None], type[TreeshardError], str]] = {
    # config record
    "missing config key": (deleting("trees"), ConfigError, r"config: missing required key 'trees'"),
    "missing nested key": (deleting("trees.n_features"), ConfigError, r"config.trees: missing required key 'n_features'"),
    "missing fitted attribute": (deleting("fitted.n_outputs_"), ConfigError, r"config.fitted: missing required key 'n_outputs_'"),
    "no config record": (_attributes({}), ConfigError, r"no 'treeshard' config record"),
    "config is a list": (_attributes({"treeshard": [1, 2]}), ConfigError, r"config: expected an object, got list"),
    "zarr.json is not JSON": (_config_text("{not json"), ConfigError, r"zarr.json: not valid JSON"),
    "huge node count": (setting("trees.n_nodes", 2**50), ConfigError, r"config.trees.n_nodes: 1125899906842624 is out of range"),
    "huge tree count": (setting("trees.n_trees", 10**12), ConfigError, r"config.trees.n_trees: 1000000000000 is out of range"),
    "zero trees": (setting("trees.n_trees", 0), ConfigError, r"config.trees.n_trees: 0 is out of range"),
    "huge value width": (setting("trees.n_classes", [2**32]), ConfigError, r"config.trees.n_classes\[0\]: 4294967296 is out of range"),
    "huge value array": (
        config_edit(lambda cfg: cfg["trees"].update(n_nodes=2**30, n_classes=[2**20])),
        ConfigError,
        r"config.trees: 1073741824 nodes x 1048576 values would need more than 1099511627776 bytes",
    ),
    "classes disagree with trees": (setting("trees.n_classes", [3]), ConfigError, r"config.fitted.classes_: expected an array of 3 distinct labels"),
    "n_classes per output": (setting("trees.n_classes", [4, 4]), ConfigError, r"config.trees.n_classes: 2 entries for 1 outputs"),
    "node count is a string": (setting("trees.n_nodes", "10"), ConfigError, r"config.trees.n_nodes: expected an integer, got str"),
    "node count is a bool": (setting("trees.n_features", True), ConfigError, r"config.trees.n_features: expected an integer, got bool"),
    "unknown estimator id": (setting("estimator", "os.system"), ConfigError, r"config.estimator: unknown estimator id 'os.system'"),
    "import path as estimator": (
        setting("estimator", "sklearn.linear_model.LogisticRegression"),
        ConfigError,
        r"unknown estimator id 'sklearn.linear_model.LogisticRegression'",
    ),
    "wrong format_version": (
        setting("format_version", 2),
        UnsupportedFormatVersionError,
        r"^config.format_version: 2 is not supported \(this treeshard reads 1\): a newer treeshard wrote it \(versions.treeshard: '[^']+'\); "
        r"upgrade treeshard \(pip install --upgrade treeshard\) to read it$",
    ),
    "newer format, no writer version": (
        config_edit(lambda cfg: (_set(cfg, "format_version", 7), _del(cfg, "versions.treeshard"))),
        UnsupportedFormatVersionError,
        r"^config.format_version: 7 is not supported \(this treeshard reads 1\): a newer treeshard wrote it; upgrade treeshard \(pip install --upgrade treeshard\) to read it$",
    ),
    "format_version 0": (setting("format_version", 0), UnsupportedFormatVersionError, r"^config.format_version: 0 is not supported \(this treeshard reads 1\)$"),
    "format_version string": (setting("format_version", "1"), ConfigError, r"config.format_version: expected an integer, got str"),
    "config nested too deep": (setting("metadata", {"deep": nested(70)}), ConfigError, r"config: nested deeper than 64 levels"),
    "versions not strings": (setting("versions.sklearn", 1.9), ConfigError, r"config.versions.sklearn: expected a string, got float"),
    "classes_ too long": (
        setting("fitted.classes_", {"ndarray": "int64", "shape": [5], "data": [0, 1, 2, 3, 4]}),
        ConfigError,
        r"config.fitted.classes_: expected an array of 4 distinct labels",
    ),
    "classes_ not distinct": (
        setting("fitted.classes_", {"ndarray": "int64", "shape": [4], "data": [0, 1, 1, 3]}),
        ConfigError,
        r"config.fitted.classes_: expected an array of 4 distinct labels",
    ),
    "classes_ shape lies": (
        setting("fitted.classes_", {"ndarray": "int64", "shape": [5], "data": [0, 1, 2, 3]}),
        ConfigError,
        r"config.fitted.classes_: shape \[5\] does not match 4 values",
    ),
    "classes_ unknown dtype": (
        setting("fitted.classes_", {"ndarray": "complex128", "shape": [4], "data": [0, 1, 2, 3]}),
        ConfigError,
        r"config.fitted.classes_: unsupported dtype 'complex128'",
    ),
    "classes_ int out of dtype range": (
        setting("fitted.classes_", {"ndarray": "int8", "shape": [4], "data": [0, 1, 2, 300]}),
        ConfigError,
        r"config.fitted.classes_\[3\]: 300 is out of range \[-128, 127\]",
    ),
    "inline array over the element limit": (
        setting("fitted.classes_", {"ndarray": "int64", "shape": [1001, 1000], "data": []}),
        ConfigError,
        r"config.fitted.classes_: an inline array of shape \(1001, 1000\): inline arrays hold at most 1,000,000 elements",
    ),
    "inline array of 65 dimensions": (
        setting("fitted.classes_", {"ndarray": "int64", "shape": [1] * 65, "data": [0]}),
        ConfigError,
        r"config.fitted.classes_: an inline array of 65 dimensions \(at most 64\)",
    ),
    "n_classes_ mismatch": (
        setting("fitted.n_classes_", {"numpy": "int64", "value": 3}),
        ConfigError,
        r"config.fitted.n_classes_: expected 4",
    ),
    "n_features_in_ mismatch": (
        setting("fitted.n_features_in_", 7),
        ConfigError,
        r"config.fitted.n_features_in_: 7, but trees have 5 features",
    ),
    "n_outputs_ mismatch": (setting("fitted.n_outputs_", 2), ConfigError, r"config.fitted.n_outputs_: 2, but trees have 1 outputs"),
    "max_features_ out of range": (
        setting("fitted.estimators_.max_features_", 6),
        ConfigError,
        r"config.fitted.estimators_.max_features_: 6 out of range \[1, 5\]",
    ),
    "unknown fitted attribute": (setting("fitted.__class__", "x"), ConfigError, r"config.fitted: unknown attribute\(s\) \['__class__'\]"),
    "unknown tagged value": (
        setting("fitted.oob_score_", {"pickle": "gASV"}),
        ConfigError,
        r"config.fitted.oob_score_: unknown value encoding \['pickle'\]",
    ),
    "unknown param name": (setting("params.evil", 1), ConfigError, r"config.params: unknown parameter\(s\) \['evil'\] for RandomForestClassifier"),
    "invalid param value": (setting("params.n_estimators", -3), ConfigError, r"config.params: The 'n_estimators' parameter"),
    "param beyond int64": (
        setting("params.n_estimators", 2**70),
        ConfigError,
        r"config.params.n_estimators: integer 1180591620717411303424 is out of the int64 range",
    ),
    "numpy param of an unknown dtype": (
        setting("params.random_state", {"numpy": "complex128", "value": 3}),
        ConfigError,
        r"config.params.random_state: unsupported dtype 'complex128'",
    ),
    "numpy param out of its dtype's range": (
        setting("params.n_estimators", {"numpy": "int8", "value": 300}),
        ConfigError,
        r"config.params.n_estimators\[0\]: 300 is out of range \[-128, 127\]",
    ),
    "numpy param beyond int64": (
        setting("params.max_depth", {"numpy": "uint64", "value": 2**64 - 1}),
        ConfigError,
        r"config.params.max_depth: integer 18446744073709551615 is out of the int64 range",
    ),
    "numpy array where a number goes": (
        setting("params.n_jobs", {"ndarray": "int64", "shape": [2], "data": [0, 0]}),
        ConfigError,
        r"config.params: The 'n_jobs' parameter",
    ),
    "numpy array as a dict key": (
        setting("params.class_weight", {"dict_items": [[{"ndarray": "int64", "shape": [1], "data": [0]}, 1.0]]}),
        ConfigError,
        r"config.params.class_weight\[0\]: a key must be a scalar",
    ),
    "n_jobs = 0": (setting("params.n_jobs", 0), ConfigError, r"config.params.n_jobs: 0 is not a number of jobs"),
    "invalid param type": (setting("params.criterion", {"x": 1}), ConfigError, r"config.params: The 'criterion' parameter"),
    "unknown unserializable param": (
        setting("unserializable_params", ["evil"]),
        ConfigError,
        r"config.params: unknown parameter\(s\) \['evil'\] for RandomForestClassifier",
    ),
    "params not an object": (setting("params", [1]), ConfigError, r"config.params: expected an object, got list"),
    "tree count disagrees with tree_ptr": (setting("trees.n_trees", 3), ArrayError, r"tree_ptr: shape \(3,\), expected \(4,\)"),
    "node count disagrees with arrays": (setting("trees.n_nodes", 9), TreeStructureError, r"tree_ptr: ends at \d+, expected n_nodes=9"),
    "unknown value encoding": (setting("trees.value_encoding", "zlib"), ConfigError, r"config.trees.value_encoding: unknown encoding 'zlib'"),
    "value encoding switched": (
        setting("trees.value_encoding", "float64"),
        ArrayError,
        r"nodes/value: dtype int32, expected float64",
    ),
    "zero weight under weighted counts": (
        set_values("weighted_n_node_samples", lambda v, p: v.__setitem__(3, 0.0)),
        ArrayError,
        r"nodes/weighted_n_node_samples: 0.0 at node 3 of the range read; value_encoding 'weighted_counts' needs every weight > 0",
    ),
    "NaN weight under weighted counts": (
        set_values("weighted_n_node_samples", lambda v, p: v.__setitem__(0, np.nan)),
        ArrayError,
        r"nodes/weighted_n_node_samples: nan at node 0 of the range read",
    ),
    "negative weighted count": (
        set_values("value", lambda v, p: v.__setitem__((2, 1), -5)),
        ArrayError,
        r"nodes/value: negative weighted class count at node 2 of the range read",
    ),
    # arrays rewritten through zarr
    "wrong dtype": (replace_array("nodes/feature", lambda a: a.astype(np.int64)), ArrayError, r"nodes/feature: dtype int64, expected int32"),
    "wrong threshold dtype": (
        replace_array("nodes/threshold", lambda a: a.astype(np.float32)),
        ArrayError,
        r"nodes/threshold: dtype float32, expected float64",
    ),
    "wrong value shape": (replace_array("nodes/value", lambda a: a[:, :3].copy()), ArrayError, r"nodes/value: shape \(\d+, 3\), expected \(\d+, 4\)"),
    "short array": (replace_array("nodes/impurity", lambda a: a[:-1].copy()), ArrayError, r"nodes/impurity: shape"),
    "missing array": (remove_array("nodes/impurity"), ArrayError, r"nodes/impurity: missing"),
    "missing tree_ptr": (remove_array("nodes/tree_ptr"), ArrayError, r"nodes/tree_ptr: missing"),
    "missing tree random states": (remove_array("fitted/tree_random_state"), ArrayError, r"fitted/tree_random_state"),
    "tree random states too short": (
        replace_array("fitted/tree_random_state", lambda a: a[:1].copy()),
        ArrayError,
        r"fitted/tree_random_state: expected 2 int64 values",
    ),
    "child out of range": (
        set_values("left_child_offset", lambda v, p: v.__setitem__(0, 10**6)),
        TreeStructureError,
        r"tree 0, node 0: a child id is out of range",
    ),
    "child in the next tree": (
        set_values("right_child_offset", lambda v, p: v.__setitem__(0, int(p[1]))),
        TreeStructureError,
        r"tree 0, node 0: a child id is out of range",
    ),
    "cycle (negative offset)": (_cycle, TreeStructureError, r"tree 0, node \d+: a child does not come after its parent \(cycle\)"),
    "self loop": (
        set_values("left_child_offset", lambda v, p: v.__setitem__(0, -1)),
        TreeStructureError,
        r"tree 0, node 0: a child does not come after its parent \(cycle\)",
    ),
    "one child missing": (
        set_values("right_child_offset", lambda v, p: v.__setitem__(0, 0)),
        TreeStructureError,
        r"tree 0, node 0: exactly one child is missing",
    ),
    "shared child": (_shared_child, TreeStructureError, r"tree 0, node \d+: is not reached exactly once from the root"),
    "feature >= n_features": (
        set_values("feature", lambda v, p: v.__setitem__(0, N_FEATURES)),
        TreeStructureError,
        r"tree 0, node 0: split feature out of range \[0, 5\)",
    ),
    "negative feature on a split": (
        set_values("feature", lambda v, p: v.__setitem__(0, -2)),
        TreeStructureError,
        r"tree 0, node 0: split feature out of range \[0, 5\)",
    ),
    "feature on a leaf": (set_values("feature", _leaf_with_feature), TreeStructureError, r"a leaf's feature must be -2"),
    "NaN threshold": (
        set_values("threshold", lambda v, p: v.__setitem__(0, np.nan)),
        TreeStructureError,
        r"tree 0, node 0: split threshold is NaN",
    ),
    "missing_go_to_left = 2": (
        set_values("missing_go_to_left", lambda v, p: v.__setitem__(0, 2)),
        TreeStructureError,
        r"tree 0, node 0: missing_go_to_left is not 0 or 1",
    ),
    "tree_ptr not monotonic": (
        set_values("tree_ptr", lambda v, p: v.__setitem__(1, v[2] + 1)),
        TreeStructureError,
        r"tree_ptr: tree 1 has -1 nodes \(not increasing\)",
    ),
    "tree_ptr empty tree": (
        set_values("tree_ptr", lambda v, p: v.__setitem__(1, 0)),
        TreeStructureError,
        r"tree_ptr: tree 0 has 0 nodes \(not increasing\)",
    ),
    "tree_ptr not starting at 0": (set_values("tree_ptr", lambda v, p: v.__setitem__(0, 1)), TreeStructureError, r"tree_ptr: starts at 1"),
    "tree_ptr not ending at n_nodes": (
        set_values("tree_ptr", lambda v, p: v.__setitem__(-1, v[-1] - 1)),
        TreeStructureError,
        r"tree_ptr: ends at \d+, expected n_nodes=\d+",
    ),
    # array metadata
    "declared chunks too large": (
        array_metadata("nodes/feature", _huge_chunks),
        ArrayError,
        r"nodes/feature: chunks of 1073741824 bytes exceed the 67108864-byte limit",
    ),
    "declared dtype differs": (
        array_metadata("nodes/threshold", lambda d: d.update(data_type="float32")),
        ArrayError,
        r"nodes/threshold: dtype float32, expected float64",
    ),
    "declared shape differs": (
        array_metadata("nodes/impurity", lambda d: d.update(shape=[2**40])),
        ArrayError,
        r"nodes/impurity: shape \(1099511627776,\), expected \(\d+,\)",
    ),
    "unknown codec": (
        array_metadata("nodes/threshold", lambda d: d["codecs"][0]["configuration"]["codecs"][1].update(name="evil")),
        ArrayError,
        r"nodes/threshold: stored with zarr features outside treeshard format v1 \(nodes/threshold: codecs \['bytes', 'evil', 'crc32c'\]\)",
    ),
    # bytes on disk
    "truncated shard file": (_bytes_edit("nodes/threshold", lambda b: b[: len(b) // 2]), IntegrityError, r"nodes/threshold"),
    "deleted shard file": (_delete_chunk("nodes/impurity"), IntegrityError, r"nodes/impurity"),
    "empty shard file": (_bytes_edit("nodes/feature", lambda b: b""), IntegrityError, r"nodes/feature"),
    "flipped byte in a chunk": (_bytes_edit("nodes/threshold", _flip(20)), IntegrityError, r"nodes/threshold"),
    "flipped byte in the shard index": (_bytes_edit("nodes/impurity", _flip(-10)), IntegrityError, r"nodes/impurity"),
    "flipped byte in value": (_bytes_edit("nodes/value", _flip(30)), IntegrityError, r"nodes/value"),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_store_raises_the_expected_error(case, store):
    mutate, error, match = CASES[case]
    mutate(store)
    reseal(store)
    with pytest.raises(error, match=match) as caught:
        load_and_use(store, lazy=False)
    assert isinstance(caught.value, FormatError)


@pytest.mark.parametrize("case", CASES)
def test_malformed_store_fails_lazily_with_the_same_error(case, store):
    """A lazy forest raises the same error, at the latest when its trees are used."""
    mutate, error, match = CASES[case]
    mutate(store)
    reseal(store)
    with pytest.raises(error, match=match):
        load_and_use(store, lazy=True)


def test_the_table_breaks_stores_that_load_when_pristine(pristine, model):
    X, _ = make_data("multiclass")
    assert np.array_equal(load_and_use(pristine, lazy=False).predict(X), model.predict(X))
    group = zarr.open_group(zarr.storage.LocalStore(pristine, read_only=True), mode="r")
    left = group["nodes/left_child_offset"][...]
    assert left[0] != 0 and left[int(left[0])] != 0, "cases assume the root and its left child split"


# --------------------------------------------------------------------------- other estimators
@pytest.fixture(scope="module")
def gbm_store(tmp_path_factory) -> Path:
    X, y = make_data("multiclass")
    path = tmp_path_factory.mktemp("gbm") / "model"
    treeshard.save(GradientBoostingClassifier(n_estimators=3, max_depth=2, subsample=0.8, random_state=0).fit(X, y), path)
    return path


GBM_CASES = {
    "n_estimators_ disagrees with trees": (
        setting("fitted.n_estimators_", 2),
        ConfigError,
        r"config.fitted.n_estimators_: 2 stages of 4 trees, but 12 trees are stored",
    ),
    "n_trees_per_iteration_ wrong": (
        setting("fitted.n_trees_per_iteration_", 1),
        ConfigError,
        r"config.fitted.n_trees_per_iteration_: 1 does not fit 4 classes",
    ),
    "init_ is another estimator": (
        setting("fitted.init_.estimator", "LogisticRegression"),
        ConfigError,
        r"config.fitted.init_.estimator: 'LogisticRegression' is not DummyClassifier or DummyRegressor",
    ),
    "init_ missing": (deleting("fitted.init_"), ConfigError, r"config.fitted.init_: expected an object, got NoneType"),
    "init param is an estimator": (
        setting("params.init", "LogisticRegression"),
        ConfigError,
        r"config.params",
    ),
    "train_score_ too short": (
        replace_array("fitted/train_score_", lambda a: a[:2].copy()),
        ArrayError,
        r"fitted/train_score_: shape \(2,\), expected \(3,\)",
    ),
    "train_score_ missing": (remove_array("fitted/train_score_"), ArrayError, r"fitted/train_score_: missing"),
    "rng state wrong length": (
        replace_array("fitted/rng_keys", lambda a: a[:10].copy()),
        ArrayError,
        r"fitted/rng_keys: shape \(10,\), expected \(624,\)",
    ),
    "rng pos out of range": (setting("fitted._rng.pos", 10**6), ConfigError, r"config.fitted._rng.pos: 1000000 is out of range"),
    "init_ class_prior_ too short (would crash sklearn)": (
        config_edit(
            lambda cfg: cfg["fitted"]["init_"]["fitted"].update(class_prior_={"ndarray": "float64", "shape": [2], "data": [0.5, 0.5]})
        ),
        ConfigError,
        r"config.fitted.init_.fitted.class_prior_: expected 4 finite float64 values",
    ),
    "init_ class_prior_ NaN": (
        setting("fitted.init_.fitted.class_prior_.data", ["NaN", 0.25, 0.25, 0.25]),
        ConfigError,
        r"config.fitted.init_.fitted.class_prior_: expected 4 finite float64 values",
    ),
    "init_ strategy unknown": (
        setting("fitted.init_.fitted._strategy", "bogus"),
        ConfigError,
        r"config.fitted.init_.fitted._strategy: expected 'prior', got str bogus",
    ),
    "init_ params not the default": (
        setting("fitted.init_.params.strategy", "uniform"),
        ConfigError,
        r"config.fitted.init_.params: \{'strategy': 'uniform'\}, but GradientBoostingClassifier\(loss='log_loss'\) makes \{'strategy': 'prior'\}",
    ),
    "init_ of a regressor": (
        setting("fitted.init_.estimator", "DummyRegressor"),
        ConfigError,
        r"config.fitted.init_.estimator: 'DummyRegressor', but a GradientBoostingClassifier starts from a DummyClassifier",
    ),
    "init_ n_classes_ wrong": (
        setting("fitted.init_.fitted.n_classes_", 7),
        ConfigError,
        r"config.fitted.init_.fitted.n_classes_: expected 4, got int 7",
    ),
    "untagged float": (
        setting("fitted.oob_score_", 0.5),
        ConfigError,
        r"config.fitted.oob_score_: untagged float 0.5",
    ),
    "regression trees with classes": (
        setting("trees.n_classes", [3]),
        ConfigError,
        r"config.trees: gradient boosting trees have one output and one value",
    ),
    "n_estimators_ two more than the stored stages": (
        setting("fitted.n_estimators_", 5),
        ConfigError,
        r"config.fitted.n_estimators_: 5 stages of 4 trees, but 12 trees are stored",
    ),
    "tree_params cover too few trees": (
        setting("fitted.tree_params", [{"n_trees": 5, "params": {}, "fitted": {}}]),
        ConfigError,
        r"config.fitted.tree_params: runs cover 5 trees, but 12 trees are stored",
    ),
    "tree_params run longer than the model": (
        setting("fitted.tree_params", [{"n_trees": 13, "params": {}, "fitted": {}}]),
        ConfigError,
        r"config.fitted.tree_params\[0\].n_trees: 13 is out of range \[1, 12\]",
    ),
    "tree_params unknown param": (
        setting("fitted.tree_params", [{"n_trees": 12, "params": {"splitter": "random"}, "fitted": {}}]),
        ConfigError,
        r"config.fitted.tree_params\[0\].params: unknown tree parameter\(s\) \['splitter'\]",
    ),
    "tree_params invalid value": (
        setting("fitted.tree_params", [{"n_trees": 12, "params": {"max_depth": -3}, "fitted": {}}]),
        ConfigError,
        r"config.fitted.tree_params\[0\].params: The 'max_depth' parameter of DecisionTreeRegressor must be",
    ),
    "tree_params max_features_ out of range": (
        setting("fitted.tree_params", [{"n_trees": 12, "params": {}, "fitted": {"max_features_": 99}}]),
        ConfigError,
        r"config.fitted.tree_params.max_features_: 99 out of range \[1, 5\]",
    ),
    "tree_params unknown key": (
        setting("fitted.tree_params", [{"n_trees": 12, "params": {}, "fitted": {}, "pickle": "gASV"}]),
        ConfigError,
        r"config.fitted.tree_params\[0\]: unknown key\(s\) \['pickle'\]",
    ),
    "loss state of a loss that has none": (
        setting("fitted._loss", {"delta": {"float": 1.0}}),
        ConfigError,
        r"config.fitted._loss: only loss='huber' keeps a fitted state, not loss='log_loss'",
    ),
}


@pytest.mark.parametrize("case", GBM_CASES)
def test_malformed_gradient_boosting_store(case, gbm_store, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(gbm_store, path)
    mutate, error, match = GBM_CASES[case]
    mutate(path)
    reseal(path)
    with pytest.raises(error, match=match):
        treeshard.load(path)


def test_single_tree_store_with_two_trees(tmp_path):
    X, y = make_data("regression")
    forest_path, tree_path = tmp_path / "forest", tmp_path / "tree"
    from sklearn.ensemble import RandomForestRegressor

    treeshard.save(RandomForestRegressor(n_estimators=2, max_depth=2, random_state=0).fit(X, y), forest_path)
    treeshard.save(DecisionTreeRegressor(max_depth=2).fit(X, y), tree_path)
    # A forest's trees under a single-tree estimator id and params.
    tree_config = json.loads((tree_path / "zarr.json").read_text())["attributes"]["treeshard"]

    def as_tree(cfg: dict) -> None:
        cfg["estimator"] = "DecisionTreeRegressor"
        cfg["params"] = tree_config["params"]
        cfg["fitted"] = tree_config["fitted"]

    edit_config(forest_path, as_tree)
    reseal(forest_path)
    with pytest.raises(ConfigError, match=r"config.trees.n_trees: a single tree estimator has 1 tree, not 2"):
        treeshard.load(forest_path)


# --------------------------------------------------------------------------- store locations
def test_not_a_zip_file(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(b"PK this is not a zip archive")
    with pytest.raises(FormatError, match=r"is not a zip file"):
        treeshard.load(path)


def test_zip_with_compressed_members(pristine, tmp_path):
    """treeshard zips store members uncompressed (chunks are compressed already)."""
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(pristine.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(pristine).as_posix())
    with pytest.raises(FormatError, match=r"member '.+' is compressed; treeshard stores only hold stored members"):
        treeshard.load(path)
    hint = " (zip a store directory's contents with `cd DIR && zip -0 -r ../model.zip .`, or save to a .zip path)"
    with pytest.raises(FormatError, match=r"is compressed; treeshard stores only hold stored members" + re.escape(hint) + "$"):
        treeshard.Predictor(path)


def test_zip_without_a_store(tmp_path):
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(StoreNotFoundError, match=rf"^{re.escape(repr(str(path)))} is not a treeshard store \(no zarr.json\)$"):
        treeshard.load(path)


def test_zip_of_a_store_directory_names_the_folder(pristine, tmp_path):
    """`zip -0 -r model.zip model/` puts the store under model/: say so, not only "no zarr.json"."""
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(pristine.rglob("*")):
            if file.is_file():
                archive.write(file, "my model/" + file.relative_to(pristine).as_posix())
    message = (
        f"{str(path)!r} is not a treeshard store: its zarr.json is under 'my model/', not at the root "
        "(zip the store directory's contents, not the directory: `cd DIR && zip -0 -r ../model.zip .`)"
    )
    for opening in (treeshard.load, treeshard.open, treeshard.Predictor):
        with pytest.raises(StoreNotFoundError, match=f"^{re.escape(message)}$"):
            opening(path)


def test_truncated_zip(pristine, tmp_path):
    path = tmp_path / "model.zip"
    treeshard.save(treeshard.load(pristine, lazy=False), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"is not a zip file"):
        treeshard.load(path)


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError, match=r"is not a treeshard store \(no zarr.json\)"):
        treeshard.load(tmp_path / "empty")


def test_nonexistent_path(tmp_path):
    with pytest.raises(StoreNotFoundError, match=r"no treeshard store at") as caught:
        treeshard.load(tmp_path / "nowhere")
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        treeshard.open(tmp_path / "nowhere.zip")


def test_regular_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(FormatError, match=r"is neither a directory nor a .zip file"):
        treeshard.load(path)


def test_empty_memory_store():
    with pytest.raises(StoreNotFoundError, match=r"not a treeshard store"):
        treeshard.load(zarr.storage.MemoryStore())


def test_plain_zarr_group_is_not_a_model(tmp_path):
    zarr.open_group(zarr.storage.LocalStore(tmp_path / "plain"), mode="w").attrs["other"] = 1
    with pytest.raises(ConfigError, match=r"no 'treeshard' config record \(not a treeshard store\)"):
        treeshard.load(tmp_path / "plain")


@pytest.mark.parametrize("bad", [42, None, b"model", ["model"]])
def test_store_argument_of_the_wrong_type(bad):
    with pytest.raises(InvalidStoreError, match=r"store must be a path or a zarr Store") as caught:
        treeshard.load(bad)
    assert isinstance(caught.value, TypeError)


def test_fuzzed_bytes_only_raise_treeshard_errors(pristine, tmp_path):
    """Flip bytes all over every file of the store: loading either works or raises a TreeshardError
    (every other trial with the digest record rewritten: the structural checks meet the bytes)."""
    rng = np.random.RandomState(0)
    files = sorted(p.relative_to(pristine) for p in pristine.rglob("*") if p.is_file())
    outcomes = {"ok": 0, "error": 0}
    for trial in range(40):
        path = tmp_path / f"fuzz{trial}"
        shutil.copytree(pristine, path)
        target = path / files[rng.randint(len(files))]
        data = bytearray(target.read_bytes())
        for _ in range(rng.randint(1, 4)):
            data[rng.randint(len(data))] = rng.randint(256)
        target.write_bytes(bytes(data))
        if trial % 2:
            reseal(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load_and_use(path, lazy=False)
            outcomes["ok"] += 1
        except TreeshardError:
            outcomes["error"] += 1
        shutil.rmtree(path)
    assert outcomes["error"] > 0


def _config_leaves(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _config_leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            out += _config_leaves(item, (*path, i))
    return out


@pytest.mark.parametrize("which", ["forest", "gbm"])
def test_any_config_value_of_the_wrong_type_raises_a_treeshard_error(which, pristine, gbm_store, tmp_path):
    """Replace config values (sampled) by values of other types: loading and predicting
    either work or raise a TreeshardError, never anything else."""
    source = pristine if which == "forest" else gbm_store
    config = json.loads((source / "zarr.json").read_text())["attributes"]["treeshard"]
    paths = [p for p in _config_leaves(config) if p[0] not in ("arrays", "metadata", "versions", "created")]
    replacements = [None, "x", -1, 0, 1.5, [], {}, True, 2**70, {"float": "NaN"}, {"ndarray": "int64", "shape": [1], "data": [7]}]
    rng = np.random.RandomState(0)
    X, _ = make_data("multiclass")
    raised = 0
    for trial in range(40):
        path = paths[rng.randint(len(paths))]
        value = replacements[rng.randint(len(replacements))]
        store = tmp_path / f"s{trial}"
        shutil.copytree(source, store)

        def mutate(cfg: dict, path: tuple = path, value: Any = value) -> None:
            for key in path[:-1]:
                cfg = cfg[key]
            cfg[path[-1]] = value

        edit_config(store, mutate)
        reseal(store)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = treeshard.load(store, lazy=False)
                model.predict(X)
                model.predict_proba(X)
        except TreeshardError:
            raised += 1
        shutil.rmtree(store)
    assert raised > 0


# --------------------------------------------------------------------------- histogram gradient boosting
@pytest.fixture(scope="module")
def hgb_store(tmp_path_factory) -> Path:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, _ = make_data("multiclass")
    X = X.copy()
    codes = np.random.RandomState(5).randint(0, 6, len(X))
    X[:, 4] = codes
    y = (codes % 3 + (X[:, 0] > 1)).astype(np.int64)
    model = HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=6, categorical_features=[4], random_state=0).fit(X, y)
    nodes = model._predictors[0][0].nodes
    assert nodes["is_categorical"][0] == 1 and not nodes["is_leaf"][0], "cases assume a categorical root split"
    assert ((nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)).any(), "cases assume a numerical split in tree 0"
    path = tmp_path_factory.mktemp("hgb") / "model"
    treeshard.save(model, path)
    return path


def _hgb_set(name: str, value: Any, *, node: str | int = 0) -> Callable[[Path], None]:
    """Set ``nodes/<name>`` of one node of tree 0: an index, or "numerical" (its first numerical split)."""

    def edit(values: np.ndarray, tree_ptr: np.ndarray, path: Path) -> None:
        at = node
        if at == "numerical":
            group = open_group(path)
            split = (group["nodes/is_leaf"][: tree_ptr[1]] == 0) & (group["nodes/is_categorical"][: tree_ptr[1]] == 0)
            at = int(np.flatnonzero(split)[0])
        values[at] = value

    def mutate(path: Path) -> None:
        group = open_group(path)
        array = group[f"nodes/{name}"]
        values = array[...]
        edit(values, group["nodes/tree_ptr"][...], path)
        array[...] = values

    return mutate


def _hgb_shared_child(path: Path) -> None:
    group = open_group(path)
    right = group["nodes/right"][...]
    right[0] = group["nodes/left"][0]
    group["nodes/right"][...] = right


HGB_CASES = {
    "child before its parent": (
        _hgb_set("left", 0),
        TreeStructureError,
        r"tree 0, node 0: a child does not come after its parent \(cycle\)",
    ),
    "child out of range": (_hgb_set("right", 10**6), TreeStructureError, r"tree 0, node 0: a child id is out of range"),
    "child far out of uint32 range": (_hgb_set("left", 2**32 - 1), TreeStructureError, r"tree 0, node 0: a child id is out of range"),
    "shared child": (_hgb_shared_child, TreeStructureError, r"tree 0, node \d+: is not reached exactly once from the root"),
    "feature out of range": (_hgb_set("feature_idx", 5), TreeStructureError, r"tree 0, node 0: split feature out of range \[0, 5\)"),
    "negative feature": (_hgb_set("feature_idx", -1), TreeStructureError, r"tree 0, node 0: split feature out of range \[0, 5\)"),
    "NaN threshold": (
        _hgb_set("num_threshold", np.nan, node="numerical"),
        TreeStructureError,
        r"tree 0, node \d+: split threshold is NaN",
    ),
    "is_leaf not a flag": (_hgb_set("is_leaf", 2), TreeStructureError, r"tree 0, node 0: is_leaf is not 0 or 1"),
    "missing_go_to_left not a flag": (
        _hgb_set("missing_go_to_left", 7),
        TreeStructureError,
        r"tree 0, node 0: missing_go_to_left is not 0 or 1",
    ),
    "bitset_idx beyond the tree's bitsets": (
        _hgb_set("bitset_idx", 50),
        TreeStructureError,
        r"tree 0, node 0: bitset_idx out of range of its tree's bitsets",
    ),
    "categorical split on a numerical feature": (
        _hgb_set("is_categorical", 1, node="numerical"),
        TreeStructureError,
        r"tree 0, node \d+: a categorical split on a feature that is not categorical",
    ),
    "bitsets of the wrong width": (
        replace_array("nodes/raw_left_cat_bitsets", lambda a: a[:, :4].copy()),
        ArrayError,
        r"nodes/raw_left_cat_bitsets",
    ),
    "bitset_ptr not starting at 0": (
        set_values("bitset_ptr", lambda values, ptr: values.__setitem__(0, 1)),
        TreeStructureError,
        r"nodes/bitset_ptr: starts at 1, expected 0",
    ),
    "bitset_ptr decreasing": (
        set_values("bitset_ptr", lambda values, ptr: values.__setitem__(1, values[-1] + 5)),
        TreeStructureError,
        r"nodes/bitset_ptr: decreases at entry 2",
    ),
    "left column missing": (remove_array("nodes/left"), ArrayError, r"nodes/left"),
    "known category beyond 255": (
        set_values("fitted/bin_thresholds", lambda values, ptr: values.__setitem__(0, 300.0)),
        ConfigError,
        r"fitted/bin_thresholds: categorical feature 0: categories must be integers strictly increasing in \[0, 255\]",
    ),
    "known category not an integer": (
        set_values("fitted/bin_thresholds", lambda values, ptr: values.__setitem__(1, 1.5)),
        ConfigError,
        r"fitted/bin_thresholds: categorical feature 0: categories must be integers strictly increasing in \[0, 255\]",
    ),
    "bin_thresholds_ptr decreasing": (
        set_values("fitted/bin_thresholds_ptr", lambda values, ptr: values.__setitem__(1, 10**6)),
        TreeStructureError,
        r"fitted/bin_thresholds_ptr: decreases at entry 2",
    ),
    "more categories than max_bins": (
        setting("params.max_bins", 4),
        ConfigError,
        r"config.fitted._bin_mapper.n_bins: 256, but max_bins=4 makes 5",
    ),
    "n_bins_non_missing_ beyond the bins": (
        setting("fitted._bin_mapper.n_bins_non_missing_.data", [6, 255, 256, 255, 255]),
        ConfigError,
        r"config.fitted._bin_mapper.n_bins_non_missing_: expected 5 uint32 values at most 255",
    ),
    "baseline of the wrong shape": (
        setting("fitted._baseline_prediction", {"ndarray": "float64", "shape": [1, 2], "data": [0.0, 0.0]}),
        ConfigError,
        r"config.fitted._baseline_prediction: expected a float64 array of shape \(1, 4\)",
    ),
    "baseline holds an integer beyond float range": (
        setting("fitted._baseline_prediction.data", [10**400, 0.0, 0.0, 0.0]),
        ConfigError,
        r"config.fitted._baseline_prediction\[0\]: 1000000000000000000000000000000000000000\.\.\. is out of the float range",
    ),
    "categorical_features that sklearn maps to no preprocessor": (
        setting("params.categorical_features", None),
        ConfigError,
        r"config.fitted._preprocessor: the rebuilt preprocessor disagrees with is_categorical_",
    ),
    "loss of another class": (
        setting("fitted._loss.name", "HalfSquaredError"),
        ConfigError,
        r"config.fitted._loss: 'HalfSquaredError', but HistGradientBoostingClassifier\(loss='log_loss'\) makes HalfMultinomialLoss",
    ),
    "loss record with unknown keys": (
        setting("fitted._loss.pickle", "gASV"),
        ConfigError,
        r"config.fitted._loss: unknown key\(s\) \['pickle'\]",
    ),
    "trees per iteration wrong": (
        setting("fitted.n_trees_per_iteration_", 3),
        ConfigError,
        r"config.fitted.n_trees_per_iteration_: 3 does not fit 4 classes",
    ),
    "bin mapper's categorical mask disagrees": (
        setting("fitted._bin_mapper.is_categorical_.data", [0, 0, 0, 0, 1]),
        ConfigError,
        r"config.fitted._bin_mapper.is_categorical_: does not match is_categorical_ and the preprocessor",
    ),
    "preprocessor categories of another feature count": (
        config_edit(lambda cfg: cfg["fitted"]["_preprocessor"]["categories"].append(cfg["fitted"]["_preprocessor"]["categories"][0])),
        ConfigError,
        r"config.fitted._preprocessor.categories: 2 entries for 1 categorical features",
    ),
    "preprocessor categories disagree with the bin mapper": (
        config_edit(
            lambda cfg: cfg["fitted"]["_preprocessor"]["categories"][0].update(values={"ndarray": "float64", "shape": [2], "data": [0.0, 1.0]})
        ),
        ConfigError,
        r"config.fitted._preprocessor.categories\[0\]: 2 categories, but the bin mapper knows 6",
    ),
    "train_score_ of the wrong length": (
        replace_array("fitted/train_score_", lambda a: np.array([1.0, 2.0])),
        ArrayError,
        r"fitted/train_score_: shape \(2,\), expected \(0,\) or \(4,\)",
    ),
}


#: What only the sklearn estimator holds: the Predictor never reads it.
HGB_PREDICTOR_IGNORES = {"train_score_ of the wrong length", "categorical_features that sklearn maps to no preprocessor"}


@pytest.mark.parametrize("case", HGB_CASES)
def test_malformed_hist_gradient_boosting_store(case, hgb_store, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(hgb_store, path)
    mutate, error, match = HGB_CASES[case]
    mutate(path)
    reseal(path)
    with pytest.raises(error, match=match):
        treeshard.load(path)
    if case not in HGB_PREDICTOR_IGNORES:
        with pytest.raises(error, match=match):
            treeshard.Predictor(path)


def test_the_hist_gradient_boosting_table_breaks_stores_that_load_when_pristine(hgb_store):
    assert treeshard.load(hgb_store).n_iter_ == 3
    assert treeshard.Predictor(hgb_store).n_iter_ == 3


# --------------------------------------------------------------------------- IsolationForest
@pytest.fixture(scope="module")
def iforest_store(tmp_path_factory) -> Path:
    """3 trees reading 3 of the 5 columns each, fitted with sample weights."""
    from sklearn.ensemble import IsolationForest

    X, _ = make_data("multiclass")
    path = tmp_path_factory.mktemp("iforest") / "model"
    weights = np.random.RandomState(0).rand(len(X))
    forest = IsolationForest(n_estimators=3, max_features=0.6, contamination=0.1, random_state=0).fit(X, sample_weight=weights)
    treeshard.save(forest, path)
    return path


def _set_item(index: Any, value: Any) -> Callable[[np.ndarray, np.ndarray], None]:
    def edit(values: np.ndarray, tree_ptr: np.ndarray) -> None:
        values[index] = value

    return edit


def _root_feature_beyond_the_tree(values: np.ndarray, tree_ptr: np.ndarray) -> None:
    values[0] = 3  # a tree reads _max_features = 3 columns: 0, 1, 2


#: (edit, error, message, whether the sklearn-free Predictor meets it too: it reads only what scoring needs)
IFOREST_CASES: dict[str, tuple[Callable[[Path], None], type[TreeshardError], str, bool]] = {
    "a tree's column outside X": (
        set_values("fitted/estimators_features_", _set_item((0, 0), 5)),
        ArrayError,
        r"fitted/estimators_features_: a column is outside \[0, 5\)",
        True,
    ),
    "a negative column": (
        set_values("fitted/estimators_features_", _set_item((2, 1), -1)),
        ArrayError,
        r"fitted/estimators_features_: a column is outside \[0, 5\)",
        True,
    ),
    "columns of too few trees": (
        replace_array("fitted/estimators_features_", lambda a: a[:2].copy()),
        ArrayError,
        r"fitted/estimators_features_: shape \(2, 3\), expected \(3, 3\)",
        True,
    ),
    "estimators_features_ missing": (remove_array("fitted/estimators_features_"), ArrayError, r"fitted/estimators_features_: missing", True),
    "split feature beyond the tree's columns": (
        set_values("feature", _root_feature_beyond_the_tree),
        TreeStructureError,
        r"tree 0, node 0: split feature out of range \[0, 3\)",
        True,
    ),
    "path lengths of fewer nodes": (
        replace_array("fitted/decision_path_lengths", lambda a: a[:-1].copy()),
        ArrayError,
        r"fitted/decision_path_lengths: shape \((\d+),\), expected \(\d+,\)",
        True,
    ),
    "path length 0": (
        set_values("fitted/decision_path_lengths", _set_item(4, 0)),
        ArrayError,
        r"fitted/decision_path_lengths: a depth is outside \[1, \d+\]",
        True,
    ),
    "average path lengths of more nodes": (
        replace_array("fitted/average_path_length_per_tree", lambda a: np.append(a, 1.0)),
        ArrayError,
        r"fitted/average_path_length_per_tree: shape \(\d+,\), expected \(\d+,\)",
        True,
    ),
    "average path length NaN": (
        set_values("fitted/average_path_length_per_tree", _set_item(2, np.nan)),
        ArrayError,
        r"fitted/average_path_length_per_tree: values must be finite and >= 0",
        True,
    ),
    "average path length negative": (
        set_values("fitted/average_path_length_per_tree", _set_item(0, -1.0)),
        ArrayError,
        r"fitted/average_path_length_per_tree: values must be finite and >= 0",
        True,
    ),
    "average path lengths missing": (
        remove_array("fitted/average_path_length_per_tree"),
        ArrayError,
        r"fitted/average_path_length_per_tree: missing",
        True,
    ),
    "average path lengths as float32": (
        replace_array("fitted/average_path_length_per_tree", lambda a: a.astype(np.float32)),
        ArrayError,
        r"fitted/average_path_length_per_tree: dtype float32, expected float64",
        True,
    ),
    "more seeds than trees": (
        replace_array("fitted/seeds", lambda a: np.concatenate([a, a])),
        ArrayError,
        r"fitted/seeds: shape \(6,\), expected at most 3 values",
        True,
    ),
    "seed out of range": (set_values("fitted/seeds", _set_item(1, 2**32)), ArrayError, r"fitted/seeds: a seed is outside \[0, 2\*\*32\)", True),
    "random states of fewer trees": (
        replace_array("fitted/tree_random_state", lambda a: a[:1].copy()),
        ArrayError,
        r"fitted/tree_random_state: shape \(1,\), expected \(3,\)",
        True,
    ),
    "sample weights of fewer samples": (
        replace_array("fitted/sample_weight", lambda a: a[:-1].copy()),
        ArrayError,
        r"fitted/sample_weight: shape \(159,\), expected \(160,\)",
        True,
    ),
    "_max_features disagrees with the trees": (
        setting("fitted._max_features", 2),
        ConfigError,
        r"config.fitted._max_features: 2, but trees have 3 features",
        True,
    ),
    "fewer features than the trees read": (
        setting("fitted.n_features_in_", 2),
        ConfigError,
        r"config.fitted.n_features_in_: 2, fewer than the trees' 3 features",
        True,
    ),
    "offset_ NaN": (setting("fitted.offset_", {"float": "NaN"}), ConfigError, r"config.fitted.offset_: expected a finite float, got float nan", True),
    "offset_ a string": (setting("fitted.offset_", "auto"), ConfigError, r"config.fitted.offset_: expected a finite float, got str auto", True),
    "more samples drawn than exist, without replacement": (
        setting("fitted._max_samples", 10**6),
        ConfigError,
        r"config.fitted._max_samples: 1000000 samples drawn without replacement from 160",
        True,
    ),
    "max_samples_ zero": (setting("fitted.max_samples_", 0), ConfigError, r"config.fitted.max_samples_: expected a positive integer, got int 0", True),
    "trees with two outputs": (
        config_edit(lambda cfg: cfg["trees"].update(n_outputs=2, n_classes=[1, 1])),
        ConfigError,
        r"config.trees: an IsolationForest's trees have one output and one value",
        True,
    ),
    "template max_depth 0": (
        setting("fitted.estimator_.max_depth", 0),
        ConfigError,
        r"config.fitted.estimator_.max_depth: 0 is out of range \[1, 2147483647\]",
        False,
    ),
    "template with another param": (
        setting("fitted.estimator_", {"max_depth": 8, "splitter": "best"}),
        ConfigError,
        r"config.fitted.estimator_: unknown key\(s\) \['splitter'\]",
        False,
    ),
    "template missing": (deleting("fitted.estimator_"), ConfigError, r"config.fitted.estimator_: expected an object, got NoneType", False),
    "unknown fitted attribute": (setting("fitted._seeds", [1, 2, 3]), ConfigError, r"config.fitted: unknown attribute\(s\) \['_seeds'\]", False),
}


def _use_iforest(path: Path, **load_kwargs: Any) -> None:
    X, _ = make_data("multiclass")
    model = treeshard.load(path, **load_kwargs)
    model.decision_function(X)
    model.estimators_samples_
    list(model.estimators_)


@pytest.mark.parametrize("case", IFOREST_CASES)
def test_malformed_isolation_forest_store(case, iforest_store, tmp_path):
    """Eager and lazy loads (scoring through the flat engine) and the Predictor meet the same error."""
    path = tmp_path / "model"
    shutil.copytree(iforest_store, path)
    mutate, error, match, predictor_too = IFOREST_CASES[case]
    mutate(path)
    reseal(path)
    for lazy in (False, True):
        with pytest.raises(error, match=match):
            _use_iforest(path, lazy=lazy)
    if predictor_too:
        with pytest.raises(error, match=match):
            treeshard.Predictor(path).score_samples(make_data("multiclass")[0])


def test_the_isolation_forest_table_breaks_a_store_that_loads_when_pristine(iforest_store):
    _use_iforest(iforest_store, lazy=False)
    _use_iforest(iforest_store, lazy=True)
    treeshard.Predictor(iforest_store).score_samples(make_data("multiclass")[0])


# --------------------------------------------------------------------------- columns checked into built trees
def _forest_columns(model: RandomForestClassifier):  # type: ignore[no-untyped-def]
    from treeshard.columns import to_columns
    from treeshard.record import TreeLayout

    trees = [e.tree_ for e in model.estimators_]
    layout = TreeLayout(
        n_trees=len(trees), n_nodes=sum(t.node_count for t in trees), n_features=model.n_features_in_, n_outputs=1,
        n_classes=(int(model.n_classes_),),
    )
    return to_columns(trees, layout), layout


def _zeroed_node_arrays(cols):  # type: ignore[no-untyped-def]
    from sklearn.tree._tree import NODE_DTYPE

    return [np.zeros(int(n), dtype=NODE_DTYPE) for n in np.diff(cols.tree_ptr)]


#: Column edits (tree 1, local node) -> the problem check_trees names.
COLUMN_EDITS: dict[str, Callable[[Any, int], None]] = {
    "one child missing": lambda c, i: c.left_child_offset.__setitem__(i, 0),
    "cycle": lambda c, i: c.left_child_offset.__setitem__(i, -1),
    "child out of range": lambda c, i: c.right_child_offset.__setitem__(i, 10_000),
    "shared child": lambda c, i: c.right_child_offset.__setitem__(i, c.left_child_offset[i]),
    "feature out of range": lambda c, i: c.feature.__setitem__(i, N_FEATURES),
    "NaN threshold": lambda c, i: c.threshold.__setitem__(i, np.nan),
    "missing_go_to_left 2": lambda c, i: c.missing_go_to_left.__setitem__(i, 2),
    "leaf with a feature": lambda c, i: c.feature.__setitem__(i + int(np.flatnonzero(c.left_child_offset[i:] == 0)[0]), 0),
}


def test_check_trees_into_writes_the_records_check_trees_lays_out(model):
    from sklearn.tree._tree import NODE_DTYPE

    from treeshard.validate import check_trees, check_trees_into

    cols, layout = _forest_columns(model)
    records, depths = check_trees(cols, layout, node_dtype=NODE_DTYPE)
    nodes = _zeroed_node_arrays(cols)
    assert np.array_equal(check_trees_into(cols, layout, nodes), depths)
    assert b"".join(array.tobytes() for array in nodes) == records.tobytes()  # padding included (np.concatenate drops it)
    for tree, array in zip(model.estimators_, nodes):
        assert array.tobytes() == tree.tree_.__getstate__()["nodes"].tobytes()


@pytest.mark.parametrize("edit", list(COLUMN_EDITS))
def test_check_trees_into_refuses_what_check_trees_refuses(model, edit):
    from sklearn.tree._tree import NODE_DTYPE

    from treeshard.validate import check_trees, check_trees_into

    cols, layout = _forest_columns(model)
    start = int(cols.tree_ptr[1])  # the second tree: messages name it and its local node
    COLUMN_EDITS[edit](cols, start)
    with pytest.raises(TreeStructureError) as expected:
        check_trees(cols, layout, first_tree=3, node_dtype=NODE_DTYPE)
    assert expected.value.args[0].startswith("tree 4, node ")
    with pytest.raises(TreeStructureError) as raised:
        check_trees_into(cols, layout, _zeroed_node_arrays(cols), first_tree=3)
    assert raised.value.args == expected.value.args


# --------------------------------------------------------------------------- the eager load's chunk decoder
def _threshold_chunks(model, tmp_path: Path) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """``(shard bytes, starts, lengths, sha256 digests, the array as read, chunk bytes)`` of
    ``nodes/threshold`` in chunks of 4 nodes (Blosc), as the eager load's decoder takes them."""
    from helpers.counting_store import save_with_small_chunks

    from treeshard.reader import StoreReader

    path = tmp_path / "m"
    save_with_small_chunks(model, path, chunk_rows=4, chunks_per_shard=64)
    reader = StoreReader(path)
    layout = reader.node_array("threshold")
    table = reader._fast._shard_table(layout, "nodes/threshold/c/0", layout.shard_rows // layout.chunk_rows)
    n = int(table.usable.sum())
    raw = (path / "nodes" / "threshold" / "c" / "0").read_bytes()
    decoded = reader.read("nodes/threshold", np.dtype("<f8"), layout.shape)
    reader.close()
    return raw, table.offsets[:n], table.lengths[:n], table.digests[:n], decoded, 4 * 8


def _decode(raw, starts, lengths, digests, chunk_bytes, out=None, *, runs=1):  # type: ignore[no-untyped-def]
    """``decode_batch`` of ``runs`` copies of one run: ``(failing chunk of the first run that
    fails, or -1; the output)``, the failing run checked to be the first."""
    from treeshard._kernels import decode_batch
    from treeshard.blosc import native_functions

    out = np.zeros(len(starts) * chunk_bytes // 8) if out is None else out
    outs = [out] + [np.zeros_like(out) for _ in range(runs - 1)]
    jobs = [(raw, starts, lengths, digests, o.ctypes.data, o.nbytes, chunk_bytes, True) for o in outs]
    run, bad, valid = decode_batch(jobs, native_functions())
    assert run == (0 if bad >= 0 else -1) and valid
    assert all(np.array_equal(o, out) for o in outs)  # every run decoded alike
    return bad, out


def test_decode_batch_decodes_what_the_checked_path_reads(model, tmp_path):
    raw, starts, lengths, digests, decoded, chunk_bytes = _threshold_chunks(model, tmp_path)
    assert len(starts) > 3
    bad, out = _decode(raw, starts, lengths, digests, chunk_bytes, runs=3)
    assert bad == -1
    assert out[: len(decoded)].tobytes() == decoded.tobytes()  # then the last chunk's padding
    assert _decode(raw, starts, lengths, np.zeros((0, 32), dtype=np.uint8), chunk_bytes)[0] == -1  # no digest record


def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]


DECODER_EDITS: dict[str, Callable[..., tuple]] = {
    # (raw, starts, lengths, digests) -> the same, with chunk 2 broken
    "past the shard's end": lambda r, s, l, d: (r, s, np.where(np.arange(len(l)) == 2, len(r), l), d),
    "before the shard's start": lambda r, s, l, d: (r, np.where(np.arange(len(s)) == 2, -1, s), l, d),
    "shorter than its checksum": lambda r, s, l, d: (r, s, np.where(np.arange(len(l)) == 2, 3, l), d),
    "another digest": lambda r, s, l, d: (r, s, l, np.where(np.arange(len(d))[:, None] == 2, d[1], d)),
    "a changed byte (sha256)": lambda r, s, l, d: (_flip(r, int(s[2]) + 20), s, l, d),
}


@pytest.mark.parametrize("edit", list(DECODER_EDITS))
def test_decode_batch_stops_at_the_first_chunk_failing_a_check(model, tmp_path, edit):
    raw, starts, lengths, digests, _, chunk_bytes = _threshold_chunks(model, tmp_path)
    assert _decode(*DECODER_EDITS[edit](raw, starts, lengths, digests), chunk_bytes)[0] == 2


@pytest.mark.parametrize("at", ["crc32c", "blosc header"])
def test_decode_batch_checks_crc32c_and_the_blosc_header_without_digests(model, tmp_path, at):
    raw, starts, lengths, _, _, chunk_bytes = _threshold_chunks(model, tmp_path)
    where = int(starts[1] + lengths[1]) - 1 if at == "crc32c" else int(starts[1]) + 4  # its stored crc, its decoded size
    no_digests = np.zeros((0, 32), dtype=np.uint8)
    assert _decode(_flip(raw, where), starts, lengths, no_digests, chunk_bytes)[0] == 1
    assert _decode(raw, starts, lengths, no_digests, chunk_bytes * 2, np.zeros(len(starts) * 8))[0] == 0  # declared size differs


def test_decode_batch_refuses_an_output_too_small(model, tmp_path):
    raw, starts, lengths, digests, _, chunk_bytes = _threshold_chunks(model, tmp_path)
    with pytest.raises(ValueError, match=r"^decode_batch: chunks, digests and output do not match$"):
        _decode(raw, starts, lengths, digests, chunk_bytes, np.zeros(len(starts) * 4 - 1))


def test_decode_batch_names_the_run_that_fails(model, tmp_path):
    from treeshard._kernels import decode_batch
    from treeshard.blosc import native_functions

    raw, starts, lengths, digests, _, chunk_bytes = _threshold_chunks(model, tmp_path)
    outs = [np.zeros(len(starts) * chunk_bytes // 8) for _ in range(3)]
    broken = _flip(raw, int(starts[1]) + 20)
    jobs = [(data, starts, lengths, digests, o.ctypes.data, o.nbytes, chunk_bytes, True) for data, o in zip([raw, broken, broken], outs)]
    assert decode_batch(jobs, native_functions()) == (1, 1, True)
    assert decode_batch([], native_functions()) == (-1, -1, True)


def test_weighted_counts_valid_is_check_weighted_counts():
    from treeshard._kernels import weighted_counts_valid
    from treeshard.columns import check_weighted_counts

    counts = np.array([[1, 2], [0, 0], [3, 1]], dtype=np.int32)
    for weights, values in [
        (np.array([3.0, 1.0, 4.0]), counts),
        (np.array([3.0, 0.0, 4.0]), counts),
        (np.array([3.0, np.nan, 4.0]), counts),
        (np.array([3.0, 1.0, 4.0]), np.array([[1, 2], [0, -1], [3, 1]], dtype=np.int32)),
    ]:
        valid = weighted_counts_valid(weights, values)
        try:
            check_weighted_counts(values, weights)
        except treeshard.ArrayError:
            assert not valid
        else:
            assert valid


def test_copy_blocks_copies_each_block():
    from treeshard._kernels import copy_blocks

    a, b = np.arange(10, dtype=np.int64), np.arange(6, dtype=np.uint8)
    out_a, out_b = np.zeros(4, dtype=np.int64), np.zeros(6, dtype=np.uint8)
    copy_blocks(
        np.array([out_a.ctypes.data, out_b.ctypes.data], dtype=np.uint64),
        np.array([a[3:].ctypes.data, b.ctypes.data], dtype=np.uint64),
        np.array([out_a.nbytes, 0], dtype=np.int64),
    )
    assert out_a.tolist() == [3, 4, 5, 6] and out_b.tolist() == [0] * 6
    with pytest.raises(ValueError, match=r"^copy_blocks: bad block$"):
        copy_blocks(np.array([0], dtype=np.uint64), np.array([a.ctypes.data], dtype=np.uint64), np.array([8], dtype=np.int64))


def test_decode_batch_copies_first_and_checks_weighted_counts_last(model, tmp_path):
    """The blocks of ``copies`` land before the runs are decoded; the weighted counts are checked
    once every chunk decoded (a run failing a check leaves them unchecked: ``valid`` stays True)."""
    from treeshard._kernels import decode_batch
    from treeshard.blosc import native_functions

    raw, starts, lengths, digests, decoded, chunk_bytes = _threshold_chunks(model, tmp_path)
    out = np.zeros(len(starts) * chunk_bytes // 8)
    carried, source = np.zeros(3, dtype=np.int64), np.array([7, 8, 9], dtype=np.int64)
    copies = (np.array([carried.ctypes.data], dtype=np.uint64), np.array([source.ctypes.data], dtype=np.uint64), np.array([24], dtype=np.int64))
    good = (np.array([1.0, 2.0]), np.array([[1, 0], [0, 2]], dtype=np.int32))
    bad = (np.array([1.0, 0.0]), good[1])
    job = [(raw, starts, lengths, digests, out.ctypes.data, out.nbytes, chunk_bytes, True)]
    assert decode_batch(job, native_functions(), copies, good) == (-1, -1, True)
    assert carried.tolist() == [7, 8, 9] and out[: len(decoded)].tobytes() == decoded.tobytes()
    assert decode_batch(job, native_functions(), None, bad) == (-1, -1, False)
    broken = [(_flip(raw, int(starts[0]) + 20), *job[0][1:])]
    assert decode_batch(broken, native_functions(), None, bad) == (0, 0, True)
    with pytest.raises(ValueError, match=r"^weighted_counts_valid: one row of counts per weight$"):
        decode_batch(job, native_functions(), None, (np.array([1.0]), good[1]))
