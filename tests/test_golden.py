"""Golden stores: stores written once by ``tests/golden/make_golden.py`` still load, forever.

Like numcodecs' ``check_backwards_compatibility``: the committed stores are
decoded on every run and compared with what was recorded. A failure here means
a change broke stores that users already have: fix the reader, never the golden
files.

The recording machine's bits are compared only where the format alone
determines them, so the tests pass on any CPU:

- node arrays of every tree, against the store's columns read with plain zarr;
- ``apply``, ``predict`` labels, forest and tree ``predict_proba`` (sums and
  divisions of stored values), gradient boosting regression;
- gradient boosting raw scores, as stage sums of the stored leaf values onto
  the init estimator's raw prediction (``init_raw`` in the ``.npz``): the
  recorded ``decision_function`` must be that sum from the recorded init, and
  every engine's that sum from the init sklearn computes on this machine (the
  multiclass init goes through numpy's ``log`` and ``exp``).

- IsolationForest ``depths``: each row's stored path terms summed in tree
  order (``docs/FORMAT.md`` 6.3), computed here by hand from the columns and
  the fitted arrays, and ``estimators_samples_`` (numpy's seeded generator).

Outputs through ``exp``/``log`` (gradient boosting ``predict_proba``, every
``predict_log_proba``, IsolationForest scores, which go through ``np.log`` and
``2 **``) round differently per numpy SIMD level; they are
checked against sklearn's own function applied here to the raw scores above,
with exact equality. ``test_golden_stores_hold_on_another_simd_level`` reruns
all of this with numpy's SIMD dispatch turned off.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from helpers.compare import assert_equal_outputs
from helpers.simd import run_without_simd

import treeshard
from treeshard import SklearnVersionWarning

GOLDEN = Path(__file__).resolve().parent / "golden"
FORMAT_DIRS = sorted(p for p in GOLDEN.iterdir() if p.is_dir() and p.name.startswith("v"))
CASES = [(d, name) for d in FORMAT_DIRS for name in sorted(json.loads((d / "manifest.json").read_text())["cases"])]
IDS = [f"{d.name}-{name}" for d, name in CASES]
#: Recorded with the outputs but not a prediction method: the gradient boosting init's raw prediction.
INIT_RAW = "init_raw"
TREE_FIELDS = ("children_left", "children_right", "feature", "threshold", "impurity", "n_node_samples", "weighted_n_node_samples", "missing_go_to_left")


def load_golden(path: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        # Golden stores were written by some sklearn version; a newer one warns.
        warnings.simplefilter("ignore", SklearnVersionWarning)
        return treeshard.load(path, **kwargs)


def recorded(directory: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(directory / f"{name}.npz", allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def stored_columns(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The config record and node columns of a store, read with plain zarr (not treeshard's reader)."""
    group = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
    nodes = group["nodes"]
    return group.attrs["treeshard"], {key: nodes[key][...] for key in nodes.array_keys()}


