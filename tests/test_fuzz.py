"""Fuzzing the read path: a mutated store loads, or raises a TreeshardError. Nothing else.

Valid stores of a few estimators are saved into memory once; each example
copies one, applies one or more mutations (bit flips, truncations, swapped
or deleted chunk files, edits to any JSON field of the config or of array
metadata, crafted trees re-encoded with valid checksums, decompression
bombs, huge declared shapes) and then:

- loads it (eagerly and lazily) and predicts: anything but a
  :class:`~treeshard.TreeshardError` escaping is a failure, and a load that
  succeeds must predict exactly like the original (every chunk and the root
  are checked against the digest record: never a silently different model);
- loads it again with the digest record rewritten to match (as anyone can
  do to an unsigned store), so that the structural checks meet the mutation;
- checks the content digest: a store whose bytes changed must fail
  :func:`treeshard.integrity.verify_store`; an unchanged one must verify and
  predict exactly like the original.

The CI settings (60 derandomized examples) run in about 20 s;
``TREESHARD_FUZZ_EXAMPLES=N`` runs N random ones; ``scripts/fuzz_long.py`` reuses :func:`mutate` and :func:`check_store`
for a long campaign with each load in a forked subprocess.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import treeshard
from treeshard import IntegrityError, TreeshardError, integrity

# Per-test settings (a global profile would change other modules' Hypothesis tests):
# derandomized in CI, so a run is reproducible; TREESHARD_FUZZ_EXAMPLES=5000 runs longer.
EXAMPLES = int(os.environ.get("TREESHARD_FUZZ_EXAMPLES", "60"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="TREESHARD_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

X = np.random.RandomState(0).normal(size=(40, 4))
# The pipeline base's query rows: like its training data (column 2 holds categories 0-3, column 0 NaN).
X_PIPE = np.column_stack([np.where(X[:, 0] > 1, np.nan, X[:, 0]), X[:, 1], np.clip(np.round(X[:, 2]), -2, 2), X[:, 3]])
ROOT = "zarr.json"


# --------------------------------------------------------------------------- base stores
def fit_models() -> dict[str, Any]:
    """Small fitted estimators of every adapter family (fast to save and load)."""
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.tree import DecisionTreeRegressor

    from sklearn.compose import ColumnTransformer
    from sklearn.feature_selection import SelectKBest
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

    rng = np.random.RandomState(1)
    Xt = rng.normal(size=(120, 4))
    y3 = np.digitize(Xt[:, 0] + Xt[:, 1], [-0.5, 0.5])
    y_reg = np.column_stack([Xt[:, 0] * 3, Xt[:, 2] - Xt[:, 3]])
    X_pipe_train = np.column_stack([np.where(Xt[:, 0] > 1, np.nan, Xt[:, 0]), Xt[:, 1], np.clip(np.round(Xt[:, 2]), -2, 2), Xt[:, 3]])
    return {
        "rf": RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(Xt, np.array(["a", "b", "c"])[y3]),
        "gb": GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(Xt, y3),
        "tree": DecisionTreeRegressor(max_depth=5, random_state=0).fit(Xt, y_reg[:, 0]),
        "et": ExtraTreesRegressor(n_estimators=3, max_depth=3, random_state=0).fit(Xt, y_reg),
        # a pipeline store: its record holds the structure, transformer schemas and the forest's config
        "pipe": Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer(
                        [
                            ("num", Pipeline([("impute", SimpleImputer(add_indicator=True)), ("scale", StandardScaler())]), [0, 1]),
                            ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), [2]),
                            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3, sparse_output=False), [2]),
                        ],
                        remainder=MinMaxScaler(),
                    ),
                ),
                ("kbest", SelectKBest(k=6)),
                ("rf", RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)),
            ]
        ).fit(X_pipe_train, y3),
        "hgb": HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=6, categorical_features=[3], random_state=0).fit(
            np.column_stack([Xt[:, :3], rng.randint(0, 5, len(Xt))]), y3
        ),
        "if": IsolationForest(n_estimators=3, max_features=0.75, contamination=0.1, random_state=0).fit(Xt),
        # pipeline stores whose ensemble has its own node columns (histogram boosting) or feature subsets
        "pipe_hgb": Pipeline(
            [
                ("pre", ColumnTransformer([("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), [2])], remainder="passthrough")),
                ("hgb", HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=6, categorical_features=[0], random_state=0)),
            ]
        ).fit(X_pipe_train, np.isin(X_pipe_train[:, 2], [-1, 1]).astype(int)),  # a target only categorical splits fit
        "pipe_if": Pipeline(
            [("impute", SimpleImputer()), ("scale", StandardScaler()), ("if", IsolationForest(n_estimators=3, max_features=0.75, random_state=0))]
        ).fit(X_pipe_train),
    }


def store_bytes(store: Any) -> dict[str, bytes]:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def read() -> dict[str, bytes]:
        out = {}
        async for key in store.list():
            value = await store.get(key, prototype=default_buffer_prototype())
            out[key] = value.to_bytes()
        return out

    return sync(read())


def resealed(files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` with the digest record rewritten to match them (``files`` itself if a document
    no longer parses): what an attacker can do without a signature."""
    store = memory_store(files)
    try:
        integrity.record_digest(store)
    except (ValueError, RecursionError, AttributeError, TypeError, KeyError):
        return files
    return store_bytes(store)


