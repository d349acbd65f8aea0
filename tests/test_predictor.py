"""The flat predictor equals sklearn exactly, for every estimator, task and input.

Every supported estimator x task is saved once (module cache), then each
prediction method of :class:`treeshard.Predictor` is compared with the
original's with exact equality (dtype, shape and values). Hypothesis then
throws inputs at it that exercise every branch of a split: values equal to
thresholds, one float32 ulp either side, float64 values that round across a
threshold when converted to float32, NaN, infinities and huge values.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import zarr
from helpers.compare import assert_equal_outputs
from helpers.data import make_data, query_points
from helpers.simd import run_without_simd
from helpers.stores import reseal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor

import treeshard
from treeshard import IntegrityError, Predictor, StoreNotFoundError

# (estimator factory, task): every family, classification (int, string, bool,
# multi-output) and regression (single and multi-output), NaN-trained trees.
CASES = {
    "rf-multiclass": (lambda: RandomForestClassifier(n_estimators=7, random_state=0), "multiclass"),
    "rf-string": (lambda: RandomForestClassifier(n_estimators=5, max_depth=4, random_state=1), "string"),
    "rf-bool": (lambda: RandomForestClassifier(n_estimators=4, random_state=2), "bool"),
    "rf-multioutput": (lambda: RandomForestClassifier(n_estimators=5, random_state=3), "multioutput"),
    "rf-nan": (lambda: RandomForestClassifier(n_estimators=6, random_state=4), "nan"),
    "rf-regression": (lambda: RandomForestRegressor(n_estimators=6, random_state=5), "regression"),
    "rf-multioutput-regression": (lambda: RandomForestRegressor(n_estimators=4, random_state=6), "multioutput_regression"),
    "et-binary": (lambda: ExtraTreesClassifier(n_estimators=6, random_state=7), "binary"),
    "et-regression": (lambda: ExtraTreesRegressor(n_estimators=5, random_state=8), "regression"),
    "dt-multiclass": (lambda: DecisionTreeClassifier(random_state=9), "multiclass"),
    "dt-multioutput-string": (lambda: DecisionTreeClassifier(random_state=10), "multioutput_string"),
    "dt-nan": (lambda: DecisionTreeClassifier(random_state=11), "nan"),
    "dt-regression": (lambda: DecisionTreeRegressor(max_leaf_nodes=20, random_state=12), "regression"),
    "dt-multioutput-regression": (lambda: DecisionTreeRegressor(random_state=13), "multioutput_regression"),
    "xt-classifier": (lambda: ExtraTreeClassifier(random_state=14), "string"),
    "xt-regressor": (lambda: ExtraTreeRegressor(random_state=15), "regression"),
    "gb-binary": (lambda: GradientBoostingClassifier(n_estimators=12, max_depth=3, random_state=16), "binary"),
    "gb-string-binary": (lambda: GradientBoostingClassifier(n_estimators=8, learning_rate=0.3, random_state=17), "string_binary"),
    "gb-multiclass": (lambda: GradientBoostingClassifier(n_estimators=10, random_state=18), "multiclass"),
    "gb-exponential": (lambda: GradientBoostingClassifier(loss="exponential", n_estimators=9, random_state=19), "binary"),
    "gb-zero-init": (lambda: GradientBoostingClassifier(init="zero", n_estimators=7, random_state=20), "multiclass"),
    "gb-regression": (lambda: GradientBoostingRegressor(n_estimators=15, random_state=21), "regression"),
    "gb-huber": (lambda: GradientBoostingRegressor(loss="huber", n_estimators=8, random_state=22), "regression"),
    "gb-quantile": (lambda: GradientBoostingRegressor(loss="quantile", alpha=0.8, n_estimators=8, subsample=0.7, random_state=23), "regression"),
    "gb-absolute-zero": (lambda: GradientBoostingRegressor(loss="absolute_error", init="zero", n_estimators=6, random_state=24), "regression"),
}
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "apply")


def _data(task: str) -> tuple[np.ndarray, np.ndarray]:
    if task == "multioutput_string":
        X, y = make_data("multioutput")
        return X, np.column_stack([np.array(["no", "yes"])[y[:, 0]], np.array(["a", "bb", "ccc"])[y[:, 1]]])
    if task == "string_binary":
        X, y = make_data("binary")
        return X, np.array(["neg", "pos"])[y]
    return make_data(task)


@functools.lru_cache(maxsize=None)
def fitted(case: str, kind: str = "zip") -> tuple[Any, Predictor, np.ndarray]:
    """``(estimator, predictor, X)`` for a case, the predictor read from a fresh store."""
    import tempfile

    factory, task = CASES[case]
    X, y = _data(task)
    estimator = factory().fit(X, y)
    folder = Path(tempfile.mkdtemp(prefix="treeshard-predictor-"))
    store: Any = {"zip": folder / "m.zip", "directory": folder / "m", "memory": zarr.storage.MemoryStore()}[kind]
    treeshard.save(estimator, store)
    return estimator, Predictor(store), X


def assert_same_outputs(estimator: Any, predictor: Predictor, X: Any) -> None:
    """Every method the estimator has gives the same result or the same error on the predictor."""
    for name in METHODS:
        if not hasattr(estimator, name):
            assert not hasattr(predictor, name), name
            continue
        if name == "apply" and isinstance(X, list) and isinstance(estimator, GradientBoostingRegressor):
            continue  # sklearn's own bug: GradientBoostingRegressor.apply reads X.shape of a list
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # log(0) in predict_log_proba, alike
                expected = getattr(estimator, name)(X)
        except ValueError as exc:
            with pytest.raises(ValueError) as info:
                getattr(predictor, name)(X)
            assert str(info.value).splitlines()[0] == str(exc).splitlines()[0], name
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = getattr(predictor, name)(X)
        assert_equal_outputs(expected, got, name)


# --------------------------------------------------------------------------- every estimator x task
@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_equal_sklearn(case: str) -> None:
    estimator, predictor, X = fitted(case)
    X_query = query_points(X, estimator)
    assert_same_outputs(estimator, predictor, X_query)
    assert_same_outputs(estimator, predictor, X_query[:1])  # the serverless case: one row
    assert_same_outputs(estimator, predictor, X_query.tolist()[:3])  # lists convert like sklearn's
    assert predictor.n_features_in_ == estimator.n_features_in_
    assert predictor.estimator == type(estimator).__name__
    if hasattr(estimator, "classes_"):
        assert_equal_outputs(estimator.classes_, predictor.classes_, "classes_")
    else:
        assert not hasattr(predictor, "classes_")


@pytest.mark.parametrize("kind", ["directory", "memory"])
def test_every_store_kind(kind: str) -> None:
    estimator, predictor, X = fitted("rf-multioutput", kind)
    assert_same_outputs(estimator, predictor, X)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_huge_values_round_to_float32_infinity_like_sklearn() -> None:
    """1e30 fits float32; 1e39 does not and is rejected as infinity by both."""
    estimator, predictor, X = fitted("rf-regression")
    rows = np.repeat(X[:2], 3, axis=0)
    rows[0, 0], rows[1, 0] = 1e30, -1e30
    assert_same_outputs(estimator, predictor, rows[:2])
    rows[2, 1] = 1e39
    assert_same_outputs(estimator, predictor, rows)


@pytest.mark.parametrize("n_jobs", [None, 1, 2, 3, -1])
@pytest.mark.parametrize("case", ["rf-multiclass", "rf-nan", "gb-multiclass", "gb-regression", "dt-multioutput-string"])
def test_row_blocks_and_threads_change_nothing(monkeypatch: pytest.MonkeyPatch, case: str, n_jobs: Any) -> None:
    """Odd row blocks, walk groups and leaf buffers, spread over threads, give the same bits as sklearn."""
    import treeshard.predictor.traversal as module

    estimator, predictor, X = fitted(case)
    monkeypatch.setattr(module, "BLOCK_ROWS", 7)
    monkeypatch.setattr(module, "GROUP", 3)
    monkeypatch.setattr(module, "BUFFER_PAIRS", 20)  # a few trees at a time
    monkeypatch.setattr(module, "COMPLETE_BLOCK_ROWS", 5)
    monkeypatch.setattr(module, "PAIRS_PER_THREAD", 1)  # even a small batch is split over the threads
    monkeypatch.setattr(predictor, "n_jobs", n_jobs)
    assert predictor._threads(len(X)) == {None: 1, 1: 1, 2: 2, 3: 3, -1: module.available_cores()}[n_jobs]
    assert_same_outputs(estimator, predictor, np.vstack([X] * 3))


@pytest.mark.parametrize("case", ["rf-nan", "dt-nan", "gb-binary", "gb-multiclass", "dt-regression"])
def test_both_walks_give_sklearns_leaves(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """Shallow models are walked level by level, deep ones walk by walk: both are exact, whatever the depth."""
    estimator, predictor, X = fitted(case)
    depth = predictor._walk_depth
    rows = np.vstack([X, X[:5] + np.float32(1e-3)])
    monkeypatch.setattr(predictor, "_complete", None)  # the node table's walks
    monkeypatch.setattr(predictor, "_walk_depth", 0)  # hand-over walks
    assert_same_outputs(estimator, predictor, rows)
    if depth == 0:  # a deep model: force the level walk with its true depth
        depth = int(predictor._depths.max())
    monkeypatch.setattr(predictor, "_walk_depth", depth)
    assert_same_outputs(estimator, predictor, rows)
    monkeypatch.setattr(predictor, "_walk_depth", depth + 3)  # extra steps stay at the leaf
    assert_same_outputs(estimator, predictor, rows)


def _force_complete(monkeypatch: pytest.MonkeyPatch, predictor: Predictor, depth: int) -> None:
    from treeshard.predictor.traversal import _complete_layout

    monkeypatch.setattr(predictor, "_walk_depth", depth)
    monkeypatch.setattr(predictor, "_complete", _complete_layout(predictor))
    monkeypatch.setattr(predictor, "_few", predictor._few_rows())  # a few rows walk the forced layout too
    assert predictor._complete[3] == max(3, depth)


@pytest.mark.parametrize("case", sorted(CASES))
def test_complete_layout_gives_sklearns_outputs(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """Every model kind through the perfect-tree layout: the comparison path at depth 3 (8 rows
    or more), the walk below 8 rows and deeper; padded deeper than needed, still exact."""
    from treeshard._kernels import pack_complete  # noqa: F401 (the layout's kernel)

    estimator, predictor, X = fitted(case)
    depth = int(predictor._depths.max())
    rows = np.vstack([query_points(X, estimator)] * 3)  # more than one 256-row block of comparisons
    if depth > 10:
        with pytest.raises(ValueError, match="^depth must be 1 to 10$"):
            _force_complete(monkeypatch, predictor, depth)
        depth = 10  # too shallow for these trees: refused
        with pytest.raises(ValueError, match="^a tree is deeper than 10$"):
            _force_complete(monkeypatch, predictor, depth)
        return
    for forced in sorted({max(depth, 1), min(max(depth, 3) + 1, 10)}):
        _force_complete(monkeypatch, predictor, forced)
        assert_same_outputs(estimator, predictor, rows)
        assert_same_outputs(estimator, predictor, rows[:7])  # fewer rows than the comparison path takes
        assert_same_outputs(estimator, predictor, rows[:1])


@pytest.mark.parametrize("depth", [3, 5, 7])
@pytest.mark.parametrize("missing_go_to_left", [True, False])
def test_complete_layout_routes_nan_like_sklearn(missing_go_to_left: bool, depth: int) -> None:
    """Shallow NaN-trained trees (NaN left and NaN right splits) through both complete-layout paths."""
    X, y = make_data("nan")
    estimator = RandomForestClassifier(n_estimators=20, max_depth=depth, random_state=0).fit(X, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    predictor = Predictor(store)
    assert predictor._complete is not None and predictor._complete[3] == depth
    nan_right = predictor._complete[0][:, 1::2] & 1
    split = predictor._complete[0][:, 0::2] != np.float32(np.inf).view(np.uint32)
    assert np.any(split & (nan_right == (0 if missing_go_to_left else 1)))  # both kinds of split occur
    rows = np.vstack([X] * 2)
    rows[::3, 0] = np.nan
    rows[1::4, 1:3] = np.nan
    assert np.isnan(rows).any(axis=1).mean() > 0.3
    assert_same_outputs(estimator, predictor, rows)
    assert_same_outputs(estimator, predictor, rows[:5])


def test_complete_layout_kernels_refuse_bad_shapes() -> None:
    from treeshard._kernels import pack_complete, traverse_complete_leaves, traverse_complete_sum

    _, predictor, X = fitted("gb-multiclass")
    slots, ids, values, depth = predictor._complete
    nodes, nan_right, roots = predictor._nodes, predictor._nan_right, predictor._roots
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    no_counts, no_weights = np.empty((0, 0), dtype=np.int32), np.empty(0)
    with pytest.raises(ValueError, match=r"^depth must be 1 to 10$"):
        pack_complete(nodes, nan_right, roots, 0, predictor._value, no_counts, no_weights, slots, ids, values)
    with pytest.raises(ValueError, match=r"^slots and leaf_ids: expected \(n_trees, 2 \* \(2\^depth - 1\)\) and \(n_trees, 2\^depth\)$"):
        pack_complete(nodes, nan_right, roots, depth + 1, predictor._value, no_counts, no_weights, slots, ids, values)
    with pytest.raises(ValueError, match=r"^tree root outside the node table$"):
        pack_complete(nodes, nan_right, roots + len(nodes), depth, predictor._value, no_counts, no_weights, slots, ids, values)
    with pytest.raises(ValueError, match=r"^value: expected one row per node$"):
        pack_complete(nodes, nan_right, roots, depth, predictor._value[:-1], no_counts, no_weights, slots, ids, values)
    wide = nodes.copy()
    wide[roots[0], 1] = 1 << 30
    with pytest.raises(ValueError, match=r"^feature outside \[0, 2\^30\): does not fit a slot$"):
        pack_complete(wide, nan_right, roots, depth, predictor._value, no_counts, no_weights, slots, ids, values)
    out = np.zeros((len(X32), values.shape[2] * predictor._k))
    with pytest.raises(ValueError, match=r"^row range outside X$"):
        traverse_complete_sum(X32, slots, values, depth, 0.1, predictor._k, out, 0, len(X32) + 1, 64)
    with pytest.raises(ValueError, match=r"^out: expected \(n_rows, k \* width\)$"):
        traverse_complete_sum(X32, slots, values, depth, 0.1, predictor._k + 1, out, 0, len(X32), 64)
    with pytest.raises(ValueError, match=r"^slots: expected \(n_trees, 2 \* \(2\^depth - 1\)\), depth 1 to 10$"):
        traverse_complete_leaves(X32, slots, ids, depth + 1, np.empty((len(slots), len(X32)), dtype=np.int64), 0, len(X32), 64)
    with pytest.raises(ValueError, match=r"^out and leaf_ids: expected \(n_trees, n_rows\) and \(n_trees, 2\^depth\)$"):
        traverse_complete_leaves(X32, slots, ids, depth, np.empty((len(slots) - 1, len(X32)), dtype=np.int64), 0, len(X32), 64)


def test_level_walk_is_chosen_for_shallow_models_only() -> None:
    import treeshard.predictor.traversal as module

    assert fitted("gb-binary")[1]._walk_depth == 3  # max_depth=3 stages
    assert fitted("gb-binary")[1]._complete[3] == 3  # and laid out as perfect trees
    assert fitted("rf-multiclass")[1]._complete is None
    assert fitted("rf-multiclass")[1]._walk_depth == 0  # fully grown trees, deeper than LEVEL_WALK_DEPTH
    assert int(fitted("rf-multiclass")[1]._depths.max()) > module.LEVEL_WALK_DEPTH


@pytest.mark.parametrize("case", ["rf-regression", "gb-binary"])
@pytest.mark.parametrize("n_jobs", [0, 1.5, True, "2"])
def test_bad_n_jobs_is_refused(monkeypatch: pytest.MonkeyPatch, n_jobs: Any, case: str) -> None:
    """Whatever the batch: one row, which the few-row scorer would take, is refused alike."""
    import re

    _, predictor, X = fitted(case)
    monkeypatch.setattr(predictor, "n_jobs", n_jobs)
    for method in ("predict", "predict_proba", "decision_function"):
        if not hasattr(predictor, method):
            continue
        for rows in (X, X[:1]):
            with pytest.raises(ValueError, match=f"^{re.escape(f'n_jobs must be a nonzero integer or None, got {n_jobs!r}')}$"):
                getattr(predictor, method)(rows)


def test_negative_n_jobs_counts_from_the_cores_as_joblib(monkeypatch: pytest.MonkeyPatch) -> None:
    import treeshard.predictor.traversal as module

    _, predictor, X = fitted("rf-regression")
    monkeypatch.setattr(module, "available_cores", lambda: 4)
    monkeypatch.setattr(module, "PAIRS_PER_THREAD", 1)
    for n_jobs, threads in ((-1, 4), (-2, 3), (-4, 1), (-9, 1), (3, 3), (None, 1)):
        monkeypatch.setattr(predictor, "n_jobs", n_jobs)
        assert predictor._threads(100) == threads, n_jobs
    monkeypatch.setattr(predictor, "n_jobs", 3)
    assert predictor._threads(2) == 2  # never more threads than rows


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_scores_with_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model loaded (and used with threads) before a fork, as in a pre-forking server, scores in the child."""
    import os

    import treeshard.predictor.traversal as module

    estimator, predictor, X = fitted("rf-multiclass")
    monkeypatch.setattr(module, "PAIRS_PER_THREAD", 1)
    monkeypatch.setattr(predictor, "n_jobs", 2)
    expected = estimator.predict_proba(X)
    assert np.array_equal(predictor.predict_proba(X), expected)  # the parent's pool exists now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        try:
            os.write(write, b"1" if np.array_equal(predictor.predict_proba(X), expected) else b"0")
        finally:
            os._exit(0)
    os.close(write)
    import select
    import signal

    ready, _, _ = select.select([read], [], [], 60)  # a stale pool would hang the child: do not wait forever
    answer = os.read(read, 1) if ready else b"timeout"
    os.close(read)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert answer == b"1"


