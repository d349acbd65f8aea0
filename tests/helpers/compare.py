"""Exact comparisons: ``np.array_equal`` (NaN equal to NaN where sklearn
itself stores NaN), bitwise equality of node arrays, and a recursive
comparison of ``vars()`` that is how forgotten fitted attributes are found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest


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


#: The prediction methods a pipeline round trip compares (where the original has them).
PIPELINE_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "score_samples")


def _call(estimator: Any, method: str, *args: Any) -> Any:
    """``estimator.method(*args)``, or the type and message of the error it raises."""
    try:
        return getattr(estimator, method)(*args)
    except (AttributeError, ValueError) as exc:
        return (type(exc), str(exc))


def assert_same_outputs(original: Any, loaded: Any, X: Any, y: Any, methods: Sequence[str] = PIPELINE_METHODS) -> None:
    """``methods``, ``transform``, ``get_feature_names_out`` and ``score`` of a loaded pipeline equal
    the original's exactly (the same error where the original raises one; absent where it is absent)."""
    import pandas as pd

    for method in (*methods, "transform", "get_feature_names_out"):
        if not hasattr(original, method):
            assert not hasattr(loaded, method), method
            continue
        args = () if method == "get_feature_names_out" else (X,)
        expected, got = _call(original, method, *args), _call(loaded, method, *args)
        assert type(got) is type(expected), method
        if isinstance(expected, tuple):
            assert got == expected, method
            continue
        if hasattr(expected, "toarray"):
            assert expected.format == got.format and expected.dtype == got.dtype, method
            expected, got = expected.toarray(), got.toarray()
        if isinstance(expected, pd.DataFrame):  # set_output(transform="pandas"): dtypes and names too
            pd.testing.assert_frame_equal(got, expected, check_exact=True)
            continue
        assert expected.dtype == got.dtype, method
        assert np.array_equal(expected, got, equal_nan=expected.dtype.kind == "f"), method
    if hasattr(original, "score") and y is not None:
        assert original.score(X, y) == loaded.score(X, y)