def memory_store(files: dict[str, bytes]) -> zarr.storage.MemoryStore:
    from zarr.core.buffer import default_buffer_prototype

    buffer = default_buffer_prototype().buffer
    return zarr.storage.MemoryStore({key: buffer.from_bytes(value) for key, value in files.items()})


@dataclass
class Base:
    name: str
    model: Any
    files: dict[str, bytes]
    outputs: dict[str, np.ndarray]


def outputs(model: Any) -> dict[str, np.ndarray]:
    query = X_PIPE if type(model).__name__ in ("Pipeline", "PipelinePredictor") else X
    out = {"predict": model.predict(query)}
    if hasattr(model, "score_samples"):  # IsolationForest
        out["score_samples"] = model.score_samples(query)
    if hasattr(model, "predict_proba"):
        out["predict_proba"] = model.predict_proba(query)
    return out


def make_bases() -> dict[str, Base]:
    bases = {}
    for name, model in fit_models().items():
        store = zarr.storage.MemoryStore()
        treeshard.save(model, store)
        bases[name] = Base(name, model, store_bytes(store), outputs(model))
    return bases


# --------------------------------------------------------------------------- JSON helpers
def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON document (the root excluded)."""
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out.extend(json_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value[:20]):
            out.append((*prefix, i))
            out.extend(json_paths(item, (*prefix, i)))
    return out


def get_path(document: Any, path: tuple) -> Any:
    for step in path:
        document = document[step]
    return document


def set_path(document: Any, path: tuple, value: Any) -> None:
    get_path(document, path[:-1])[path[-1]] = value


def del_path(document: Any, path: tuple) -> None:
    del get_path(document, path[:-1])[path[-1]]


def nested(depth: int) -> Any:
    value: Any = 0
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def hostile_json(r: random.Random, original: Any = None) -> Any:
    """A JSON value meant to break parsers: wrong types, extremes, unicode, nesting."""
    choices: list[Callable[[], Any]] = [
        lambda: None,
        lambda: True,
        lambda: False,
        lambda: 0,
        lambda: -1,
        lambda: 1,
        lambda: 2**31,
        lambda: 2**63,
        lambda: 2**64 + 1,
        lambda: -(2**63) - 1,
        lambda: 10**400,
        lambda: r.randrange(-(2**40), 2**40),
        lambda: 1.5,
        lambda: -0.0,
        lambda: 1e308,
        lambda: "NaN",
        lambda: "Infinity",
        lambda: "",
        lambda: "\udc80\ud800",
        lambda: "é" * r.randrange(1, 300),
        lambda: "\x00",
        lambda: "x" * 200_000,
        lambda: "object",
        lambda: "<U1000000",
        lambda: "int64",
        lambda: "RandomForestClassifier",
        list,
        dict,
        lambda: [1, 2, 3],
        lambda: list(range(r.randrange(0, 50))),
        lambda: {"ndarray": "float64", "shape": [2**20, 2**20], "data": []},
        lambda: {"ndarray": "object", "shape": [1], "data": [{"a": 1}]},
        lambda: {"numpy": "int64", "value": 2**70},
        lambda: {"float": "boom"},
        lambda: {"dict_items": [[{"a": 1}, 2]]},
        lambda: nested(r.choice([20, 40, 200])),
    ]
    if isinstance(original, bool):
        choices.append(lambda: not original)
    elif isinstance(original, int):
        choices += [lambda: original + 1, lambda: original - 1, lambda: original * 2, lambda: -original]
    elif isinstance(original, float):
        choices += [lambda: -original, lambda: original * 1e300, lambda: str(original)]
    elif isinstance(original, list):
        choices += [lambda: original[:-1], lambda: original + original[-1:], lambda: original[::-1]]
    return r.choice(choices)()


# --------------------------------------------------------------------------- mutations
Files = dict[str, bytes]


def chunk_keys(files: Files) -> list[str]:
    return sorted(k for k in files if "/c/" in k)


def array_paths(files: Files) -> list[str]:
    return sorted(k[: -len(ROOT) - 1] for k in files if k.endswith("/" + ROOT) and json.loads(files[k]).get("node_type") == "array")


def flip_bits(files: Files, r: random.Random) -> str:
    key = r.choice(chunk_keys(files) if r.random() < 0.9 else sorted(files))
    data = bytearray(files[key])
    for _ in range(r.choice([1, 1, 1, 2, 8])):
        if data:
            data[r.randrange(len(data))] ^= 1 << r.randrange(8)
    files[key] = bytes(data)
    return f"flip bits in {key}"


def set_byte(files: Files, r: random.Random) -> str:
    key = r.choice(chunk_keys(files))
    data = bytearray(files[key])
    position = r.randrange(len(data))
    data[position] = r.choice([0, 0xFF, r.randrange(256)])
    files[key] = bytes(data)
    return f"set byte {position} of {key}"


def truncate(files: Files, r: random.Random) -> str:
    key = r.choice(chunk_keys(files) if r.random() < 0.8 else sorted(files))
    cut = r.randrange(len(files[key]) + 1) if files[key] else 0
    files[key] = files[key][:cut]
    return f"truncate {key} to {cut}"


def extend(files: Files, r: random.Random) -> str:
    key = r.choice(chunk_keys(files))
    files[key] = files[key] + r.randbytes(r.choice([1, 16, 100, 5000]))
    return f"extend {key}"


def delete_key(files: Files, r: random.Random) -> str:
    key = r.choice(sorted(files))
    del files[key]
    return f"delete {key}"


def swap_files(files: Files, r: random.Random) -> str:
    keys = chunk_keys(files) if r.random() < 0.8 else sorted(files)
    a, b = r.choice(keys), r.choice(keys)
    files[a], files[b] = files[b], files[a]
    return f"swap {a} and {b}"


def random_bytes(files: Files, r: random.Random) -> str:
    key = r.choice(sorted(files))
    files[key] = r.randbytes(r.choice([0, 1, 20, len(files[key])]))
    return f"random bytes in {key}"


def edit_config(files: Files, r: random.Random) -> str:
    root = json.loads(files[ROOT])
    config = root["attributes"]["treeshard"]
    paths = json_paths(config)
    path = r.choice(paths)
    action = r.choice(["set", "set", "set", "delete", "add"])
    if action == "set":
        set_path(config, path, hostile_json(r, get_path(config, path)))
    elif action == "delete":
        del_path(config, path)
    else:
        container = get_path(config, path[:-1])
        if isinstance(container, dict):
            container[r.choice(["extra", "__class__", "estimators_", "tree_", "n_trees"])] = hostile_json(r)
        else:
            container.append(hostile_json(r))
    files[ROOT] = json.dumps(root).encode()
    return f"config {action} {'.'.join(map(str, path))}"


def replace_config(files: Files, r: random.Random) -> str:
    root = json.loads(files[ROOT])
    root["attributes"]["treeshard"] = hostile_json(r)
    if r.random() < 0.3:
        root = hostile_json(r)
    files[ROOT] = json.dumps(root).encode()
    return "replace the config record"


def deep_json(files: Files, r: random.Random) -> str:
    """JSON nested deeper than any recursive parser's stack, in the config or a metadata document."""
    depth = r.choice([1000, 100_000])
    text = "[" * depth + "]" * depth
    key = r.choice([ROOT, *(f"{p}/{ROOT}" for p in array_paths(files))])
    original = files[key].decode()
    marker = '"node_type"'
    files[key] = original.replace(marker, f'"deep": {text}, {marker}', 1).encode()
    return f"deep JSON in {key}"