def test_small_batches_stay_in_the_calling_thread() -> None:
    _, predictor, X = fitted("rf-regression")
    assert predictor._threads(1) == 1
    assert predictor._threads(63) == 1  # one block of rows


def test_small_batches_never_ask_for_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """One row with n_jobs=-1 is scored in the calling thread without the OS query for the cores."""
    import treeshard.predictor.traversal as module

    estimator, predictor, X = fitted("rf-multiclass")

    def no_query() -> int:
        raise AssertionError("available_cores() called for one row")

    monkeypatch.setattr(module, "available_cores", no_query)
    predictor.n_jobs = -1
    assert np.array_equal(predictor.predict_proba(X[:1]), estimator.predict_proba(X[:1]))


@pytest.mark.parametrize("case", ["gb-multiclass", "gb-binary", "gb-regression", "gb-zero-init", "rf-multiclass", "dt-multioutput-string"])
def test_one_row_and_few_rows_equal_sklearn(case: str) -> None:
    """1 to 9 rows (few-row complete-layout sums walk eight trees at once) in every dense form the
    fast path takes (float64, float32, int, Fortran order, strided) and one it does not (a list)."""
    estimator, predictor, X = fitted(case)
    for n in range(1, 10):
        rows = X[:n]
        forms = [
            rows,
            rows.astype(np.float32),
            np.asfortranarray(rows),
            np.repeat(rows, 2, axis=1)[:, ::2],  # not contiguous
            np.round(rows * 4).astype(np.int64),
            rows.tolist(),
        ]
        for form in forms:
            assert_same_outputs(estimator, predictor, form)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_path_refuses_as_the_general_path_does(dtype: Any) -> None:
    """A real 2-D array takes the short path; its errors are sklearn's, word for word."""
    _, predictor, X = fitted("gb-binary")  # gradient boosting refuses NaN
    rows = X[:2].astype(dtype)
    for value, message in ((np.nan, "Input X contains NaN.\nGradientBoostingClassifier does not accept missing values"),
                           (np.inf, "Input X contains infinity or a value too large for dtype('float32')."),
                           (-np.inf, "Input X contains infinity or a value too large for dtype('float32').")):
        bad = rows.copy()
        bad[1, 2] = value
        with pytest.raises(ValueError) as info:
            predictor.predict(bad)
        assert str(info.value).startswith(message)
    with pytest.raises(ValueError) as info:
        predictor.predict(rows[:, :-1])
    assert str(info.value) == f"X has {X.shape[1] - 1} features, but GradientBoostingClassifier is expecting {X.shape[1]} features as input."