def decoded_tree(config: dict[str, Any], columns: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Tree ``i``'s node arrays as sklearn holds them, decoded as docs/FORMAT.md section 4 says."""
    layout = config["trees"]
    start, stop = columns["tree_ptr"][i], columns["tree_ptr"][i + 1]
    tree = {name: columns[name][start:stop] for name in TREE_FIELDS[2:]}
    local = np.arange(stop - start)
    for side in ("left", "right"):
        offset = columns[f"{side}_child_offset"][start:stop].astype(np.int64)
        tree[f"children_{side}"] = np.where(offset == 0, -1, local + offset)
    value = columns["value"][start:stop]
    if layout["value_encoding"] == "weighted_counts":
        value = value / tree["weighted_n_node_samples"][:, None]
    tree["value"] = value.reshape(stop - start, layout["n_outputs"], max(layout["n_classes"]))
    return tree


def staged_raw(init: np.ndarray, leaves: np.ndarray, config: dict[str, Any], columns: dict[str, np.ndarray]) -> np.ndarray:
    """Gradient boosting raw scores (n, K) as sklearn's ``predict_stages`` sums them:
    ``raw[:, k] += learning_rate * value[leaf]``, stage by stage from ``init``."""
    raw = np.array(init, dtype=np.float64)
    n, k = raw.shape
    leaves = leaves.reshape(n, -1, k).astype(np.int64)
    learning_rate = float(config["params"]["learning_rate"])
    tree_ptr, value = columns["tree_ptr"], columns["value"][:, 0]
    for stage in range(leaves.shape[1]):
        for j in range(k):
            raw[:, j] += learning_rate * value[tree_ptr[stage * k + j] + leaves[:, stage, j]]
    return raw


def trees_of(model: Any) -> list[Any]:
    estimators = getattr(model, "estimators_", None)
    if estimators is None:
        return [model]
    return list(np.asarray(estimators, dtype=object).ravel()) if isinstance(estimators, np.ndarray) else list(estimators)


def expected_outputs(directory: Path, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """``(X, {method: expected output})``: recorded bits where the format fixes them, else
    sklearn's functions applied on this machine to the format-determined raw scores."""
    expected = recorded(directory, name)
    X = expected.pop("X")
    init_recorded = expected.pop(INIT_RAW, None)
    depths, samples = expected.pop("depths", None), expected.pop("estimators_samples_", None)
    manifest = json.loads((directory / "manifest.json").read_text())["cases"][name]
    assert sorted(expected) == sorted(m for m in manifest["methods"] if m != "X")
    if manifest["estimator"] == "IsolationForest":
        return X, isolation_expected(directory / name, X, depths, samples)
    if not manifest["estimator"].startswith("GradientBoosting"):
        if "predict_proba" in expected:
            with np.errstate(divide="ignore"):
                expected["predict_log_proba"] = np.log(expected["predict_proba"])  # np.log on this machine
        return X, expected
    config, columns = stored_columns(directory / name)
    reference = load_golden(directory / name, lazy=False)
    assert init_recorded is not None, f"{name}.npz: no {INIT_RAW}"
    # The recorded raw scores are the stored stages summed onto the recorded init (format only).
    recorded_raw = staged_raw(init_recorded, expected["apply"], config, columns)
    recorded_scores = expected.get("decision_function", expected["predict"])
    assert_equal_outputs(recorded_raw.reshape(recorded_scores.shape), recorded_scores, "recorded raw scores")
    # This machine's raw scores: the same stages onto the init sklearn computes here from the stored prior.
    raw = staged_raw(reference._raw_predict_init(X), expected["apply"], config, columns)
    if "decision_function" not in expected:
        assert_equal_outputs(raw.ravel(), expected["predict"], "regression from this machine's init")
    else:
        scores = raw.ravel() if raw.shape[1] == 1 else raw
        expected["decision_function"] = scores
        encoded = (scores >= 0).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)
        assert_equal_outputs(reference.classes_[encoded], expected["predict"], "labels from the raw scores")
        # sklearn's link inverse on this machine; the recorded probabilities are the recording CPU's
        proba = reference._loss.predict_proba(scores)
        expected["predict_proba"] = proba
        with np.errstate(divide="ignore"):
            expected["predict_log_proba"] = np.log(proba)
    return X, expected


def isolation_expected(path: Path, X: np.ndarray, depths: np.ndarray, samples: np.ndarray) -> dict[str, Any]:
    """An IsolationForest's outputs on this machine from the recorded ``depths``, after checking
    them against the store (format only) and the recorded ``estimators_samples_``."""
    from sklearn.ensemble._iforest import _average_path_length

    config, columns = stored_columns(path)
    group = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
    fitted = {name: group[f"fitted/{name}"][...] for name in ("estimators_features_", "decision_path_lengths", "average_path_length_per_tree")}
    assert_equal_outputs(isolation_depths(X, columns, fitted), depths, "recorded depths")
    reference = load_golden(path, lazy=False)
    assert_equal_outputs(np.array(reference.estimators_samples_), samples, "estimators_samples_")
    # sklearn's arithmetic on this machine (np.log in _average_path_length, then 2 **)
    denominator = len(reference.estimators_) * _average_path_length([reference._max_samples])
    scores = -(2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0)))
    decision = scores - reference.offset_
    return {"score_samples": scores, "decision_function": decision, "predict": np.where(decision < 0, -1, 1)}


