"""The cross-version matrix: stores written under each sklearn load under every other.

Run by ``make compat`` (``tests/compat/run.py``), once per sklearn version, in
that version's virtualenv with treeshard on ``PYTHONPATH``:

    python tests/compat/matrix.py write GOLDEN REFS   # writer: golden stores (once) + outputs
    python tests/compat/matrix.py read GOLDEN REFS OUT.json   # reader: load and compare everything

``write`` saves, the first time a version is seen, one tiny model per estimator
id as ``GOLDEN/<version>/<id>/`` (directory store) and ``<id>.zip``, with
``<id>.npz`` holding the query rows and the outputs the format fixes exactly
(committed, kept forever). Every time, it refits the same model (same data,
same seed), checks it reproduces the committed outputs bit for bit, and writes
all its outputs, those through ``exp``/``log`` included, to ``REFS/<version>/``:
computed on this machine, never compared as bits recorded elsewhere.

``read`` loads every golden store of every version (directory and zip, lazy
and eager, and through the :class:`treeshard.Predictor`), compares every
method with the writer's outputs and records, per cell, whether all were
exact, within one of the documented bounds (:data:`EXCEPTIONS`), refused with
the documented error (:func:`expected_refusal`; the Predictor must still read
it), or failed, and whether loading warned as
:func:`treeshard.compat.pair_is_exact` says.
A new estimator family is one more entry in :data:`CASES`; a new pipeline
case one more entry in ``pipeline_cases.CASES`` (read by
:func:`_read_pipeline_case`: schema steps under every version, skops steps
on the writer's minor only).
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import pipeline_cases  # tests/compat/ (the script's directory is on sys.path)


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    module: str
    params: dict[str, Any]
    task: str  # see data()
    #: Methods whose outputs go through exp/log: recomputed by the writer on this machine.
    recomputed: tuple[str, ...] = ()
    #: The sklearn class, when the case id is not its name (a second case of one estimator).
    estimator: str | None = None


_TREE = {"max_depth": 3, "random_state": 0}
_ENSEMBLE = {"n_estimators": 3, "max_depth": 3, "random_state": 0}
_HIST = {"max_iter": 3, "max_depth": 3, "random_state": 0}
CASES: dict[str, Case] = {
    "RandomForestClassifier": Case("sklearn.ensemble", _ENSEMBLE, "string", ("predict_log_proba",)),
    "RandomForestRegressor": Case("sklearn.ensemble", _ENSEMBLE, "regression"),
    "ExtraTreesClassifier": Case("sklearn.ensemble", {**_ENSEMBLE, "bootstrap": True}, "multiclass", ("predict_log_proba",)),
    "ExtraTreesRegressor": Case("sklearn.ensemble", _ENSEMBLE, "multioutput"),
    "GradientBoostingClassifier": Case(
        "sklearn.ensemble", _ENSEMBLE, "multiclass", ("predict_proba", "predict_log_proba", "decision_function")
    ),
    "GradientBoostingRegressor": Case("sklearn.ensemble", {**_ENSEMBLE, "loss": "huber"}, "regression"),
    "DecisionTreeClassifier": Case("sklearn.tree", _TREE, "nan", ("predict_log_proba",)),
    "DecisionTreeRegressor": Case("sklearn.tree", _TREE, "nan_regression"),
    "ExtraTreeClassifier": Case("sklearn.tree", _TREE, "multiclass", ("predict_log_proba",)),
    "ExtraTreeRegressor": Case("sklearn.tree", _TREE, "regression"),
    "HistGradientBoostingClassifier": Case("sklearn.ensemble", _HIST, "nan", ("predict_proba",)),
    "HistGradientBoostingRegressor": Case("sklearn.ensemble", _HIST, "nan_regression"),
    # Integer category codes in a float column, the categorical form sklearn 1.3 can express
    # (1.4+ encodes them with its _preprocessor, which 1.3 lacks: those stores are refused there).
    "HistGradientBoostingClassifier-categorical": Case(
        "sklearn.ensemble", {**_HIST, "categorical_features": [0]}, "categorical", ("predict_proba",), "HistGradientBoostingClassifier"
    ),
    # Unsupervised (the target is ignored); each tree sees 3 of the 4 features.
    "IsolationForest": Case(
        "sklearn.ensemble", {"n_estimators": 3, "max_samples": 40, "max_features": 0.75, "random_state": 0}, "regression", ("score_samples", "decision_function")
    ),
}
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "score_samples", "apply", "decision_path", "estimators_samples_")
PREDICTOR_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "score_samples", "apply")


#: Estimators whose predict_log_proba is np.log(predict_proba) in every supported version.
_LOG_OF_PROBA = frozenset(
    ["RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier", "ExtraTreeClassifier"]
)


def data(task: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(7)
    X = np.round(rng.normal(size=(80, 4)), 2)
    score = X[:, 0] - X[:, 1] + 0.5 * X[:, 2]
    if task.startswith("nan"):
        X[::9, 1] = np.nan
    if task == "string":
        return X, np.array(["low", "mid", "high"])[np.digitize(score, [-0.5, 0.5])]
    if task == "categorical":  # feature 0: category codes 0-4 (NaN: missing), which decide the label
        X[:, 0] = rng.randint(0, 5, size=len(X))
        X[::11, 0] = np.nan
        return X, ((np.nan_to_num(X[:, 0], nan=2.0) % 3) + (X[:, 1] > 0.8)).astype(np.int64)
    if task in ("multiclass", "nan"):
        return X, np.digitize(score, [-0.7, 0.0, 0.7]).astype(np.int64)
    if task == "multioutput":
        return X, np.column_stack([score, X[:, 3]])
    return X, score * 3.0


def estimator_of(case_id: str) -> str:
    """The sklearn class name of a case (its id, unless the case names another)."""
    case = CASES.get(case_id)
    return case.estimator if case is not None and case.estimator else case_id


def fit(case_id: str) -> tuple[Any, np.ndarray]:
    import importlib

    case = CASES[case_id]
    cls = getattr(importlib.import_module(case.module), estimator_of(case_id))
    X, y = data(case.task)
    return cls(**case.params).fit(X, y), X


def outputs(model: Any, X: np.ndarray, methods: tuple[str, ...] = METHODS) -> dict[str, np.ndarray]:
    """Every method's output as plain arrays (a forest's decision_path as its dense indicator)."""
    out = {}
    for method in methods:
        if method == "estimators_samples_":
            try:
                samples = model.estimators_samples_
            except AttributeError:
                continue
            out[method] = np.concatenate([np.asarray(s, dtype=np.int64) for s in samples])
            continue
        if not hasattr(model, method):
            continue
        with np.errstate(divide="ignore"):  # predict_log_proba of a zero probability
            value = getattr(model, method)(X)
        if method == "decision_path":
            value = (value[0] if isinstance(value, tuple) else value).toarray()
        if isinstance(value, list):  # multi-output predict_proba
            value = np.concatenate([np.asarray(v) for v in value], axis=1)
        out[method] = np.asarray(value)
    return out


# --------------------------------------------------------------------------- exceptions
def _crosses_1_4(writer: tuple[int, int], reader: tuple[int, int]) -> bool:
    return (writer < (1, 4)) != (reader < (1, 4))


def _within_ulps(n: int, atol: float = 0.0) -> Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[str | None, str]]:
    """Each value within ``n`` ulp of the expected one, or within ``atol`` (values near 0)."""

    def check(expected: np.ndarray, actual: np.ndarray, X: np.ndarray) -> tuple[str | None, str]:
        with np.errstate(invalid="ignore"):  # -inf log-probabilities compare equal below
            diff = np.where(expected == actual, 0.0, np.abs(expected - actual))
        ulps = diff / np.spacing(np.maximum(np.abs(expected), np.abs(actual)))
        ok = bool(np.all((ulps <= n) | (diff <= atol)))
        bound = f"{n} ulp" + (f" or {atol:g}" if atol else "")
        return (None if ok else "too far", f"{float(np.max(ulps)):.0f} ulp, {float(np.max(diff)):.2g} absolute (bound {bound})")

    return check


def _row_shift(atol: float) -> Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[str | None, str]]:
    """Each row moved by one constant (the same for every class of the row)."""

    def check(expected: np.ndarray, actual: np.ndarray, X: np.ndarray) -> tuple[str | None, str]:
        d = (actual - expected).reshape(len(actual), -1)
        spread = float(np.max(np.abs(d - d[:, :1])))
        shift = float(np.max(np.abs(d)))
        return (None if spread <= atol else "too far", f"shift up to {shift:.3g}, varying within a row by {spread:.3g} (bound {atol})")

    return check


def _same_without_nan_rows(expected: np.ndarray, actual: np.ndarray, X: np.ndarray) -> tuple[str | None, str]:
    """Rows without a missing value are identical; rows with one may take another path."""
    nan_rows = np.isnan(X).any(axis=1)
    differ = np.flatnonzero((expected != actual).any(axis=1))
    outside = [int(i) for i in differ if not nan_rows[i]]
    return (None if not outside else "differs on rows without NaN", f"{len(differ)} of {int(nan_rows.sum())} rows with NaN differ")


def _crosses_1_8(writer: tuple[int, int], reader: tuple[int, int]) -> bool:
    return (writer < (1, 8)) != (reader < (1, 8))


def _always(writer: tuple[int, int], reader: tuple[int, int]) -> bool:
    return True


@dataclass(frozen=True)
class Exception_:
    name: str
    estimator_id: str
    methods: tuple[str, ...]
    applies: Callable[[tuple[int, int], tuple[int, int]], bool]
    check: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[str | None, str]]
    #: Loading warns across it: the model predicts otherwise there. False for changes in
    #: how a version computes an output of any model (its own fits too), the trees unchanged.
    warns: bool = True


#: sklearn's own changes (docs/COMPATIBILITY.md): the only outputs allowed to differ.
EXCEPTIONS = (
    Exception_("GB-LOSS-1.4", "GradientBoostingClassifier", ("predict_proba",), _crosses_1_4, _within_ulps(8)),
    Exception_("GB-LOSS-1.4", "GradientBoostingClassifier", ("predict_log_proba",), _crosses_1_4, _within_ulps(16)),
    Exception_("GB-LOSS-1.4", "GradientBoostingClassifier", ("decision_function",), _crosses_1_4, _row_shift(1e-12)),
    Exception_("PATH-NAN-1.8", "DecisionTreeClassifier", ("decision_path",), _crosses_1_8, _same_without_nan_rows, warns=False),
    Exception_("PATH-NAN-1.8", "DecisionTreeRegressor", ("decision_path",), _crosses_1_8, _same_without_nan_rows, warns=False),
)
#: Not sklearn's: numpy 1.26 and 2.x compute exp/log differently in the last bits. Applies
#: only to gradient boosting's outputs through exp/log, when the writer's numpy differs.
NUMPY_LIBM = (
    Exception_(
        "NUMPY-LIBM", "GradientBoostingClassifier", ("predict_proba", "predict_log_proba", "decision_function"), _always, _within_ulps(8, 1e-14), warns=False
    ),
    # sklearn._loss's softmax and expit are numpy's exp.
    Exception_("NUMPY-LIBM", "HistGradientBoostingClassifier", ("predict_proba",), _always, _within_ulps(8, 1e-14), warns=False),
    # score_samples is -2 ** (-depths / c), numpy's power.
    Exception_("NUMPY-LIBM", "IsolationForest", ("score_samples", "decision_function"), _always, _within_ulps(8, 1e-14), warns=False),
)
WARNING_EXCEPTIONS = frozenset(exc.name for exc in EXCEPTIONS if exc.warns)


def _labels_agree(expected: np.ndarray, actual: np.ndarray, method: str) -> bool:
    """The labels these scores predict are the same (argmax per row; sign for 1-D scores)."""
    if expected.ndim == 1:
        return bool(np.array_equal(expected > 0, actual > 0)) if method == "decision_function" else True
    return bool(np.array_equal(np.argmax(expected, axis=1), np.argmax(actual, axis=1)))


def version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def compare(
    estimator_id: str,
    method: str,
    expected: np.ndarray,
    actual: np.ndarray,
    writer: str,
    reader: str,
    X: np.ndarray | None = None,
    *,
    other_numpy: bool = False,
) -> tuple[str, str]:
    """``(status, detail)``: "exact", "bounded" (a documented exception held) or "fail".

    ``other_numpy``: the expected outputs were computed by another numpy version."""
    if expected.shape != actual.shape or expected.dtype.kind != actual.dtype.kind:
        return "fail", f"{actual.dtype}{actual.shape} != {expected.dtype}{expected.shape}"
    if expected.dtype.kind == "f":
        if np.array_equal(expected, actual, equal_nan=True) and expected.dtype == actual.dtype:
            return "exact", ""
    elif np.array_equal(expected, actual):
        return "exact", ""
    w, r = version_tuple(writer), version_tuple(reader)
    for exc in EXCEPTIONS + (NUMPY_LIBM if other_numpy else ()):
        if exc.estimator_id == estimator_id and method in exc.methods and exc.applies(w, r):
            problem, measure = exc.check(expected, actual, X)
            if problem is None and _labels_agree(expected, actual, method):
                return "bounded", f"{exc.name}: {measure}"
            return "fail", f"{exc.name}: {measure}"
    if expected.dtype.kind == "f":
        diff = float(np.nanmax(np.abs(expected - actual)))
        return "fail", f"max abs diff {diff:.3g}"
    return "fail", f"{int(np.sum(expected != actual))} values differ"


# --------------------------------------------------------------------------- write
def write(golden: Path, refs: Path) -> None:
    import platform

    import sklearn

    import treeshard

    version = sklearn.__version__
    out = golden / version
    if not out.exists():
        tmp = golden / f".{version}.partial"
        tmp.mkdir(parents=True, exist_ok=True)
        manifest = {
            "sklearn": version,
            "numpy": np.__version__,
            "treeshard": treeshard.__version__,
            "python": platform.python_version(),
            "cases": {},
        }
        for case_id in _writable_cases():
            manifest["cases"][case_id] = _write_case(tmp, case_id, version)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        tmp.rename(out)
    else:
        # A case added to CASES after this version's stores were written: add its stores
        # beside the others (never rewriting one), noting what wrote them.
        manifest = json.loads((out / "manifest.json").read_text())
        added = [case_id for case_id in _writable_cases() if case_id not in manifest["cases"]]
        for case_id in added:
            for stale in (out / case_id, out / f"{case_id}.zip", out / f"{case_id}.npz"):
                if stale.exists():
                    sys.exit(f"{version} {case_id}: {stale} exists but is not in the manifest; remove it or add it by hand")
            entry = _write_case(out, case_id, version)
            entry.update({"numpy": np.__version__, "treeshard": treeshard.__version__, "python": platform.python_version()})
            manifest["cases"][case_id] = entry
        if added:
            (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    # The writer's own outputs, recomputed here from a refit that must match the golden bits.
    ref_dir = refs / version
    ref_dir.mkdir(parents=True, exist_ok=True)
    for estimator_id in json.loads((out / "manifest.json").read_text())["cases"]:
        if estimator_id in pipeline_cases.CASES:
            _write_pipeline_refs(out, ref_dir, estimator_id, version)
            continue
        model, X = fit(estimator_id)
        every = outputs(model, X)
        with np.load(out / f"{estimator_id}.npz", allow_pickle=False) as npz:
            committed = {k: npz[k] for k in npz.files}
        if not np.array_equal(committed["X"], X, equal_nan=True):
            sys.exit(f"{version} {estimator_id}: the query rows differ from the golden ones")
        for method, value in committed.items():
            if method != "X" and compare(estimator_of(estimator_id), method, value, every[method], version, version, X)[0] != "exact":
                sys.exit(f"{version} {estimator_id}.{method}: a refit does not reproduce the golden outputs")
        np.savez(ref_dir / f"{estimator_id}.npz", X=X, **every)
    (ref_dir / "numpy.txt").write_text(np.__version__)
    print(f"compat: {version}: golden stores in {out}, reference outputs in {ref_dir}")


def _writable_cases() -> list[str]:
    """Every case id this virtualenv can write (skops cases need ``treeshard[skops]``)."""
    import importlib.util

    has_skops = importlib.util.find_spec("skops") is not None
    skipped = [case_id for case_id, case in pipeline_cases.CASES.items() if case.skops and not has_skops]
    if skipped:
        print(f"compat: skops is not installed here: {', '.join(skipped)} not written", file=sys.stderr)
    return [*CASES, *(case_id for case_id in pipeline_cases.CASES if case_id not in skipped)]


def _write_pipeline_case(directory: Path, case_id: str, version: str) -> dict[str, Any]:
    import treeshard

    case = pipeline_cases.CASES[case_id]
    model, X = pipeline_cases.fit(case_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skops fallback's warning, by design
        for suffix in ("", ".zip"):
            treeshard.save(model, directory / f"{case_id}{suffix}", metadata={"golden": case_id, "sklearn": version})
    exact = {k: v for k, v in pipeline_cases.outputs(model, X).items() if k not in case.recomputed}
    np.savez_compressed(directory / f"{case_id}.npz", **pipeline_cases.pack(X), **exact)
    return {"methods": sorted(exact), "recomputed": list(case.recomputed), "pipeline": True}


def _write_pipeline_refs(golden: Path, ref_dir: Path, case_id: str, version: str) -> None:
    """A refit of a pipeline case reproduces its committed outputs; all its outputs go to ``ref_dir``."""
    model, X = pipeline_cases.fit(case_id)
    every = pipeline_cases.outputs(model, X)
    with np.load(golden / f"{case_id}.npz", allow_pickle=False) as npz:
        committed = {k: npz[k] for k in npz.files}
    if not _same_rows(pipeline_cases.unpack(committed), X):
        sys.exit(f"{version} {case_id}: the query rows differ from the golden ones")
    for method, value in committed.items():
        if method not in pipeline_cases.PACKED and compare(case_id, method, value, every[method], version, version)[0] != "exact":
            sys.exit(f"{version} {case_id}.{method}: a refit does not reproduce the golden outputs")
    np.savez(ref_dir / f"{case_id}.npz", **pipeline_cases.pack(X), **every)


def _same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and all(x == y or (x != x and y != y) for x, y in zip(a.reshape(-1), b.reshape(-1)))


def _write_case(directory: Path, case_id: str, version: str) -> dict[str, Any]:
    """Save one case's golden stores and exact outputs in ``directory``; its manifest entry."""
    import treeshard

    if case_id in pipeline_cases.CASES:
        return _write_pipeline_case(directory, case_id, version)
    case = CASES[case_id]
    model, X = fit(case_id)
    for suffix in ("", ".zip"):
        treeshard.save(model, directory / f"{case_id}{suffix}", metadata={"golden": case_id, "sklearn": version})
    exact = {k: v for k, v in outputs(model, X).items() if k not in case.recomputed}
    np.savez_compressed(directory / f"{case_id}.npz", X=X, **exact)
    return {"methods": sorted(exact), "recomputed": list(case.recomputed)}


