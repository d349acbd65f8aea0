"""Shared helpers of the test suite: data, stores, and exact comparisons.

Every comparison here is exact: ``np.array_equal`` (NaN equal to NaN where
sklearn itself stores NaN), bitwise equality of node arrays, and a recursive
comparison of ``vars()`` that is how forgotten fitted attributes are found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import treeshard

# --------------------------------------------------------------------------- data
N_SAMPLES = 160
N_FEATURES = 5


def make_data(task: str, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` for a task: binary, multiclass, multioutput (classification),
    multioutput_regression, regression, string or bool labels, nan (NaN in X)."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(N_SAMPLES, N_FEATURES))
    score = X[:, 0] + 0.5 * X[:, 1] - 0.25 * X[:, 2] + 0.3 * rng.normal(size=N_SAMPLES)
    if task == "binary":
        return X, (score > 0).astype(np.int64)
    if task == "multiclass":
        return X, np.digitize(score, [-0.6, 0.0, 0.6]).astype(np.int64)
    if task == "string":
        return X, np.array(["cat", "dog", "mouse"])[np.digitize(score, [-0.5, 0.5])]
    if task == "bool":
        return X, score > 0.2
    if task == "multilabel":
        return X, np.column_stack([(score > 0).astype(np.int64), (X[:, 3] > 0).astype(np.int64)])
    if task == "multioutput":
        second = np.digitize(X[:, 3] - X[:, 1], [-0.5, 0.5])
        return X, np.column_stack([(score > 0).astype(np.int64), second])
    if task == "regression":
        return X, score * 10.0
    if task == "multioutput_regression":
        return X, np.column_stack([score, X[:, 3] ** 2 - X[:, 4]])
    if task == "nan":
        X[rng.rand(*X.shape) < 0.15] = np.nan
        return X, (score > 0).astype(np.int64)
    raise ValueError(task)


def query_points(X: np.ndarray, estimator: Any = None) -> np.ndarray:
    """Rows to predict on: the training rows plus far-out ones, and rows with NaN
    when ``estimator`` accepts missing values."""
    rng = np.random.RandomState(99)
    extra = rng.normal(scale=3.0, size=(20, X.shape[1]))
    extra[1::4, 0] = 1e30
    extra[2::4, 0] = -1e30
    if estimator is not None and estimator.__sklearn_tags__().input_tags.allow_nan:
        extra[::3, -1] = np.nan
    return np.vstack([X, extra])


def query_targets(y: np.ndarray) -> np.ndarray:
    """Targets for :func:`query_points` (to compute ``score``): ``y`` plus 20 of its rows."""
    y = np.asarray(y)
    return np.concatenate([y, y[np.arange(20) % len(y)]])


# --------------------------------------------------------------------------- stores
STORE_KINDS = ("directory", "zip", "memory")


def make_store(kind: str, tmp_path: Path) -> Any:
    """A fresh store location of the given kind."""
    if kind == "directory":
        return tmp_path / "model"
    if kind == "zip":
        return tmp_path / "model.zip"
    if kind == "memory":
        return zarr.storage.MemoryStore()
    if kind == "localstore":
        return zarr.storage.LocalStore(tmp_path / "local")
    if kind == "zipstore":
        return zarr.storage.ZipStore(tmp_path / "store.zip", mode="w")
    raise ValueError(kind)


def reopen_for_reading(kind: str, store: Any, tmp_path: Path) -> Any:
    """What a reader passes to ``load`` for a store written by ``save``."""
    if kind == "zipstore":
        store.close()
        return zarr.storage.ZipStore(tmp_path / "store.zip", mode="r")
    return store


def round_trip(estimator: Any, kind: str, tmp_path: Path, *, lazy: bool = True, **save_kwargs: Any) -> Any:
    store = make_store(kind, tmp_path)
    treeshard.save(estimator, store, **save_kwargs)
    return treeshard.load(reopen_for_reading(kind, store, tmp_path), lazy=lazy)


@pytest.fixture
def memory_round_trip():
    """``round_trip`` through a MemoryStore."""

    def run(estimator: Any, *, lazy: bool = True, **save_kwargs: Any) -> Any:
        store = zarr.storage.MemoryStore()
        treeshard.save(estimator, store, **save_kwargs)
        return treeshard.load(store, lazy=lazy)

    return run


# --------------------------------------------------------------------------- config editing
def read_config(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "zarr.json").read_text())["attributes"]["treeshard"]


def edit_config(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Apply ``edit(config_dict)`` (which changes the dict in place) to a directory
    store's config record in ``zarr.json``."""
    meta_path = Path(path) / "zarr.json"
    document = json.loads(meta_path.read_text())
    edit(document["attributes"]["treeshard"])
    meta_path.write_text(json.dumps(document))