CODEC_CHOICES: list[Any] = [
    [{"name": "bytes", "configuration": {"endian": "little"}}],
    [{"name": "bytes", "configuration": {"endian": "big"}}, {"name": "crc32c"}],
    [{"name": "gzip", "configuration": {"level": 1}}],
    [{"name": "transpose", "configuration": {"order": [0]}}, {"name": "bytes"}],
    [{"name": "sharding_indexed", "configuration": {"chunk_shape": [1], "codecs": [{"name": "bytes"}], "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}], "index_location": "start"}}],
    [{"name": "sharding_indexed", "configuration": {"chunk_shape": [2**40], "codecs": [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": 1, "checksum": False}}], "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}]}}],
    [{"name": "numcodecs.pickle"}],
    [{"name": "no.such.codec"}],
]


def edit_array_metadata(files: Files, r: random.Random) -> str:
    path = r.choice(array_paths(files))
    root = json.loads(files[ROOT])
    consolidated = root.get("consolidated_metadata", {}).get("metadata", {})
    documents = [consolidated[path]] if path in consolidated else []
    own = json.loads(files[f"{path}/{ROOT}"])
    documents.append(own)
    if r.random() < 0.5:
        documents = documents[:1]
    field = r.choice(["shape", "chunk_shape", "inner_chunk_shape", "data_type", "fill_value", "codecs", "any", "node_type", "separator"])
    for document in documents:
        if field == "shape":
            document["shape"] = r.choice([[2**40], [2**62], [0], [-1], [3, 3], [], [document["shape"][0] + 1]])
        elif field == "chunk_shape":
            document["chunk_grid"]["configuration"]["chunk_shape"] = r.choice([[1], [2**40], [0], [7], [1, 1]])
        elif field == "inner_chunk_shape":
            document["codecs"][0]["configuration"]["chunk_shape"] = r.choice([[1], [2**30], [0], [3], [1, 1]])
        elif field == "data_type":
            document["data_type"] = r.choice(["int64", "float32", "uint8", "bool", "complex128", "string", "|O", {"name": "struct"}])
        elif field == "fill_value":
            document["fill_value"] = hostile_json(r)
        elif field == "codecs":
            document["codecs"] = r.choice(CODEC_CHOICES)
        elif field == "node_type":
            document["node_type"] = r.choice(["group", "array", "blob"])
        elif field == "separator":
            document["chunk_key_encoding"] = r.choice([{"name": "v2", "configuration": {"separator": "."}}, {"name": "nope"}])
        else:
            paths = json_paths(document)
            target = r.choice(paths)
            set_path(document, target, hostile_json(r, get_path(document, target)))
    files[ROOT] = json.dumps(root).encode()
    files[f"{path}/{ROOT}"] = json.dumps(own).encode()
    return f"array metadata {path}.{field}"


def _rewrite_array(files: Files, path: str, edit: Callable[[np.ndarray], None]) -> None:
    """Decode an array, edit it, encode it back (valid checksums): a crafted, not a corrupt, store."""
    store = memory_store(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = zarr.open_array(store, path=path, mode="r+")
        data = array[...]
        edit(data)
        array[...] = data
    files.clear()
    files.update(store_bytes(store))


def model_record(record: dict) -> tuple[dict, str]:
    """The config record of the (first) model of a store and its group prefix (``"models/0/"`` in a pipeline store)."""
    if "pipeline" not in record:
        return record, ""
    pending = [record["pipeline"]]
    while pending:
        value = pending.pop(0)
        if isinstance(value, dict):
            if value.get("kind") == "ensemble" and "config" in value:
                return value["config"], value["group"] + "/"
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    raise KeyError("no ensemble in the pipeline record")


def craft_tree(files: Files, r: random.Random) -> str:
    """Structurally hostile trees with correct encodings: what validate.py must catch."""
    root = json.loads(files[ROOT])
    config, prefix = model_record(root["attributes"]["treeshard"])
    if config["estimator"].startswith("HistGradientBoosting"):
        return craft_hist_tree(files, r, config, prefix)
    n_nodes = config["trees"]["n_nodes"]
    n_features = config["trees"]["n_features"]
    node = r.randrange(n_nodes)
    kind = r.choice(
        ["cycle", "self", "out_of_range", "one_child", "shared", "feature", "threshold", "missing", "tree_ptr", "chain", "valid_chain", "value", "samples"]
    )

    def set_at(name: str, value: Any, at: int = node) -> None:
        def edit(a: np.ndarray) -> None:
            a[at] = value

        _rewrite_array(files, f"{prefix}nodes/{name}", edit)

    if kind == "cycle":
        set_at("left_child_offset", -r.randrange(1, max(2, node + 1)))
    elif kind == "self":
        set_at("right_child_offset", 0)
        set_at("left_child_offset", 0) if r.random() < 0.5 else None
    elif kind == "out_of_range":
        set_at(r.choice(["left_child_offset", "right_child_offset"]), r.choice([n_nodes, 2**31 - 1, n_nodes - node]))
    elif kind == "one_child":
        set_at("left_child_offset", 0)
    elif kind == "shared":
        def edit(a: np.ndarray) -> None:
            splits = np.flatnonzero(a)
            if splits.size:
                i = int(r.choice(list(splits)))
                a[i] = a[i] + 1 if r.random() < 0.5 else 1

        _rewrite_array(files, f"{prefix}nodes/right_child_offset", edit)
    elif kind == "feature":
        set_at("feature", r.choice([-1, -2, -(2**31), n_features, 2**31 - 1]))
    elif kind == "threshold":
        set_at("threshold", r.choice([math.nan, math.inf, -math.inf, 1e308]))
    elif kind == "missing":
        set_at("missing_go_to_left", r.choice([2, 255]))
    elif kind == "tree_ptr":
        def edit(a: np.ndarray) -> None:
            i = r.randrange(len(a))
            a[i] = r.choice([-1, 0, a[i] + 1, a[i] - 1, 2**62, n_nodes + 1])

        _rewrite_array(files, f"{prefix}nodes/tree_ptr", edit)
    elif kind == "chain":
        # Every node splits into (next, next + 1): shared children, deep chain.
        def chain(a: np.ndarray) -> None:
            a[:-2] = 1

        _rewrite_array(files, f"{prefix}nodes/left_child_offset", chain)
        _rewrite_array(files, f"{prefix}nodes/right_child_offset", lambda a: a.__setitem__(slice(0, -2), 2))
    elif kind == "valid_chain":
        # A legal tree as deep as it is long: node 2k splits into leaf 2k+1 and node 2k+2.
        store = memory_store(files)
        size = int(zarr.open_array(store, path=f"{prefix}nodes/tree_ptr", mode="r")[1])
        split = np.zeros(size, dtype=bool)
        split[0 : size - 1 : 2] = True

        def offsets(value: int) -> Callable[[np.ndarray], None]:
            return lambda a: a.__setitem__(slice(0, size), np.where(split, value, 0))

        _rewrite_array(files, f"{prefix}nodes/left_child_offset", offsets(1))
        _rewrite_array(files, f"{prefix}nodes/right_child_offset", offsets(2))
        _rewrite_array(files, f"{prefix}nodes/feature", lambda a: a.__setitem__(slice(0, size), np.where(split, np.arange(size) % n_features, -2)))
        _rewrite_array(files, f"{prefix}nodes/threshold", lambda a: a.__setitem__(slice(0, size), np.where(split, 0.0, -2.0)))
        _rewrite_array(files, f"{prefix}nodes/missing_go_to_left", lambda a: a.__setitem__(slice(0, size), 0))
    elif kind == "value":
        set_at("value", r.choice([math.nan, math.inf, -1e308]))
    else:
        name = r.choice(["n_node_samples", "weighted_n_node_samples", "impurity"])
        set_at(name, r.choice([-1, 0, 2**62] + ([] if name == "n_node_samples" else [math.nan])))  # no NaN in an int64 column
    return f"crafted tree: {kind} at node {node}"


def craft_hist_tree(files: Files, r: random.Random, config: dict, prefix: str) -> str:
    """Hostile histogram boosting trees (validate_hist_columns must catch them); ``prefix``: the model's group."""
    n_nodes = config["trees"]["n_nodes"]
    n_features = config["trees"]["n_features"]
    node = r.randrange(n_nodes)
    kind = r.choice(["cycle", "out_of_range", "shared", "feature", "threshold", "flag", "bitset_idx", "categorical", "tree_ptr", "bitset_ptr", "known", "value"])

    def set_at(name: str, value: Any, at: int = node) -> None:
        _rewrite_array(files, prefix + (name if "/" in name else f"nodes/{name}"), lambda a: a.__setitem__(at, value))

    if kind == "cycle":
        set_at(r.choice(["left", "right"]), r.randrange(0, node + 1))
    elif kind == "out_of_range":
        set_at(r.choice(["left", "right"]), r.choice([n_nodes, 2**32 - 1, node + 10**6]))
    elif kind == "shared":
        store = memory_store(files)
        left = zarr.open_array(store, path=f"{prefix}nodes/left", mode="r")[...]
        set_at("right", int(left[node]) or 1)
    elif kind == "feature":
        set_at("feature_idx", r.choice([-1, -(2**62), n_features, 2**62]))
    elif kind == "threshold":
        set_at("num_threshold", r.choice([math.nan, math.inf, -math.inf]))
    elif kind == "flag":
        set_at(r.choice(["is_leaf", "missing_go_to_left", "is_categorical"]), r.choice([0, 1, 2, 255]))
    elif kind == "bitset_idx":
        set_at("bitset_idx", r.choice([1, 7, 2**32 - 1]))
    elif kind == "categorical":
        set_at("is_categorical", 1)
    elif kind in ("tree_ptr", "bitset_ptr"):
        def edit(a: np.ndarray) -> None:
            i = r.randrange(len(a))
            a[i] = r.choice([-1, 0, a[i] + 1, a[i] - 1, 2**62])

        _rewrite_array(files, f"{prefix}nodes/{kind}", edit)
    elif kind == "known":
        set_at("fitted/bin_thresholds", r.choice([-1.0, 256.0, 0.5, math.nan, 1e300]), at=r.randrange(3))
    else:
        set_at("value", r.choice([math.nan, math.inf, -1e308]))
    return f"crafted hist tree: {kind} at node {node}"


def _shard_parts(shard: bytes) -> tuple[bytes, bytes]:
    """(inner chunk bytes, index) of a one-chunk shard."""
    index = shard[-20:]
    offset, length = struct.unpack("<QQ", index[:16])
    return shard[offset : offset + length], index


def _one_chunk_shard(chunk_without_crc: bytes) -> bytes:
    import crc32c

    chunk = chunk_without_crc + struct.pack("<I", crc32c.crc32c(chunk_without_crc))
    index = struct.pack("<QQ", 0, len(chunk))
    return chunk + index + struct.pack("<I", crc32c.crc32c(index))


def bomb(files: Files, r: random.Random) -> str:
    """A chunk that decompresses (or claims to) to far more than its array declares."""
    from numcodecs import Blosc

    key = r.choice([k for k in chunk_keys(files) if k.count("/") == 3 or k.startswith("nodes/value") or "/nodes/value/" in k])
    kind = r.choice(["honest", "lying-header", "short"])
    if kind == "honest":
        size = r.choice([1 << 20, 64 << 20])
        payload = Blosc(cname="lz4", clevel=9, shuffle=Blosc.NOSHUFFLE).encode(np.zeros(size, dtype=np.uint8))
    elif kind == "lying-header":
        real = Blosc(cname="lz4", clevel=5).encode(np.zeros(64, dtype=np.uint8))
        claimed = r.choice([2**31 - 100, 2**30, 1 << 26])
        payload = real[:4] + struct.pack("<I", claimed) + real[8:]
    else:
        payload = r.randbytes(r.choice([1, 8, 15]))
    files[key] = _one_chunk_shard(bytes(payload))
    return f"bomb ({kind}) in {key}"


def huge_shapes(files: Files, r: random.Random) -> str:
    """A config and array metadata that consistently declare an enormous model."""
    root = json.loads(files[ROOT])
    config, prefix = model_record(root["attributes"]["treeshard"])
    huge = r.choice([2**31, 2**34, 2**36, 2**40, 10**12])
    old = config["trees"]["n_nodes"]
    config["trees"]["n_nodes"] = huge
    consolidated = root["consolidated_metadata"]["metadata"]
    regrid = r.random() < 0.3  # else: every array consistent, only chunks are missing
    for path, document in consolidated.items():
        if path.startswith(f"{prefix}nodes/") and path != f"{prefix}nodes/tree_ptr" and document.get("node_type") == "array":
            document["shape"][0] = huge
            if regrid:
                document["chunk_grid"]["configuration"]["chunk_shape"][0] = r.choice([huge, 1 << 20])
    files[ROOT] = json.dumps(root).encode()
    if r.random() < 0.7:
        _rewrite_array(files, f"{prefix}nodes/tree_ptr", lambda a: a.__setitem__(-1, a[-1] - old + huge))
    return f"huge shapes: n_nodes={huge}"


MUTATIONS: list[Callable[[Files, random.Random], str]] = [
    flip_bits,
    set_byte,
    truncate,
    extend,
    delete_key,
    swap_files,
    random_bytes,
    edit_config,
    edit_config,
    edit_config,
    replace_config,
    deep_json,
    edit_array_metadata,
    edit_array_metadata,
    craft_tree,
    craft_tree,
    bomb,
    huge_shapes,
]


def mutate(files: Files, r: random.Random) -> tuple[Files, list[str]]:
    """A mutated copy of ``files`` and what was done to it (1-3 mutations)."""
    out = dict(files)
    done = []
    for _ in range(r.choice([1, 1, 1, 2, 3])):
        if ROOT not in out or not chunk_keys(out):
            break
        mutation = r.choice(MUTATIONS)
        try:
            done.append(mutation(out, r))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RuntimeError, OverflowError, OSError) as exc:
            # An earlier mutation made this one impossible (unparseable JSON, missing array).
            done.append(f"{mutation.__name__}: skipped ({type(exc).__name__})")
    return out, done


# --------------------------------------------------------------------------- the oracle
@dataclass
class Outcome:
    loaded: bool  # a model loaded and predicted
    same: bool  # its outputs equal the original's
    error: str | None  # the TreeshardError subclass that was raised


def check_store(files: Files, base: Base, *, lazy: bool) -> Outcome:
    """Load ``files`` and predict; anything but a TreeshardError escapes (the caller fails)."""
    return _check_loaded(lambda: treeshard.load(memory_store(files), lazy=lazy), base)


def check_predictor(store: Any, base: Base) -> Outcome:
    """The same for the sklearn-free :class:`treeshard.Predictor` (``store``: files or a path)."""
    return _check_loaded(lambda: treeshard.Predictor(memory_store(store) if isinstance(store, dict) else store), base)


def _check_loaded(load: Callable[[], Any], base: Base) -> Outcome:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load()
    except TreeshardError as exc:
        return Outcome(False, False, type(exc).__name__)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = outputs(model)
    except TreeshardError as exc:
        return Outcome(False, False, type(exc).__name__)
    except (ValueError, AttributeError) as exc:
        # A consistent but different pipeline (resealed edits: a scaler's statistics overflowing the
        # forest's float32 input, a last step made 'passthrough') fails as sklearn itself would.
        if not base.name.startswith("pipe"):
            raise
        return Outcome(True, False, f"predict: {type(exc).__name__}")
    same = got.keys() == base.outputs.keys() and all(_equal(got[k], base.outputs[k]) for k in got)
    return Outcome(True, same, None)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def check_digest(files: Files, base: Base) -> bool:
    """True if verify_store accepts ``files``; it must accept exactly the unchanged stores."""
    try:
        integrity.verify_store(memory_store(files))
    except IntegrityError:
        return False
    return True


# --------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def bases() -> dict[str, Base]:
    return make_bases()


def test_bases_load_and_verify(bases):
    for base in bases.values():
        assert check_store(base.files, base, lazy=True) == Outcome(True, True, None)
        assert check_digest(base.files, base)


@FUZZ_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(["rf", "gb", "tree", "et", "hgb", "pipe", "if", "pipe_hgb", "pipe_if"]), lazy=st.booleans())
def test_mutated_stores_load_or_raise_treeshard_errors(bases, seed, name, lazy):
    base = bases[name]
    files, done = mutate(base.files, random.Random(seed))
    outcome = check_store(files, base, lazy=lazy)  # raises if a non-TreeshardError escapes
    assert not outcome.loaded or outcome.same, done  # never a silently different model
    check_store(resealed(files), base, lazy=lazy)
    changed = files != base.files
    assert check_digest(files, base) is not changed, done
    if not changed:
        assert outcome == Outcome(True, True, None), done


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.__name__)
def test_each_mutation_kind(bases, mutation):
    """Every mutation family, a few seeds each, on every estimator family."""
    for name, base in bases.items():
        for seed in range(3):
            files = dict(base.files)
            done = mutation(files, random.Random(f"{mutation.__name__}-{name}-{seed}"))
            outcome = check_store(files, base, lazy=seed % 2 == 0)
            assert not outcome.loaded or outcome.same, done
            check_store(resealed(files), base, lazy=seed % 2 == 0)
            if seed == 0:
                outcome = check_predictor(files, base)
                assert not outcome.loaded or outcome.same, done
                check_predictor(resealed(files), base)
            assert check_digest(files, base) is (files == base.files), done