# --------------------------------------------------------------------------- read
def read(golden: Path, refs: Path, result_path: Path) -> None:
    import sklearn

    import treeshard
    from treeshard.adapters.families import family_of
    from treeshard.compat import pair_is_exact

    reader = sklearn.__version__
    cells = []
    for writer_dir in sorted(p for p in golden.iterdir() if p.is_dir() and p.name[:1].isdigit()):
        writer = writer_dir.name
        manifest = json.loads((writer_dir / "manifest.json").read_text())
        for case_id, entry in manifest["cases"].items():
            if case_id in pipeline_cases.CASES:
                cells.append(_read_pipeline_case(writer_dir, refs, case_id, writer, reader))
                continue
            estimator_id = estimator_of(case_id)
            store_config = _config(writer_dir / case_id)
            encoding = store_config["trees"]["value_encoding"]
            refusal = expected_refusal(case_id, store_config, reader)
            ref_file = refs / writer / f"{case_id}.npz"
            source = ref_file if ref_file.exists() else writer_dir / f"{case_id}.npz"
            with np.load(source, allow_pickle=False) as npz:
                expected = {k: npz[k] for k in npz.files}
            X = expected.pop("X")
            numpy_file = refs / writer / "numpy.txt"
            other_numpy = ref_file.exists() and numpy_file.read_text() != np.__version__
            if "predict_proba" in expected and estimator_id in _LOG_OF_PROBA:
                with np.errstate(divide="ignore"):  # sklearn's predict_log_proba, recomputed here
                    expected["predict_log_proba"] = np.log(expected["predict_proba"])
            results, warned_ok = [], True
            for store in (writer_dir / case_id, writer_dir / f"{case_id}.zip"):
                for mode in ("eager", "lazy", "predictor"):
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        try:
                            model = treeshard.Predictor(store) if mode == "predictor" else treeshard.load(store, lazy=mode == "lazy")
                            got = outputs(model, X, PREDICTOR_METHODS if mode == "predictor" else METHODS)
                        except Exception as exc:  # noqa: BLE001 - a matrix cell records any failure
                            said = f"{type(exc).__name__}: {exc}"
                            if mode != "predictor" and refusal is not None and said == refusal:
                                results.append(("refused", f"{mode} {store.suffix or 'dir'}: refused: {said}"[:300]))
                            else:
                                results.append(("fail", f"{mode} {store.suffix or 'dir'}: {said}"[:300]))
                            continue
                    if mode != "predictor" and refusal is not None:
                        results.append(("fail", f"{mode} {store.suffix or 'dir'}: loaded, expected the refusal {refusal!r}"))
                        continue
                    version_warnings = [w for w in caught if issubclass(w.category, treeshard.SklearnVersionWarning)]
                    if mode != "predictor":
                        should_warn = writer != reader and not pair_is_exact(estimator_id, writer, reader, value_encoding=encoding)
                        if len(version_warnings) != (1 if should_warn else 0):
                            warned_ok = False
                            results.append(("fail", f"{mode}: {len(version_warnings)} version warnings, expected {int(should_warn)}"))
                    # The Predictor computes as sklearn 1.4+ does (it imports no sklearn).
                    as_reader = reader if mode != "predictor" else "1.9"
                    for method, value in expected.items():
                        if method not in got:
                            if mode != "predictor" and method != "estimators_samples_":
                                results.append(("fail", f"{mode}: no {method}"))
                            continue
                        status, detail = compare(estimator_id, method, value, got[method], writer, as_reader, X, other_numpy=other_numpy)
                        results.append((status, f"{mode} {store.suffix or 'dir'} {method}: {detail}" if detail else ""))
            statuses = {s for s, _ in results}
            status = "fail" if "fail" in statuses else "refused" if "refused" in statuses else "bounded" if "bounded" in statuses else "exact"
            warning_changes = {d.split(":")[1].strip() for s_, d in results if s_ == "bounded" and not d.startswith("predictor")}
            if warning_changes & WARNING_EXCEPTIONS and pair_is_exact(estimator_id, writer, reader, value_encoding=encoding):
                status, results = "fail", results + [("fail", f"{sorted(warning_changes)}, but loading does not warn")]
            # Exact everywhere must mean no warning, and a documented difference a warning (without
            # the writer's recomputed outputs, exp/log outputs were not compared: no verdict).
            if status == "exact" and ref_file.exists() and writer != reader and not pair_is_exact(estimator_id, writer, reader, value_encoding=encoding):
                status, results = "fail", results + [("fail", "exact, but pair_is_exact says otherwise (a needless warning)")]
            cells.append(
                {
                    "writer": writer,
                    "reader": reader,
                    "estimator": case_id,
                    "family": family_of(estimator_id),
                    "status": status,
                    "recomputed": ref_file.exists(),
                    "details": sorted({d for s, d in results if s != "exact" and d})[:80],
                    "warned_ok": warned_ok,
                }
            )
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps({"reader": reader, "numpy": np.__version__, "cells": cells}, indent=1) + "\n")
    bad = [c for c in cells if c["status"] == "fail"]
    print(f"compat: reader {reader}: {len(cells)} cells, {len(bad)} failed")