def isolation_depths(X: np.ndarray, columns: dict[str, np.ndarray], fitted: dict[str, np.ndarray]) -> np.ndarray:
    """Each row's path terms summed in tree order, walking the stored columns by hand: tree ``t``
    reads column ``estimators_features_[t, feature]`` (every tree of the golden model reads 2 of 3)."""
    tree_ptr, left, right = columns["tree_ptr"], columns["left_child_offset"], columns["right_child_offset"]
    depths = np.zeros(len(X))
    for row, x in enumerate(np.asarray(X, dtype=np.float32)):
        for t in range(len(tree_ptr) - 1):
            node = int(tree_ptr[t])
            while left[node] != 0:
                value = x[fitted["estimators_features_"][t, columns["feature"][node]]]
                if np.isnan(value):
                    go_left = columns["missing_go_to_left"][node] == 1
                else:
                    go_left = value <= columns["threshold"][node]
                node += int(left[node] if go_left else right[node])
            depths[row] += (fitted["decision_path_lengths"][node] + fitted["average_path_length_per_tree"][node]) - 1.0
    return depths


def test_there_are_golden_stores_for_format_version_1():
    assert [d.name for d in FORMAT_DIRS][:1] == ["v1"]
    families = {json.loads((GOLDEN / "v1" / "manifest.json").read_text())["cases"][name]["estimator"] for _, name in CASES}
    assert {"RandomForestClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier", "GradientBoostingRegressor"} <= families
    assert {"DecisionTreeClassifier", "ExtraTreeRegressor", "IsolationForest"} <= families


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize(("directory", "name"), CASES, ids=IDS)
def test_golden_trees_are_the_stored_columns(directory, name, lazy):
    """Every node array of every tree equals the store's columns, decoded by hand."""
    config, columns = stored_columns(directory / name)
    trees = trees_of(load_golden(directory / name, lazy=lazy))
    assert len(trees) == config["trees"]["n_trees"] == len(columns["tree_ptr"]) - 1
    for i, estimator in enumerate(trees):
        tree = estimator.tree_
        for field, values in decoded_tree(config, columns, i).items():
            assert np.array_equal(getattr(tree, field), values), f"tree {i}: {field}"


@pytest.mark.parametrize("engine", ["lazy", "eager", "predictor"])
@pytest.mark.parametrize(("directory", "name"), CASES, ids=IDS)
def test_golden_store_predicts_as_recorded(directory, name, engine):
    manifest = json.loads((directory / "manifest.json").read_text())["cases"][name]
    X, expected = expected_outputs(directory, name)
    if engine == "predictor":
        model = treeshard.Predictor(directory / name)
        assert model.estimator == manifest["estimator"]
    else:
        model = load_golden(directory / name, lazy=engine == "lazy")
        assert type(model).__name__ == manifest["estimator"]
    for method, values in expected.items():
        with np.errstate(divide="ignore"):
            assert_equal_outputs(getattr(model, method)(X), values, method)


@pytest.mark.parametrize(("directory", "name"), CASES, ids=IDS)
def test_golden_store_info(directory, name):
    manifest = json.loads((directory / "manifest.json").read_text())
    with treeshard.open(directory / name) as handle:
        info = handle.info
    assert info.format_version == int(directory.name[1:])
    assert info.estimator == manifest["cases"][name]["estimator"]
    assert info.codec == manifest["cases"][name]["codec"]
    assert info.metadata == {"golden": name}
    assert info.versions["sklearn"] == manifest["cases"][name].get("sklearn", manifest["sklearn"])


@pytest.mark.parametrize(("directory", "name"), CASES[:2], ids=IDS[:2])
def test_golden_store_reads_from_a_zip_and_memory(directory, name, tmp_path):
    """The same bytes read through the other store kinds."""
    with np.load(directory / f"{name}.npz", allow_pickle=False) as npz:
        X, expected = npz["X"], npz["predict"]
    zipped = tmp_path / "golden.zip"
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted((directory / name).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory / name).as_posix())
    assert np.array_equal(load_golden(zipped).predict(X), expected)
    memory = zarr.storage.MemoryStore()
    source = zarr.storage.LocalStore(directory / name, read_only=True)
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def copy() -> None:
        async for key in source.list():
            await memory.set(key, await source.get(key, prototype=default_buffer_prototype()))

    sync(copy())
    assert np.array_equal(load_golden(memory).predict(X), expected)


def test_golden_stores_are_tiny():
    for directory, name in CASES:
        size = sum(p.stat().st_size for p in (directory / name).rglob("*") if p.is_file())
        assert size < 64 * 1024, f"{name}: {size} bytes"


def test_golden_stores_hold_on_another_simd_level():
    """The tests above pass with numpy's SIMD dispatch off, where ``np.exp``/``np.log`` round
    differently: what they compare with the recording does not depend on the CPU."""
    run_without_simd(__file__, "not another_simd_level")