def single_byte_corruptions(bases: dict[str, Base], n: int | None, r: random.Random):  # type: ignore[no-untyped-def]
    """``(base, files)`` with one byte of one chunk file changed: ``n`` drawn at random, or
    (``n=None``) every byte of every chunk file of every base, each xored with a random value."""
    if n is None:
        for name in sorted(bases):
            base = bases[name]
            for key in chunk_keys(base.files):
                for position in range(len(base.files[key])):
                    yield base, _corrupt(base.files, key, position, r.randrange(1, 256))
        return
    for _ in range(n):
        base = bases[r.choice(sorted(bases))]
        key = r.choice(chunk_keys(base.files))
        yield base, _corrupt(base.files, key, r.randrange(len(base.files[key])), r.randrange(1, 256))


def _corrupt(files: Files, key: str, position: int, mask: int) -> Files:
    data = bytearray(files[key])
    data[position] ^= mask
    return {**files, key: bytes(data)}


def test_every_single_byte_corruption_is_detected_by_verify(bases):
    """Issue 6 acceptance: each single-byte change of any chunk file fails verify.

    300 random ones in CI; ``TREESHARD_CORRUPTIONS=all`` tries every byte of every chunk file.
    """
    setting = os.environ.get("TREESHARD_CORRUPTIONS", "300")
    tried = detected = 0
    for base, files in single_byte_corruptions(bases, None if setting == "all" else int(setting), random.Random(6)):
        tried += 1
        detected += not check_digest(files, base)
    print(f"single-byte corruptions: {detected} of {tried} detected")
    assert detected == tried