def reseal(store: Any) -> None:
    """Rewrite the digest record of an edited store (a directory path or a zarr store).

    Anyone can do this to a store that is not signed; the edit then passes the
    per-chunk sha256 check and meets the structural checks a load makes, which
    is what tests of malformed content are about. A root ``zarr.json`` that is
    no longer JSON leaves the record as it was (the root fails to parse before
    any digest is checked).
    """
    from treeshard.integrity import record_digest

    if isinstance(store, (str, os.PathLike)):
        store = zarr.storage.LocalStore(store)
    try:
        record_digest(store)
    except (ValueError, RecursionError, AttributeError, TypeError):  # unparseable JSON documents
        pass


# --------------------------------------------------------------------------- comparisons
def assert_trees_equal(a: Any, b: Any, where: str = "tree_") -> None:
    """Two sklearn ``Tree`` objects are bitwise identical."""
    assert type(a) is type(b), where
    assert a.node_count == b.node_count, f"{where}.node_count"
    assert a.max_depth == b.max_depth, f"{where}.max_depth"
    assert a.n_features == b.n_features, f"{where}.n_features"
    assert a.n_outputs == b.n_outputs, f"{where}.n_outputs"
    assert np.array_equal(a.n_classes, b.n_classes), f"{where}.n_classes"
    sa, sb = a.__getstate__(), b.__getstate__()
    assert sa.keys() == sb.keys(), where
    for key in ("max_depth", "node_count"):
        assert sa[key] == sb[key], f"{where} state {key}"
    nodes_a, nodes_b = sa["nodes"], sb["nodes"]
    assert nodes_a.dtype == nodes_b.dtype and nodes_a.shape == nodes_b.shape, f"{where}.nodes"
    for name in nodes_a.dtype.names:
        assert_bitwise(nodes_a[name], nodes_b[name], f"{where}.nodes[{name!r}]")
    assert_bitwise(sa["values"], sb["values"], f"{where}.values")


def assert_bitwise(a: np.ndarray, b: np.ndarray, where: str) -> None:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
    assert a.tobytes() == b.tobytes(), f"{where}: bytes differ"