def _read_pipeline_case(writer_dir: Path, refs: Path, case_id: str, writer: str, reader: str) -> dict[str, Any]:
    """One cell: a pipeline store of ``writer`` loaded here (eager, lazy, the Predictor) against the writer's outputs.

    A case with a skops step must load on the writer's minor version and be refused, with the
    documented error, on any other (the Predictor refuses it everywhere)."""
    import treeshard

    case = pipeline_cases.CASES[case_id]
    ref_file = refs / writer / f"{case_id}.npz"
    source = ref_file if ref_file.exists() else writer_dir / f"{case_id}.npz"
    with np.load(source, allow_pickle=False) as npz:
        expected = {k: npz[k] for k in npz.files}
    X = pipeline_cases.unpack(expected)
    for name in pipeline_cases.PACKED:
        expected.pop(name, None)
    other_numpy = ref_file.exists() and (refs / writer / "numpy.txt").read_text() != np.__version__
    refusal = None
    if case.skops and version_tuple(writer) != version_tuple(reader):
        refusal = pipeline_cases.skops_refusal(writer, reader)
    should_warn = pipeline_cases.loading_warns(writer_dir / case_id, writer, reader)
    results = []
    for store in (writer_dir / case_id, writer_dir / f"{case_id}.zip"):
        where = store.suffix or "dir"
        for mode in ("eager", "lazy", "predictor"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    if mode == "predictor":
                        got = pipeline_cases.predictor_outputs(treeshard.Predictor(store), X)
                    else:
                        got = pipeline_cases.outputs(treeshard.load(store, lazy=mode == "lazy"), X)
                except Exception as exc:  # noqa: BLE001 - a matrix cell records any failure
                    said = f"{type(exc).__name__}: {exc}"
                    if mode == "predictor" and case.skops and said == pipeline_cases.PREDICTOR_REFUSAL:
                        continue
                    if mode != "predictor" and refusal is not None and said == refusal:
                        results.append(("refused", f"{mode} {where}: refused: {said}"[:300]))
                    else:
                        results.append(("fail", f"{mode} {where}: {said}"[:300]))
                    continue
            if mode == "predictor" and case.skops:
                results.append(("fail", f"{mode} {where}: served a pipeline with a skops step"))
                continue
            if refusal is not None and mode != "predictor":
                results.append(("fail", f"{mode} {where}: loaded, expected the refusal {refusal!r}"))
                continue
            version_warnings = [w for w in caught if issubclass(w.category, treeshard.SklearnVersionWarning)]
            if mode != "predictor" and len(version_warnings) != int(should_warn):
                results.append(("fail", f"{mode}: {len(version_warnings)} version warnings, expected {int(should_warn)}"))
            for method, value in expected.items():
                if method not in got:
                    if mode != "predictor":
                        results.append(("fail", f"{mode}: no {method}"))
                    continue
                status, detail = compare(case_id, method, value, got[method], writer, reader, other_numpy=other_numpy)
                results.append((status, f"{mode} {where} {method}: {detail}" if detail else ""))
    statuses = {s for s, _ in results}
    status = "fail" if "fail" in statuses else "refused" if "refused" in statuses else "bounded" if "bounded" in statuses else "exact"
    return {
        "writer": writer,
        "reader": reader,
        "estimator": case_id,
        "family": "pipeline-skops" if case.skops else "pipeline",
        "status": status,
        "recomputed": ref_file.exists(),
        "details": sorted({d for s, d in results if s != "exact" and d})[:80],
        "warned_ok": not any("version warnings" in d for _, d in results),
    }


def expected_refusal(case_id: str, config: dict[str, Any], reader: str) -> str | None:
    """The error an sklearn ``reader`` must raise loading this store (by a documented rule), if any."""
    # HGB-PREPROCESSOR-1.4: 1.4+ encodes categorical features with a _preprocessor, which 1.3 lacks.
    if estimator_of(case_id).startswith("HistGradientBoosting") and version_tuple(reader) < (1, 4):
        if config["fitted"].get("_preprocessor") is not None:
            return (
                "UnsupportedEstimatorError: the store encodes categorical features with a preprocessor, "
                f"which needs scikit-learn >= 1.4 (installed: {reader}, which reads numeric category codes only)"
            )
    return None


def _config(store: Path) -> dict[str, Any]:
    from treeshard.reader import StoreReader

    reader = StoreReader(store)
    try:
        return reader.config.to_json()
    finally:
        reader.close()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "write":
        write(Path(args[0]), Path(args[1]))
    elif command == "read":
        read(Path(args[0]), Path(args[1]), Path(args[2]))
    else:
        sys.exit(f"unknown command {command!r}")