# --------------------------------------------------------------------------- decompression bombs
@pytest.mark.parametrize("kind", ["honest", "lying-header", "short"])
def test_blosc_bombs_are_refused_before_decompressing(bases, kind):
    files = dict(bases["rf"].files)
    key = "nodes/threshold/c/0"
    r = random.Random(kind)
    while True:  # draw until bomb() picks our key and kind
        trial = dict(files)
        if bomb(trial, r) == f"bomb ({kind}) in {key}":
            break
    assert check_store(trial, bases["rf"], lazy=False).error == "IntegrityError"
    assert check_store(resealed(trial), bases["rf"], lazy=False).error == "IntegrityError"  # the bomb, not its sha256


def test_huge_declared_sizes_are_refused_before_reading(bases):
    """Arrays declared over 1 TB (2**38 float64), and chunks over 64 MB, never reach a decoder."""
    base = bases["rf"]
    for edit, expected in [
        (lambda d: d.update(shape=[2**38]), {"ConfigError", "ArrayError"}),
        (lambda d: d["codecs"][0]["configuration"].update(chunk_shape=[2**24]), {"ArrayError"}),
    ]:
        files = dict(base.files)
        root = json.loads(files[ROOT])
        document = root["consolidated_metadata"]["metadata"]["nodes/threshold"]
        edit(document)
        if document["shape"] == [2**38]:
            root["attributes"]["treeshard"]["trees"]["n_nodes"] = 2**38
            for path, doc in root["consolidated_metadata"]["metadata"].items():
                if path.startswith("nodes/") and path != "nodes/tree_ptr" and "shape" in doc:
                    doc["shape"][0] = 2**38
        else:
            document["chunk_grid"]["configuration"]["chunk_shape"] = [2**24]
        files[ROOT] = json.dumps(root).encode()
        assert check_store(resealed(files), base, lazy=False).error in expected