def _threshold_rows(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` with a split's feature set to its threshold, one float64 ulp either side,
    and the float32 roundings either side: where float32 conversion and comparison decide."""
    trees = getattr(estimator, "estimators_", [estimator])
    first = trees[0] if isinstance(trees, list) else trees.flat[0]
    tree = first.tree_
    rows = []
    for node in np.flatnonzero(tree.children_left >= 0)[:6]:
        t, f = tree.threshold[node], tree.feature[node]
        t32 = np.float32(t)
        for value in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), t32, np.nextafter(t32, np.float32(np.inf)), np.nextafter(t32, np.float32(-np.inf))):
            row = X[len(rows) % len(X)].copy()
            row[f] = value
            rows.append(row)
    return np.array(rows)


def _taken(predictor: Predictor, X: Any) -> bool:
    """Whether the few-row scorer takes ``X`` (else the general path does)."""
    return predictor._few is not None and predictor._few.scores(X) is not None


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_few_row_scorer_equals_sklearn_for_every_case(case: str) -> None:
    """1 row to the scorer's limit in one compiled call: every family, float64 and float32 arrays and lists of
    floats and ints; threshold-adjacent values and NaN rows; the forms it leaves to the general path."""
    estimator, predictor, X = fitted(case)
    rows = np.vstack([_threshold_rows(estimator, X), query_points(X, estimator)[-20:]])
    single_output = predictor.n_outputs_ == 1
    assert (predictor._few is not None) == single_output
    limit = predictor._few.max_rows if predictor._few is not None else 7
    for start in range(0, len(rows), 7):
        for n in (1, 2, 7, limit):
            block = rows[start : start + n]
            ints = np.clip(np.nan_to_num(np.round(block * 4)), -1000, 1000).astype(np.int64).tolist()
            for form in (block, block.astype(np.float32), block.tolist(), ints):
                values = np.asarray(form, dtype=np.float64)
                in_range = (np.isnan(values) | (np.abs(values) <= np.finfo(np.float32).max)).all()  # else: infinity, refused
                expected = single_output and in_range and not (np.isnan(values).any() and predictor._is_boosting)
                assert _taken(predictor, form) == expected, (case, n, type(form))
                assert_same_outputs(estimator, predictor, form)
    left = [np.resize(rows, (limit + 1, rows.shape[1])), rows[:3].astype(np.int32), np.asfortranarray(rows[:3]), np.repeat(rows[:3], 2, axis=1)[:, ::2], rows[:3].astype(">f8"), rows[:2].astype(np.float16)]
    for form in left:  # a row too many, ints, Fortran order, not contiguous, big-endian, float16: the general path
        assert not _taken(predictor, form)
        assert_same_outputs(estimator, predictor, form)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("case", ["rf-multiclass", "gb-binary", "gb-multiclass", "dt-regression", "rf-nan"])
def test_few_row_scorer_leaves_bad_input_to_the_general_path(case: str) -> None:
    """Input the general path refuses is never scored: the same error, word for word."""
    estimator, predictor, X = fitted(case)
    name = type(estimator).__name__
    row = X[0].tolist()
    bad = {
        "fewer features": ([row[:-1]], f"X has {X.shape[1] - 1} features, but {name} is expecting {X.shape[1]} features as input."),
        "more features": (np.array([row + [0.0]]), f"X has {X.shape[1] + 1} features, but {name} is expecting {X.shape[1]} features as input."),
        "infinity": ([row[:-1] + [float("inf")]], "Input X contains infinity or a value too large for dtype('float32')."),
        "past float32": (np.array([row[:-1] + [1e39]]), "Input X contains infinity or a value too large for dtype('float32')."),
        "a 1-D list": (row, "Expected 2D array, got 1D array instead:"),
        "no rows": (np.empty((0, X.shape[1])), f"Found array with 0 sample(s) (shape=(0, {X.shape[1]})) while a minimum of 1 is required by {name}."),
    }
    if predictor._is_boosting:
        bad["NaN"] = ([row[:-1] + [float("nan")]], f"Input X contains NaN.\n{name} does not accept missing values")
    else:
        assert _taken(predictor, [row[:-1] + [float("nan")]])  # a NaN row is scored: it goes where missing_go_to_left says
    for what, (X_bad, message) in bad.items():
        assert not _taken(predictor, X_bad), what
        for method in ("predict", "predict_proba", "decision_function"):
            if not hasattr(estimator, method):
                continue
            with pytest.raises(ValueError) as info:
                getattr(predictor, method)(X_bad)
            assert str(info.value).startswith(message), (what, method, str(info.value))
            with pytest.raises(ValueError) as theirs:
                getattr(estimator, method)(X_bad)
            assert str(theirs.value).splitlines()[0] == str(info.value).splitlines()[0], (what, method)


def test_few_row_scorer_takes_ints_only_where_float32_is_exact() -> None:
    """Python ints in a list convert exactly up to 2**24; larger ones (and bools) go the general way."""
    estimator, predictor, X = fitted("rf-regression")
    row = [0] * X.shape[1]
    for value, taken in ((2**24, True), (-(2**24), True), (2**24 + 1, False), (2**70, False), (True, False)):
        row[0] = value
        assert _taken(predictor, [row]) == taken, value
        assert np.array_equal(predictor.predict([row]), estimator.predict([row]))


def test_few_row_scorer_is_not_built_for_named_features_or_isolation() -> None:
    import pandas as pd
    from sklearn.ensemble import IsolationForest

    X, y = make_data("regression")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    named = RandomForestRegressor(n_estimators=3, random_state=0).fit(frame, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(named, store)
    predictor = Predictor(store)
    assert predictor._few is None  # an array warns about the missing names: the general path's check
    assert np.array_equal(predictor.predict(frame[:1]), named.predict(frame[:1]))
    forest = IsolationForest(n_estimators=5, random_state=0).fit(X)
    store = zarr.storage.MemoryStore()
    treeshard.save(forest, store)
    predictor = Predictor(store)
    assert predictor._few is None
    assert np.array_equal(predictor.predict(X[:1]), forest.predict(X[:1]))


def test_a_single_row_walks_compact_records_where_the_trees_allow() -> None:
    """Depth-first trees (left child next) take 8-byte records; best-first ones (max_leaf_nodes)
    and complete layouts do not. Both are exact, with and without NaN, down to one feature."""
    X, y = make_data("nan")
    expected = {"rf-nan": True, "rf-regression": True, "dt-regression": False, "gb-binary": False}
    for case, compact in expected.items():
        estimator, predictor, X_case = fitted(case)
        assert predictor._few.walks_compact == compact, case
        for row in query_points(X_case, estimator)[-20:]:
            assert_same_outputs(estimator, predictor, row[None, :])
    one = RandomForestRegressor(n_estimators=3, random_state=0).fit(X[:, :1], y)
    store = zarr.storage.MemoryStore()
    treeshard.save(one, store)
    predictor = Predictor(store)
    assert predictor._few.walks_compact
    for value in (-1.0, 0.0, 0.5, float("nan"), 3.0):
        assert np.array_equal(predictor.predict([[value]]), one.predict([[value]]))


@pytest.mark.parametrize("case", ["rf-nan", "gb-multiclass", "dt-regression"])
def test_a_predictor_pickles_and_deep_copies_with_its_few_row_scorer(case: str) -> None:
    import copy
    import pickle

    estimator, predictor, X = fitted(case)
    for twin in (copy.deepcopy(predictor), pickle.loads(pickle.dumps(predictor)), copy.copy(predictor)):
        assert twin._few is not None and _taken(twin, X[:1])
        assert twin._few.walks_compact == predictor._few.walks_compact
        assert_same_outputs(estimator, twin, X[:3])


def test_few_row_scorer_refuses_a_malformed_table() -> None:
    from treeshard._kernels import FewRows

    _, predictor, _ = fitted("rf-regression")
    args = (predictor._nodes, predictor._nan_right, predictor._roots, predictor._value, np.empty((0, 0), np.int32), np.empty(0), None, np.zeros(1))
    options = {"n_features": predictor.n_features_in_, "depth": 0, "group": 16, "max_rows": 7}
    assert FewRows(*args, **options).scores(np.zeros((1, predictor.n_features_in_))) is not None
    roots = predictor._roots.copy()
    roots[-1] = len(predictor._nodes)
    with pytest.raises(ValueError, match="^tree root outside the node table$"):
        FewRows(args[0], args[1], roots, *args[3:], **options)
    with pytest.raises(ValueError, match="^value: expected one row per node$"):
        FewRows(*args[:3], predictor._value[:-1], *args[4:], **options)
    with pytest.raises(ValueError, match="^FewRows: expected k >= 1, a value per column, init of k \\* width and 1 to 32 rows$"):
        FewRows(*args, **{**options, "max_rows": 33})


def test_layouts_outside_format_v1_are_refused_like_load_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from treeshard import blosc, chunks

    estimator, _, X = fitted("rf-string")
    treeshard.save(estimator, tmp_path / "m")
    original = chunks.ChunkReader.array_layout

    def only_some(self: Any, path: str, *args: Any) -> Any:
        if path in ("nodes/threshold", "nodes/value"):
            raise blosc.UnsupportedLayout(path)
        return original(self, path, *args)

    monkeypatch.setattr(chunks.ChunkReader, "array_layout", only_some)
    with pytest.raises(treeshard.ArrayError, match="nodes/threshold: stored with zarr features outside treeshard format v1"):
        Predictor(tmp_path / "m")


@pytest.mark.parametrize("case", ["rf-multioutput", "gb-multiclass", "dt-regression"])
def test_from_columns_read_by_the_store_reader(case: str, tmp_path: Path) -> None:
    from treeshard.reader import StoreReader

    estimator, _, X = fitted(case)
    treeshard.save(estimator, tmp_path / "m.zip")
    reader = StoreReader(tmp_path / "m.zip")
    try:
        predictor = Predictor.from_columns(reader.config, reader.read_nodes(0, reader.config.trees.n_trees))
    finally:
        reader.close()
    assert_same_outputs(estimator, predictor, X)


# --------------------------------------------------------------------------- property tests
def _split_values(estimator: Any) -> np.ndarray:
    """Every split threshold of the model (float64)."""
    trees = getattr(estimator, "estimators_", [estimator])
    flat = np.asarray(trees, dtype=object).ravel()
    out = [t.tree_.threshold[t.tree_.children_left != -1] for t in flat]
    return np.unique(np.concatenate(out))


def _tricky(thresholds: np.ndarray) -> st.SearchStrategy[float]:
    """Values at, just around, and rounding across the model's thresholds."""
    at = st.sampled_from(thresholds.tolist())

    def around(t: float, step: int, as_float64: bool) -> float:
        t32 = np.float32(t)
        for _ in range(abs(step)):
            t32 = np.nextafter(t32, np.float32(np.inf if step > 0 else -np.inf))
        if as_float64:  # a float64 a hair away from a float32: rounds back onto it
            return float(np.nextafter(np.float64(t32), np.inf if step % 2 else -np.inf))
        return float(t32)

    return st.one_of(
        at,
        st.builds(around, at, st.integers(-2, 2), st.booleans()),
        st.sampled_from([np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e39, 0.0, -0.0]),
        st.floats(-5, 5, width=64),
    )


PROPERTY_CASES = ["rf-nan", "dt-nan", "rf-multioutput", "et-binary", "gb-multiclass", "gb-regression"]


@pytest.mark.parametrize("case", PROPERTY_CASES)
def test_property_equals_sklearn_on_tricky_inputs(case: str) -> None:
    estimator, predictor, _ = fitted(case)
    values = _tricky(_split_values(estimator))
    n_features = estimator.n_features_in_

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.lists(values, min_size=n_features, max_size=n_features), min_size=1, max_size=6))
    def check(rows: list[list[float]]) -> None:
        X = np.array(rows, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow of 1e39
            assert_same_outputs(estimator, predictor, X)

    check()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_threshold_rounding_is_exact() -> None:
    """``x <= t`` (x float32 promoted to float64) equals ``x <= round_down32(t)``."""
    from treeshard.predictor.traversal import _round_down_to_float32

    rng = np.random.default_rng(0)
    t = np.concatenate([rng.normal(size=2000) * 10.0 ** rng.integers(-40, 40, 2000), [0.0, -0.0, 3.5e38, -3.5e38, 1e-46, -1e-46]])
    t32 = _round_down_to_float32(t)
    assert t32.dtype == np.float32
    x = np.concatenate([t.astype(np.float32), np.nextafter(t.astype(np.float32), np.float32(np.inf)), np.nextafter(t.astype(np.float32), np.float32(-np.inf)), [np.inf, -np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.array_equal(x[:, None].astype(np.float64) <= t[None, :], x[:, None] <= t32[None, :])


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_node_table_rounds_thresholds_like_the_numpy_statement() -> None:
    """The compiled packing (one pass) gives the bits of ``_round_down_to_float32`` for every threshold."""
    from treeshard._kernels import pack_nodes
    from treeshard.predictor.traversal import _round_down_to_float32

    rng = np.random.default_rng(1)
    f32 = np.finfo(np.float32)
    edges = [0.0, -0.0, np.inf, -np.inf, float(f32.max), -float(f32.max), 3.4028235677973366e38, -3.4028235677973366e38,
             3.5e38, -3.5e38, 1e-46, -1e-46, float(f32.smallest_subnormal), -float(f32.smallest_subnormal), 1e-300, -1e-300]
    t = np.concatenate([rng.normal(size=5000) * 10.0 ** rng.integers(-45, 39, 5000), edges])
    # Midpoints between neighbouring float32s, and one float64 ulp either side: where rounding turns.
    low = rng.normal(size=500).astype(np.float32)
    mid = (low.astype(np.float64) + np.nextafter(low, np.float32(np.inf)).astype(np.float64)) / 2
    t = np.concatenate([t, mid, np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf)])
    n = len(t)
    feature = rng.integers(-2, 7, n).astype(np.int32)
    left, right = rng.integers(0, 9, n).astype(np.int32), rng.integers(0, 9, n).astype(np.int32)
    missing = rng.integers(0, 2, n).astype(np.uint8)
    nodes, nan_right = np.empty((n, 4), dtype=np.int32), np.empty(n, dtype=np.uint8)
    pack_nodes(t, feature, left, right, missing, nodes, nan_right)
    assert np.array_equal(nodes[:, 0], _round_down_to_float32(t).view(np.int32))
    assert np.array_equal(nodes[:, 1], np.maximum(feature, 0))
    assert np.array_equal(nodes[:, 2], left) and np.array_equal(nodes[:, 3], right)
    assert np.array_equal(nan_right, 1 - missing)
    with pytest.raises(ValueError, match="^node columns and table: expected n_nodes rows each, 4 fields a record$"):
        pack_nodes(t, feature, left, right, missing, nodes[:-1], nan_right)


# --------------------------------------------------------------------------- input validation
def test_wrong_number_of_features() -> None:
    estimator, predictor, X = fitted("rf-multiclass")
    with pytest.raises(ValueError, match=r"^X has 4 features, but RandomForestClassifier is expecting 5 features as input\.$"):
        predictor.predict(X[:, :4])
    with pytest.raises(ValueError, match=r"^X has 4 features") as expected:
        estimator.predict(X[:, :4])
    with pytest.raises(ValueError) as got:
        predictor.predict_proba(X[:, :4])
    assert str(got.value) == str(expected.value)


def test_feature_names_must_match() -> None:
    pd = pytest.importorskip("pandas")
    X, y = make_data("multiclass")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    estimator = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    predictor = Predictor(store)
    assert_equal_outputs(estimator.feature_names_in_, predictor.feature_names_in_, "feature_names_in_")
    assert_equal_outputs(estimator.predict_proba(frame), predictor.predict_proba(frame), "named frame")
    for columns in (["f0", "f1", "f2", "f3", "zz"], ["f1", "f0", "f2", "f3", "f4"]):
        renamed = frame.set_axis(columns, axis=1)
        with pytest.raises(ValueError) as expected:
            estimator.predict(renamed)
        with pytest.raises(ValueError) as got:
            predictor.predict(renamed)
        assert str(got.value) == str(expected.value)
        assert str(got.value).startswith("The feature names should match those that were passed during fit.")
    with pytest.warns(UserWarning, match="X does not have valid feature names, but RandomForestClassifier was fitted with feature names"):
        predictor.predict(X)


def test_frame_given_to_a_model_fitted_without_names_warns() -> None:
    pd = pytest.importorskip("pandas")
    _, predictor, X = fitted("rf-multiclass")
    with pytest.warns(UserWarning, match="X has feature names, but RandomForestClassifier was fitted without feature names"):
        predictor.predict(pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])]))


NAMED_MODELS = {
    "forest": lambda: RandomForestClassifier(n_estimators=3, random_state=0),
    "boosting": lambda: GradientBoostingRegressor(n_estimators=3, random_state=0),
    "hist boosting": lambda: HistGradientBoostingClassifier(max_iter=3, random_state=0),
    "isolation": lambda: IsolationForest(n_estimators=3, random_state=0),
    "tree": lambda: DecisionTreeRegressor(random_state=0),
}


@pytest.mark.parametrize("case", NAMED_MODELS)
def test_a_model_fitted_on_a_dataframe_takes_a_json_request(case: str) -> None:
    """As a pipeline's Predictor does: columns or records decoded from JSON, no pandas; outputs
    equal sklearn's on the DataFrame the request was made from (null is NaN where the model takes it)."""
    pd = pytest.importorskip("pandas")
    X, y = make_data("multiclass")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    estimator = NAMED_MODELS[case]().fit(frame, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    predictor = Predictor(store)
    takes_nan = case != "boosting"
    columns = {name: [None if takes_nan and i == 2 else float(v) for i, v in enumerate(frame[name][:5])] for name in frame}
    columns["f0"][1] = int(frame["f0"][1] // 1)  # an integer among floats
    records = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    expected = pd.DataFrame(columns).astype(np.float64)
    methods = [m for m in ("predict", "predict_proba", "decision_function", "score_samples") if hasattr(estimator, m)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names" warning
        for method in methods:
            want = getattr(estimator, method)(expected)
            assert np.array_equal(getattr(predictor, method)(columns), want), method
            assert np.array_equal(getattr(predictor, method)(records), want), method
    with pytest.raises(treeshard.RequestError, match=r"^missing column\(s\) \['f4'\]: the model reads them$"):
        predictor.predict({name: values for name, values in columns.items() if name != "f4"})
    with pytest.raises(treeshard.RequestError, match=r"^unknown column\(s\) \['zz'\]: the model was fitted on 5 columns \(its feature_names_in_\)$"):
        predictor.predict([{**records[0], "zz": 1.0}])
    with pytest.raises(treeshard.RequestError, match=r"^column 'f1', row 0: expected a number or null, got str 'x'$"):
        predictor.predict({**columns, "f1": ["x"] * 5})


def test_a_json_request_of_decimals_scores_as_sklearn_on_them() -> None:
    pd = pytest.importorskip("pandas")
    from decimal import Decimal

    X, y = make_data("binary")
    frame = pd.DataFrame(X[:, :2], columns=["a", "b"])
    estimator = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, y)
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    request = {"a": [Decimal("0.1"), Decimal("-1.25"), None], "b": [Decimal("3"), Decimal("1E-3"), Decimal("2")]}
    assert np.array_equal(Predictor(store).predict_proba(request), estimator.predict_proba(pd.DataFrame(request)))


def test_a_model_fitted_without_names_refuses_a_json_request() -> None:
    _, predictor, _ = fitted("rf-multiclass")
    message = "this model was fitted without column names (no feature_names_in_): pass a 2-D array, not columns or records"
    with pytest.raises(treeshard.RequestError, match=rf"^{re.escape(message)}$"):
        predictor.predict({"0": [1.0]})


def test_hist_boosting_categories_by_name_in_a_json_request() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "city": pd.Categorical(rng.choice(["Lyon", "Nice", "Paris"], size=200))})
    estimator = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype", random_state=0).fit(frame, frame["x"] > 0)
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    request = {"x": [0.1, -2.0, None, 1.5], "city": ["Lyon", "Tokyo", None, "Nice"]}  # Tokyo unknown, None missing
    # pandas turns a value outside the categories into NaN (and warns): sklearn scores both as missing
    query = pd.DataFrame({**request, "city": ["Lyon", None, None, "Nice"]}).astype({"x": np.float64, "city": frame["city"].dtype})
    assert np.array_equal(Predictor(store).predict_proba(request), estimator.predict_proba(query))


@pytest.mark.parametrize(
    ("X", "message"),
    [
        ([["a", "b", "c", "d", "e"]], "could not convert"),
        ([1.0, 2.0, 3.0, 4.0, 5.0], "Expected 2D array, got 1D array instead"),
        (np.ones((0, 5)), r"Found array with 0 sample\(s\) \(shape=\(0, 5\)\) while a minimum of 1 is required"),
        (np.full((1, 5), 1j), "Complex data not supported"),
        (np.full((1, 5), np.inf), r"Input X contains infinity or a value too large for dtype\('float32'\)\."),
    ],
)
def test_invalid_input(X: Any, message: str) -> None:
    _, predictor, _ = fitted("rf-multiclass")
    with pytest.raises(ValueError, match=message):
        predictor.predict(X)


def test_nan_is_rejected_where_sklearn_rejects_it() -> None:
    estimator, predictor, X = fitted("gb-binary")
    X = X[:3].copy()
    X[0, 0] = np.nan
    for name in ("predict", "predict_proba", "decision_function"):
        with pytest.raises(ValueError, match="^Input X contains NaN"):
            getattr(predictor, name)(X)
    assert_equal_outputs(estimator.apply(X), predictor.apply(X), "apply with NaN")  # sklearn's apply allows NaN


def test_methods_follow_the_estimator() -> None:
    _, regressor, _ = fitted("rf-regression")
    assert not hasattr(regressor, "predict_proba") and not hasattr(regressor, "decision_function")
    with pytest.raises(AttributeError, match=r"has no predict_proba\(\)"):
        regressor.predict_proba([[0.0] * 5])
    _, forest, _ = fitted("rf-multiclass")
    assert hasattr(forest, "predict_proba") and not hasattr(forest, "decision_function")
    assert "RandomForestClassifier n_estimators=7" in repr(forest)


# --------------------------------------------------------------------------- sparse input
SPARSE_FORMATS = ("csr", "csc", "coo", "bsr", "dia", "dok", "lil")


def _sparse_query(X: np.ndarray, seed: int = 0) -> sp.csr_matrix:
    """A CSR matrix of ``X``'s rows (NaN made 0): about half the entries absent, and some
    zeros stored explicitly, as 0.0 and as -0.0."""
    rng = np.random.RandomState(seed)
    dense = np.where(np.isnan(X), 0.0, X)
    dense[rng.rand(*dense.shape) < 0.5] = 0.0
    stored = (dense != 0) | (rng.rand(*dense.shape) < 0.2)
    rows, cols = np.nonzero(stored)
    values = dense[rows, cols]
    values[(values == 0) & (rng.rand(len(values)) < 0.5)] = -0.0
    indptr = np.concatenate([[0], np.cumsum(stored.sum(axis=1))])
    matrix = sp.csr_matrix((values, cols, indptr), shape=dense.shape)
    assert matrix.nnz > np.count_nonzero(dense) > 0  # explicit zeros are stored
    return matrix


def _sparse_from_entries(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, values: np.ndarray, fmt: str) -> Any:
    """A sparse matrix of (row, col, value) entries. ``csr-raw``/``csc-raw`` keep them as
    given (unsorted, repeated entries stored twice); other formats are made by scipy from
    COO, which sums repeated entries."""
    if fmt in ("csr-raw", "csc-raw"):
        major, minor, n_major = (rows, cols, shape[0]) if fmt == "csr-raw" else (cols, rows, shape[1])
        order = np.argsort(major, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(major, minlength=n_major))])
        container = sp.csr_matrix if fmt == "csr-raw" else sp.csc_matrix
        return container((values[order], minor[order], indptr), shape=shape)
    return sp.coo_matrix((values, (rows, cols)), shape=shape).asformat(fmt)


def _same_result_or_same_error(estimator: Any, predictor: Predictor, X: Any) -> None:
    """Every method gives the same output, or raises a ValueError with the very same message."""
    for name in METHODS:
        if not hasattr(estimator, name):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # log(0) in predict_log_proba, alike
            try:
                expected = getattr(estimator, name)(X)
            except ValueError as exc:
                with pytest.raises(ValueError) as got:
                    getattr(predictor, name)(X)
                assert str(got.value) == str(exc), name
                continue
            assert_equal_outputs(expected, getattr(predictor, name)(X), name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_sparse_outputs_equal_sklearn(case: str) -> None:
    """The same sparse X, CSR, CSC or COO, matrix or array, gives sklearn's outputs exactly."""
    estimator, predictor, X = fitted(case)
    query = _sparse_query(query_points(X))  # far-out rows, explicit zeros, -0.0
    assert predictor.predict(query).shape[0] == query.shape[0]
    for matrix in (query, sp.csc_array(query), query.tocoo(), sp.csr_array(query[:1])):
        assert_same_outputs(estimator, predictor, matrix)


@pytest.mark.parametrize("container", ["matrix", "array"])
@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
def test_every_sparse_format(fmt: str, container: str) -> None:
    for case in ("rf-multioutput", "gb-multiclass"):
        estimator, predictor, X = fitted(case)
        query = _sparse_query(X[:40])
        if container == "array":
            query = sp.csr_array(query)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)  # DIA of many diagonals
            matrix = query.asformat(fmt)
        assert matrix.format == fmt
        assert_same_outputs(estimator, predictor, matrix)


def test_sparse_repeated_and_unsorted_entries_read_like_sklearn() -> None:
    """A float32 CSR or CSC keeps repeated entries, and sklearn reads the one stored last;
    scipy sums them for any other input: in float32 after the cast for a float64 CSR,
    in float64 before it for COO. Each input is checked to tell these readings apart."""
    # A tree with one leaf per pair of these float32 values: predict() tells what it read.
    grid = np.array([-0.7, 0.0, 0.8, 1.5, 2.3, 2.5, 16.0, 16.0 + 2.0**-19], dtype=np.float32).astype(np.float64)
    X_train = np.array([[a, b] for a in grid for b in grid])
    estimator = DecisionTreeRegressor(random_state=0).fit(X_train, np.arange(len(X_train), dtype=np.float64))
    store = zarr.storage.MemoryStore()
    treeshard.save(estimator, store)
    predictor = Predictor(store)
    tiny = 2.0**-20  # half a float32 ulp at 16: 16 + tiny is 16.0 in float32 (ties to even), 16 + 2 * tiny is not
    # (row, col, value) in stored order: repeats, unsorted columns, repeats across columns
    entries = [(0, 0, 1.5), (0, 0, -0.7), (1, 1, 2.5), (1, 0, 0.8), (2, 1, 1.5), (2, 0, 2.5), (2, 1, 0.8), (3, 0, 16.0 + tiny), (3, 0, tiny)]
    rows, cols, values = (np.array(column) for column in zip(*entries))
    readings = set()
    for fmt in ("csr-raw", "csc-raw", "coo"):
        for dtype in (np.float32, np.float64):
            X = _sparse_from_entries((4, 2), rows, cols, values.astype(dtype), fmt)
            expected = estimator.predict(X)
            readings.add(tuple(expected))
            assert_same_outputs(estimator, predictor, X)
            if fmt != "coo":
                _same_result_or_same_error(estimator, predictor, sp.csr_array(X))
            if fmt != "coo" and dtype == np.float32:  # the last stored entry wins, not the sum
                assert not np.array_equal(expected, estimator.predict(X.toarray()))
    assert len(readings) == 3  # last entry wins / summed in float32 / summed in float64


def test_sparse_input_is_densified_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import treeshard.predictor.inputs as module

    shapes: list[tuple[int, int]] = []
    original = module.SparseRows.__getitem__

    def recording(self: Any, rows: slice) -> np.ndarray:
        block = original(self, rows)
        shapes.append(block.shape)
        return block

    monkeypatch.setattr(module.SparseRows, "__getitem__", recording)
    monkeypatch.setattr(module, "SPARSE_BLOCK_BYTES", 4 * 5 * 7)  # 7 rows of 5 float32 features
    for case in ("rf-multiclass", "gb-multiclass", "dt-multioutput-regression", "xt-classifier"):
        estimator, predictor, X = fitted(case)
        query = _sparse_query(query_points(X))
        shapes.clear()
        assert_same_outputs(estimator, predictor, query)
        assert shapes and max(rows for rows, _ in shapes) == 7


def _int64_indexed(X: np.ndarray, dtype: Any) -> sp.csr_matrix:
    matrix = sp.csr_matrix(X.astype(dtype))
    matrix.indices, matrix.indptr = matrix.indices.astype(np.int64), matrix.indptr.astype(np.int64)
    return matrix


def _with_data(X: np.ndarray, changes: dict[int, float]) -> sp.csr_matrix:
    matrix = sp.csr_matrix(X)
    for position, value in changes.items():
        matrix.data[position] = value
    return matrix


INVALID_SPARSE = {
    "nan": lambda X: _with_data(X, {3: np.nan}),
    "inf-then-nan": lambda X: _with_data(X, {1: np.inf, 3: np.nan}),  # NaN is reported first
    "inf": lambda X: _with_data(X, {2: -np.inf}),
    "too-large-for-float32": lambda X: _with_data(X, {2: 1e39}),
    "wrong-feature-count": lambda X: sp.csr_matrix(X[:, :4]),
    "no-rows": lambda X: sp.csr_matrix((0, 5)),
    "no-features": lambda X: sp.csr_matrix((3, 0)),
    "1d": lambda X: sp.coo_array(X[0]),
    "3d": lambda X: sp.coo_array(np.ones((2, 2, 5))),
    "complex": lambda X: sp.csr_matrix(X[:2] + 1j),
    "int64-indices": lambda X: _int64_indexed(X, np.float32),
    "int64-indices-downcast-by-astype": lambda X: _int64_indexed(X, np.float64),  # accepted by both
}


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("invalid", sorted(INVALID_SPARSE))
def test_invalid_sparse_input_fails_like_sklearn(invalid: str) -> None:
    """Same message as sklearn, for NaN even where dense NaN is accepted (sklearn has no
    missing-value support for sparse X); gradient boosting's apply names its first tree."""
    for case in ("rf-nan", "dt-nan", "gb-binary", "gb-regression", "xt-regressor"):
        estimator, predictor, X = fitted(case)
        _same_result_or_same_error(estimator, predictor, INVALID_SPARSE[invalid](np.nan_to_num(X[:6])))


def test_sparse_dataframe_is_read_like_sklearn() -> None:
    """sklearn converts a DataFrame of only sparse columns with ``X.sparse.to_coo()``."""
    pd = pytest.importorskip("pandas")
    estimator, predictor, X = fitted("rf-multiclass")
    dense = _sparse_query(X).toarray()
    frame = pd.DataFrame({i: pd.arrays.SparseArray(dense[:, i], fill_value=0.0) for i in range(dense.shape[1])})
    _same_result_or_same_error(estimator, predictor, frame)
    nan_filled = pd.DataFrame({i: pd.arrays.SparseArray(dense[:, i]) for i in range(dense.shape[1])})
    _same_result_or_same_error(estimator, predictor, nan_filled)  # "fill value must be 0 when converting to COO matrix"
    # sklearn sends NaN in such a frame right whatever missing_go_to_left says: refused.
    estimator, predictor, X = fitted("dt-nan")
    frame = pd.DataFrame({i: pd.arrays.SparseArray(X[:, i], fill_value=0.0) for i in range(X.shape[1])})
    with pytest.raises(ValueError, match="^Input X contains NaN in a sparse DataFrame: DecisionTreeClassifier sends NaN right"):
        predictor.predict(frame)
    estimator, predictor, X = fitted("gb-binary")
    frame = pd.DataFrame({i: pd.arrays.SparseArray(np.where(X[:, i] > 1, np.nan, X[:, i]), fill_value=0.0) for i in range(X.shape[1])})
    for name in ("predict", "predict_proba", "decision_function"):  # boosting takes no NaN: sklearn's own message
        with pytest.raises(ValueError) as expected:
            getattr(estimator, name)(frame)
        with pytest.raises(ValueError) as got:
            getattr(predictor, name)(frame)
        assert str(got.value) == str(expected.value)
    with pytest.raises(ValueError, match="^Input X contains NaN in a sparse DataFrame: DecisionTreeRegressor sends"):
        predictor.apply(frame)  # its trees take NaN


@pytest.mark.parametrize("case", ["rf-nan", "dt-nan", "et-binary", "gb-multiclass", "gb-regression"])
def test_property_sparse_equals_sklearn_on_tricky_inputs(case: str) -> None:
    """Sparse entries at, around and rounding across the thresholds, stored in any order,
    repeated, float32 or float64, sometimes with a NaN or an infinity."""
    estimator, predictor, _ = fitted(case)
    values = _tricky(_split_values(estimator)).filter(lambda v: abs(v) < 3e38)  # no NaN, no infinity
    n_features = estimator.n_features_in_
    entry = st.tuples(st.integers(0, 3), st.integers(0, n_features - 1), values)

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(
        entries=st.lists(entry, max_size=14),
        fmt=st.sampled_from(["csr-raw", "csc-raw", "coo", "csr", "lil"]),
        dtype=st.sampled_from([np.float32, np.float64]),
        poison=st.sampled_from([None, None, None, np.nan, np.inf]),
    )
    def check(entries: list[tuple[int, int, float]], fmt: str, dtype: Any, poison: float | None) -> None:
        rows = np.array([e[0] for e in entries], dtype=np.int64)
        cols = np.array([e[1] for e in entries], dtype=np.int64)
        data = np.array([e[2] for e in entries], dtype=np.float64)
        if poison is not None and len(data):
            data[-1] = poison
        X = _sparse_from_entries((4, n_features), rows, cols, data.astype(dtype), fmt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow of values near 3.4e38
            assert_same_outputs(estimator, predictor, X)

    check()


# --------------------------------------------------------------------------- bad stores
def _saved(tmp_path: Path) -> Path:
    X, y = make_data("multiclass")
    path = tmp_path / "m"
    treeshard.save(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), path)
    return path


def test_corrupt_chunk_is_an_integrity_error(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    shard = path / "nodes" / "threshold" / "c" / "0"
    data = bytearray(shard.read_bytes())
    data[20] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"^nodes/threshold: chunk 0 of shard nodes/threshold/c/0 does not match its sha256"):
        Predictor(path)
    reseal(path)  # the digest record rewritten to match: the chunk's crc32c still fails
    with pytest.raises(IntegrityError, match="nodes/threshold: chunk checksum mismatch"):
        Predictor(path)


def test_truncated_shard_is_an_integrity_error(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    shard = path / "nodes" / "feature" / "c" / "0"
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(IntegrityError, match="nodes/feature: shard index checksum mismatch"):
        Predictor(path)


def test_declared_dtype_is_checked_before_decoding(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    document = json.loads((path / "zarr.json").read_text())
    document["consolidated_metadata"]["metadata"]["nodes/feature"]["data_type"] = "int64"
    (path / "zarr.json").write_text(json.dumps(document))
    reseal(path)
    with pytest.raises(treeshard.ArrayError, match="nodes/feature: dtype int64, expected int32"):
        Predictor(path)


def test_invalid_tree_is_rejected(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    column = zarr.open_array(zarr.storage.LocalStore(path), path="nodes/left_child_offset", mode="r+")
    column[0] = 0  # the root loses its left child only
    reseal(path)
    with pytest.raises(treeshard.TreeStructureError, match="tree 0, node 0: exactly one child is missing"):
        Predictor(path)


def test_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        Predictor(tmp_path / "nothing.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError):
        Predictor(tmp_path / "empty")


@pytest.mark.parametrize("learning_rate", [np.float32(0.1), np.float64(0.3), np.int64(1)], ids=["float32", "float64", "int64"])
def test_gradient_boosting_with_a_numpy_learning_rate(learning_rate) -> None:
    """numpy hyperparameters are stored tagged (docs/FORMAT.md); the predictor decodes them as load does."""
    X, y = make_data("multiclass")
    for estimator in (GradientBoostingClassifier, GradientBoostingRegressor):
        model = estimator(n_estimators=4, max_depth=2, learning_rate=learning_rate, random_state=0).fit(X, y)
        store = zarr.storage.MemoryStore()
        treeshard.save(model, store)
        predictor = Predictor(store)
        assert_equal_outputs(model.predict(X), predictor.predict(X), estimator.__name__)


# --------------------------------------------------------------------------- exp and log: sklearn's own functions
_DOUBLE_MAX = float(np.finfo(np.float64).max)
#: Where expit's C formula changes regime: 0, subnormals, exp's overflow (log(DBL_MAX)) and underflow, 1 - expit rounding to 0.
EXPIT_EDGES = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308, _DOUBLE_MAX, -_DOUBLE_MAX,
     709.782712893384, -709.782712893384, 709.7827128933841, -709.7827128933841, 745.1332191019412, -745.1332191019412,
     36.7368005696771, -36.7368005696771, 37.0, -37.0, 1e-17, -1e-17]
)


def _float64_bits(draw_bits: int) -> float:
    return float(np.array([draw_bits], dtype=np.uint64).view(np.float64)[0])


def _same_float64(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, any NaN equal to any NaN (scipy and Python need not agree on a NaN's payload)."""
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and a[~nan].tobytes() == b[~nan].tobytes())


def test_expit_is_scipys_at_its_edges_and_on_random_bit_patterns() -> None:
    from scipy.special import expit

    from treeshard.predictor.links import expit as _expit

    rng = np.random.default_rng(0)
    boundary = np.nextafter(-709.782712893384, -np.inf) + np.arange(-200, 200) * 2e-14  # exp(-x) overflows in here
    x = np.concatenate([EXPIT_EDGES, boundary, -boundary, rng.integers(0, 2**64, 200_000, dtype=np.uint64).view(np.float64),
                        rng.normal(scale=40.0, size=100_000)])
    assert _same_float64(_expit(x), expit(x))
    assert _same_float64(_expit(x.reshape(-1, 2)).ravel(), expit(x))  # any shape
    assert _expit(np.empty((0,))).shape == (0,)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered in add:RuntimeWarning")
def test_few_row_expit_is_scipys() -> None:
    """The few-row scorer's expit (the C library's exp, as :func:`links.expit`) on a one-leaf
    model whose score is each value: scipy's bits, at the edges and on random bit patterns."""
    from scipy.special import expit

    from treeshard._kernels import FewRows

    rng = np.random.default_rng(1)
    boundary = np.nextafter(-709.782712893384, -np.inf) + np.arange(-50, 50) * 2e-14
    values = np.concatenate([EXPIT_EDGES, boundary, -boundary, rng.integers(0, 2**64, 3_000, dtype=np.uint64).view(np.float64),
                             rng.normal(scale=40.0, size=3_000)])
    leaf = np.zeros((1, 4), dtype=np.int32)  # one node, a leaf
    for scale in (1.0, 2.0):  # log_loss, and the exponential loss's expit(2 * raw)
        got = []
        for value in values.tolist():
            few = FewRows(leaf, np.zeros(1, np.uint8), np.zeros(1, np.int64), np.array([[value]]), np.empty((0, 0), np.int32), np.empty(0),
                          None, np.zeros(1), n_features=1, depth=0, group=16, max_rows=7, expit_scale=scale)
            got.append(few.expit(np.zeros((1, 1)))[0])
        got = np.array(got)
        expected = expit(scale * (0.0 + values))  # the score is init 0 plus the leaf value
        assert _same_float64(got[:, 1], expected), scale
        assert _same_float64(got[:, 0], 1 - expected), scale


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True) | st.integers(0, 2**64 - 1).map(_float64_bits), min_size=1, max_size=40))
def test_expit_is_scipys_over_the_whole_float64_range(values: list[float]) -> None:
    from scipy.special import expit

    from treeshard.predictor.links import expit as _expit

    x = np.array(values, dtype=np.float64)
    assert _same_float64(_expit(x), expit(x))


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=float(np.finfo(np.float64).eps), max_value=1 - float(np.finfo(np.float64).eps)) | st.sampled_from([0.3, 0.65, np.nextafter(0.3, 0), np.nextafter(0.65, 1), 0.5]))
def test_logit_is_scipys(p: float) -> None:
    from scipy.special import logit

    from treeshard.predictor.links import logit as _logit

    assert np.float64(_logit(p)).tobytes() == logit(np.float64(p)).tobytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    weights=st.lists(st.floats(min_value=1e-300, max_value=1e300), min_size=2, max_size=40),
    n_rows=st.sampled_from([1, 2, 9, 1000]),
)
def test_init_raw_prediction_is_sklearns(weights: list[float], n_rows: int) -> None:
    """The init's raw prediction equals sklearn's for any prior (tiny, clipped, many classes), whatever the batch size."""
    from sklearn._loss.loss import ExponentialLoss, HalfBinomialLoss, HalfMultinomialLoss
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble._gb import _init_raw_predictions

    from treeshard.predictor.links import binary_init as _binary_init, multinomial_init as _multinomial_init

    k = len(weights)
    dummy = DummyClassifier(strategy="prior").fit(np.zeros((k, 1)), np.arange(k), sample_weight=np.array(weights))
    X = np.zeros((n_rows, 1))
    if k == 2:
        for loss, half in ((HalfBinomialLoss(), False), (ExponentialLoss(), True)):
            expected = _init_raw_predictions(X, dummy, loss, use_predict_proba=True)
            assert_equal_outputs(expected, np.full((n_rows, 1), _binary_init(dummy.class_prior_, half=half)), type(loss).__name__)
    with np.errstate(all="ignore"):
        expected = _init_raw_predictions(X, dummy, HalfMultinomialLoss(n_classes=k), use_predict_proba=True)
        got = _multinomial_init(dummy.class_prior_)
    assert_equal_outputs(expected, np.tile(got, (n_rows, 1)), "multinomial")


def test_gradient_boosting_equals_sklearn_on_another_simd_level() -> None:
    """With numpy's SIMD dispatch off (``np.exp``/``np.log`` round differently), every gradient
    boosting output still equals sklearn's computed in that process."""
    run_without_simd(__file__, "test_outputs_equal_sklearn and gb-")


def test_softmax_sums_rows_as_sklearn_whatever_the_layout() -> None:
    """Raw scores in any memory layout give sklearn's softmax of C-ordered raw predictions."""
    from sklearn.utils.extmath import softmax

    from treeshard.predictor.links import softmax as _softmax

    raw = np.random.default_rng(0).normal(scale=3.0, size=(2000, 12))
    expected = softmax(raw)
    for layout in (raw, np.asfortranarray(raw), np.hstack([raw, raw])[:, :12]):
        assert_equal_outputs(expected, _softmax(layout), "softmax")