def assert_same_state(a: Any, b: Any, where: str = "estimator") -> None:
    """Recursively compare two fitted objects: same attributes, equal values.

    Objects without a meaningful equality (a loss's Cython object) are
    compared by type.
    """
    from sklearn._loss.loss import BaseLoss
    from sklearn.base import BaseEstimator
    from sklearn.tree._tree import Tree

    if isinstance(a, list) and isinstance(b, Sequence) and not isinstance(b, (str, tuple)):
        # A lazily loaded forest's estimators_ is a sequence that reads trees on demand.
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i in range(len(a)):
            assert_same_state(a[i], b[i], f"{where}[{i}]")
        return
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, Tree):
        assert_trees_equal(a, b, where)
    elif isinstance(a, (BaseEstimator, BaseLoss)):
        from treeshard.dispatch import SmallBatchDispatch

        # A lazily loaded forest's instance-level predict methods (treeshard.dispatch) are
        # not state: tests/test_dispatch.py checks them.
        va, vb = vars(a), {k: v for k, v in vars(b).items() if not isinstance(v, SmallBatchDispatch)}
        assert sorted(va) == sorted(vb), f"{where}: attributes differ: only saved {sorted(set(va) - set(vb))}, only loaded {sorted(set(vb) - set(va))}"
        for key in va:
            if isinstance(a, BaseLoss) and key == "closs":
                # The Cython loss; HuberLoss's delta is re-estimated at every fitted stage.
                assert type(va[key]) is type(vb[key]), f"{where}.{key}"
                continue
            assert_same_state(va[key], vb[key], f"{where}.{key}")
    elif isinstance(a, np.random.RandomState):
        sa, sb = a.get_state(legacy=True), b.get_state(legacy=True)
        assert sa[0] == sb[0] and np.array_equal(sa[1], sb[1]) and sa[2:] == sb[2:], f"{where}: RandomState differs"
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                assert_same_state(x, y, f"{where}[{i}]")
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{where}: values differ"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), f"{where}: {a!r} != {b!r}"
    elif type(a).__eq__ is object.__eq__:
        # No value equality (a loss's link object): compare what it holds.
        if hasattr(a, "__dict__"):
            assert_same_state(vars(a), vars(b), where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_equal_outputs(a: Any, b: Any, where: str) -> None:
    """Exactly equal prediction outputs (arrays, lists of arrays, sparse matrices, tuples)."""
    import scipy.sparse as sp

    if sp.issparse(a):
        assert sp.issparse(b) and a.shape == b.shape and a.format == b.format, where
        assert (a != b).nnz == 0, f"{where}: sparse values differ"
        return
    if isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_outputs(x, y, f"{where}[{i}]")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
    # NaN where the original has NaN (importances of root-only trees are 0/0)
    assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{where}: values differ"


def assert_same_predictions(original: Any, loaded: Any, X: Any, y: Any) -> None:
    """Every prediction method the original has gives identical results on the loaded model."""
    for name in ("predict", "predict_proba", "predict_log_proba", "decision_function", "apply", "decision_path"):
        if not hasattr(original, name):
            continue
        try:
            expected = getattr(original, name)(X)
        except (NotImplementedError, AttributeError):
            # e.g. predict_log_proba of a multi-output forest; the loaded model must fail alike
            with pytest.raises((NotImplementedError, AttributeError)):
                getattr(loaded, name)(X)
            continue
        assert_equal_outputs(expected, getattr(loaded, name)(X), name)
    for name in ("staged_predict", "staged_predict_proba", "staged_decision_function"):
        if hasattr(original, name):
            staged_a, staged_b = list(getattr(original, name)(X)), list(getattr(loaded, name)(X))
            assert len(staged_a) == len(staged_b), name
            for i, (x, z) in enumerate(zip(staged_a, staged_b)):
                assert_equal_outputs(x, z, f"{name}[{i}]")
    if np.ndim(y) == 1 or not _is_multioutput_classifier(original):
        assert original.score(X, y) == loaded.score(X, y)
    assert_equal_outputs(original.feature_importances_, loaded.feature_importances_, "feature_importances_")


def _is_multioutput_classifier(estimator: Any) -> bool:
    from sklearn.base import is_classifier

    return is_classifier(estimator) and getattr(estimator, "n_outputs_", 1) > 1


def assert_round_trip_exact(original: Any, loaded: Any, X: Any, y: Any) -> None:
    """The loaded model is the original: state, trees and every output."""
    assert_same_state(original, loaded)
    assert_same_predictions(original, loaded, X, y)


def stored_files(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or the file itself) with its bytes."""
    path = Path(path)
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _no_cwd_litter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run in their tmp_path so a stray relative path never litters the repo."""
    monkeypatch.chdir(tmp_path)


# --------------------------------------------------------------------------- another CPU
def run_without_simd(test_file: str, select: str) -> None:
    """Run ``pytest -k select test_file`` in a fresh process with numpy's SIMD dispatch off
    (``NPY_DISABLE_CPU_FEATURES``), where ``np.exp``/``np.log`` round as on a CPU without
    AVX2/AVX-512; skip where numpy dispatches nothing beyond its baseline."""
    import os
    import subprocess
    import sys

    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # type: ignore[no-redef]
    found = [feature for feature in __cpu_dispatch__ if __cpu_features__.get(feature)]
    if not found:
        pytest.skip("numpy dispatches no SIMD extension beyond its baseline on this CPU")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(found), "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select, test_file]
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]  # 5 if nothing was collected