# --------------------------------------------------------------------------- containers: zip files and directories
def write_zip(files: Files, path: Any, *, compression: int = 0) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for key in sorted(files, key=lambda k: k == ROOT):
            archive.writestr(key, files[key])


def write_directory(files: Files, path: Any) -> None:
    from pathlib import Path

    for key, value in files.items():
        target = Path(path) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(value)


def check_path(path: Any, base: Base, *, lazy: bool) -> Outcome:
    """:func:`check_store` for a store on disk (a zip file or a directory)."""
    return _check_loaded(lambda: treeshard.load(path, lazy=lazy), base)


def zip_contents(path: Any) -> Files | None:
    """The members of a zip file as ``{name: bytes}``, or None if it no longer reads as one."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, KeyError, RuntimeError):
        return None


def damage_zip(data: bytes, r: random.Random) -> bytes:
    """Bit flips, truncation or garbage anywhere in a zip file (headers and directory included)."""
    out = bytearray(data)
    kind = r.choice(["flip", "flip", "truncate", "tail"])
    if kind == "flip":
        for _ in range(r.choice([1, 2, 5])):
            out[r.randrange(len(out))] ^= 1 << r.randrange(8)
    elif kind == "truncate":
        del out[r.randrange(len(out)) :]
    else:
        position = len(out) - r.randrange(1, 200)
        out[position : position + 4] = r.randbytes(4)
    return bytes(out)


@settings(FUZZ_SETTINGS, max_examples=max(1, EXAMPLES // 3))
@given(seed=st.integers(0, 2**32 - 1), lazy=st.booleans())
def test_damaged_zip_files_load_or_raise_treeshard_errors(bases, tmp_path_factory, seed, lazy):
    r = random.Random(seed)
    base = bases[r.choice(sorted(bases))]
    folder = tmp_path_factory.mktemp("zip")
    clean = folder / "clean.zip"
    write_zip(base.files, clean)
    damaged = folder / "model.zip"
    damaged.write_bytes(damage_zip(clean.read_bytes(), r))
    check_path(damaged, base, lazy=lazy)
    try:
        treeshard.integrity.verify_path(damaged)
        verified = True
    except IntegrityError:
        verified = False
    except TreeshardError:  # not even a zip any more
        verified = False
    # Verify never accepts changed content. (It may refuse a zip whose members are intact
    # but whose headers are damaged: zip header fields are not part of the digest.)
    assert not verified or zip_contents(damaged) == base.files


def test_compressed_zip_members_are_refused(bases, tmp_path):
    import zipfile

    path = tmp_path / "deflated.zip"
    write_zip(bases["rf"].files, path, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(treeshard.FormatError, match="is compressed"):
        treeshard.load(path)


@pytest.mark.parametrize("special", ["symlink-dev-zero", "symlink-outside", "fifo"])
def test_directory_store_with_special_files_is_refused(bases, tmp_path, special):
    path = tmp_path / "model"
    write_directory(bases["rf"].files, path)
    chunk = path / "nodes" / "threshold" / "c" / "0"
    chunk.unlink()
    if special == "symlink-dev-zero":
        chunk.symlink_to("/dev/zero")
    elif special == "symlink-outside":
        (tmp_path / "elsewhere").write_bytes(bases["rf"].files["nodes/threshold/c/0"])
        chunk.symlink_to(tmp_path / "elsewhere")
    else:
        os.mkfifo(chunk)
    message = (
        f"{str(path)!r}: 'nodes/threshold/c/0' is not a regular file (symlink, device or pipe): a directory store is "
        "plain files only; copy it with its links resolved (`cp -rL`, as for a Hugging Face or DVC cache of symlinks) "
        "or ship it as one .zip"
    )
    with pytest.raises(treeshard.FormatError, match=f"^{re.escape(message)}$"):
        treeshard.load(path)
    with pytest.raises(treeshard.FormatError, match="not a regular file"):
        treeshard.integrity.verify_path(path)


@pytest.mark.parametrize("lazy", [True, False])
def test_declared_rows_must_be_stored_before_any_allocation(bases, lazy):
    """A consistent config and metadata declaring 2**34 nodes (64 GiB per column) over a
    few hundred stored bytes: the missing chunks are found before anything is allocated."""
    base = bases["tree"]
    files = dict(base.files)
    root = json.loads(files[ROOT])
    old = root["attributes"]["treeshard"]["trees"]["n_nodes"]
    root["attributes"]["treeshard"]["trees"]["n_nodes"] = 2**34
    for path, document in root["consolidated_metadata"]["metadata"].items():
        if path.startswith("nodes/") and path != "nodes/tree_ptr" and document.get("node_type") == "array":
            document["shape"][0] = 2**34
    files[ROOT] = json.dumps(root).encode()
    _rewrite_array(files, "nodes/tree_ptr", lambda a: a.__setitem__(-1, a[-1] - old + 2**34))
    assert check_store(files, base, lazy=lazy).error == "IntegrityError"
    assert check_store(resealed(files), base, lazy=lazy).error == "IntegrityError"  # missing chunks, not a digest


def test_deep_json_is_refused_before_parsing(bases):
    files = dict(bases["rf"].files)
    files[ROOT] = files[ROOT].decode().replace('"node_type"', '"deep": ' + "[" * 100_000 + "]" * 100_000 + ', "node_type"', 1).encode()
    with pytest.raises(treeshard.errors.ConfigError, match=r"^zarr\.json: not valid JSON \(JSON nested deeper than 96 levels\)$"):
        treeshard.load(memory_store(files))


def test_deep_json_never_runs_finalizers_on_a_deep_stack(bases):
    """A garbage collection may run during any parse and call finalizers (a lazy model closing
    its store is one): the parse must never be near the recursion limit then, or they fail
    with RecursionError ("Exception ignored in: <finalize object ...>", printed)."""
    import gc
    import sys
    import weakref

    from treeshard.chunks import parse_root

    class Resource:
        def close(self) -> None:
            self._release()

        def _release(self) -> None:
            self._closed = True

    def garbage() -> None:
        holder = type("Cycle", (), {})()
        holder.itself, holder.resource = holder, Resource()
        weakref.finalize(holder, holder.resource.close)

    deep = ('{"deep": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    failures: list[Any] = []
    hook, threshold, enabled = sys.unraisablehook, gc.get_threshold(), gc.isenabled()
    sys.unraisablehook = failures.append  # a builtin: a Python hook would itself overflow a deep stack
    try:
        for offset in range(1500):  # a collection at every depth of the parse, in turn
            gc.disable()
            garbage()
            gc.set_threshold(gc.get_count()[0] + offset)
            gc.enable()
            with pytest.raises(treeshard.errors.ConfigError):
                parse_root(deep)
            gc.collect(0)  # the young generation only: the garbage, if this parse left it
    finally:
        gc.set_threshold(*threshold)
        if not enabled:
            gc.disable()
        sys.unraisablehook = hook
    assert [f"{failure.exc_type.__name__} in {failure.object!r}" for failure in failures] == []


@pytest.mark.parametrize("kind", ["lists", "objects", "alternating"])
def test_parse_depth_limit_is_exact(kind):
    from treeshard.spec import MAX_PARSE_DEPTH, loads_json

    def nested(depth: int) -> str:
        opening = {"lists": ["["], "objects": ['{"a": '], "alternating": ["[", '{"a": ']}[kind]
        closing = {"[": "]", '{"a": ': "}"}
        levels = [opening[i % len(opening)] for i in range(depth)]
        return "".join(levels) + '"[[{{"' + "".join(closing[level] for level in reversed(levels))

    assert loads_json(nested(MAX_PARSE_DEPTH)) == json.loads(nested(MAX_PARSE_DEPTH))
    with pytest.raises(ValueError, match=f"^JSON nested deeper than {MAX_PARSE_DEPTH} levels$"):
        loads_json(nested(MAX_PARSE_DEPTH + 1))


def test_parse_depth_ignores_brackets_and_escapes_in_strings():
    from treeshard.spec import MAX_PARSE_DEPTH, loads_json

    tricky = ['a"[[[', "\\", '\\"{{', "]]]}}}", "\n[", "\\\\"]
    value: Any = tricky
    for _ in range(MAX_PARSE_DEPTH - 1):
        value = {"k\\": [value][0], '"[': tricky}
    text = json.dumps(value)
    assert text.count("[") > MAX_PARSE_DEPTH
    assert loads_json(text) == value
    assert loads_json(text.encode()) == value
