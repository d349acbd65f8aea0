"""Compiled engine (issue 17): ``treeshard.Predictor`` against sklearn at every batch size.

On RF-L and GB-M (``benchmarks/models.py``), the Predictor and the fitted
sklearn estimator score the same float32 rows (RF-L's training data, tiled
up to a million rows) with ``predict_proba``, both single-threaded
(``n_jobs=None``) and on every core (``n_jobs=-1``; sklearn's gradient
boosting has no ``n_jobs`` and always scores in one thread). Every output is
checked with ``np.array_equal`` before its time counts. Times are medians of
alternating rounds (the machine is shared: compare the columns of one run,
never across runs)::

    python benchmarks/engine.py                       # 1 to 1,000,000 rows, RF-L and GB-M
    python benchmarks/engine.py --rows 1 100 1000     # a quick look
    python benchmarks/engine.py --models GB-M --repeat 3
    python benchmarks/engine.py --first-prediction --models RF-L --repeat 7
    python benchmarks/engine.py --models GB-M --baseline  # and without the complete layout
    python benchmarks/engine.py --shallow             # small shallow models, with and without it
    python benchmarks/engine.py --one-row --repeat 7  # one-row latency: sklearn, onnxruntime, treelite
    python benchmarks/engine.py --one-row-varied --repeat 5  # over 1,000 different rows, against onnxruntime

One-row latency is the median of many single-row calls on the same row
(``--one-row-varied``: on different rows, whose paths are not in cache).
``--first-prediction`` compares, in fresh processes, a lazy ``treeshard.load``
plus its first one-row prediction (which builds the engine) with a
``Predictor`` load plus its first prediction.

asv runs :class:`EngineScoring` (``tests/test_bench.py`` runs it once on the tiny model).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import models  # noqa: E402

ROWS = (1, 100, 1_000, 100_000, 1_000_000)
N_JOBS = (None, -1)


@functools.cache
def _reference_rows() -> Any:
    import numpy as np

    return np.ascontiguousarray(models._reference_data()[0], dtype=np.float32)


def _rows(n: int) -> Any:
    """``n`` float32 rows of the reference data (tiled past its 100,000 rows)."""
    import numpy as np

    data = _reference_rows()
    return np.ascontiguousarray(np.resize(data, (n, data.shape[1])))


def _seconds(fn: Any, X: Any, budget_s: float) -> tuple[float, Any]:
    """Seconds per call (as many calls as fit in ``budget_s``, at least one) and the last output."""
    calls, start = 0, time.perf_counter()
    while True:
        out = fn(X)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return elapsed / calls, out


def measure(name: str, rows: tuple[int, ...], repeat: int, *, baseline: bool = False) -> list[dict[str, Any]]:
    """Per (n_jobs, rows): median seconds of the Predictor and of sklearn, and their ratio; with
    ``baseline``, also of the Predictor without the complete layout of shallow trees (the node
    table's walks, as before it)."""
    import numpy as np

    import treeshard

    cached = models.ensure(name, refresh=False)
    estimator = cached.load_estimator()
    predictor = treeshard.Predictor(cached.path("treeshard-lz4"))
    engines = {"treeshard": predictor}
    if baseline and predictor._complete is not None:  # deep models have no complete layout: nothing to compare
        engines["before"] = treeshard.Predictor(cached.path("treeshard-lz4"))
        engines["before"]._complete = None
    out = []
    for n_jobs in N_JOBS:
        if hasattr(estimator, "n_jobs"):
            estimator.n_jobs = n_jobs
        for engine in engines.values():
            engine.n_jobs = n_jobs
        for n in rows:
            X = _rows(n)
            budget = 0.2 if n <= 1_000 else 0.0  # large batches: one call per round
            rounds = repeat if n <= 100_000 else max(1, repeat // 3)
            times: dict[str, list[float]] = {path: [] for path in (*engines, "sklearn")}
            for _ in range(rounds):
                outputs = {}
                for path, engine in engines.items():
                    seconds, outputs[path] = _seconds(engine.predict_proba, X, budget)
                    times[path].append(seconds)
                seconds, theirs = _seconds(estimator.predict_proba, X, budget)
                times["sklearn"].append(seconds)
                for path, mine in outputs.items():
                    if not np.array_equal(mine, theirs):
                        raise AssertionError(f"{name}, {n} rows: the Predictor ({path}) differs from sklearn")
            medians = {path: statistics.median(t) for path, t in times.items()}
            out.append({"model": name, "n_jobs": n_jobs, "rows": n, **medians, "speedup": medians["sklearn"] / medians["treeshard"]})
            print(_line(out[-1]), flush=True)
    return out


def _one_row_setup(name: str) -> tuple[Any, Any, Any, Any]:
    """The cached model ``name``: its entry, sklearn's estimator (``n_jobs=None``), its Predictor and one row."""
    import treeshard

    cached = models.ensure(name, refresh=False)
    estimator = cached.load_estimator()
    if hasattr(estimator, "n_jobs"):
        estimator.n_jobs = None
    return cached, estimator, treeshard.Predictor(cached.path("treeshard-lz4")), _rows(1)


def latency(name: str, calls: int = 2_000) -> dict[str, float]:
    """Median seconds of a one-row ``predict_proba``: Predictor and sklearn (``n_jobs=None``)."""
    _, estimator, predictor, row = _one_row_setup(name)
    result = {}
    for path, fn, n in (("treeshard", predictor.predict_proba, calls), ("sklearn", estimator.predict_proba, max(20, calls // 100))):
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            fn(row)
            samples.append(time.perf_counter() - start)
        result[path] = statistics.median(samples)
    return result


def one_row_peers(name: str, rounds: int, calls: int = 1_000) -> dict[str, Any]:
    """One-row latency of the Predictor, sklearn (``n_jobs=None``), onnxruntime and treelite
    (GTIL) on the same float32 row, in one process: per round, ``calls`` single calls of each
    (``calls // 20`` for sklearn), round after round alternating; medians of the rounds'
    medians, in seconds. ``differ``: of the reference model's 1,000 rows, the labels (and
    probability rows, with their largest difference for the float32 peers) that differ from sklearn's. A peer whose package
    or cached file is missing is left out.
    """
    import numpy as np

    cached, estimator, predictor, row = _one_row_setup(name)
    batch = np.load(cached.rows).astype(np.float32)
    ways: dict[str, Any] = {
        "Predictor predict": predictor.predict,
        "Predictor predict_proba": predictor.predict_proba,
        "sklearn predict": estimator.predict,
        "sklearn predict_proba": estimator.predict_proba,
    }
    outputs: dict[str, Any] = {}
    onnx_path = cached.path("onnx")
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None and onnx_path.is_file():
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        name_in = session.get_inputs()[0].name
        label, proba = (o.name for o in session.get_outputs()[:2])
        ways["onnxruntime label"] = lambda X: session.run([label], {name_in: X})[0]
        ways["onnxruntime probabilities"] = lambda X: session.run([proba], {name_in: X})[0]
    treelite_path = cached.path("treelite")
    try:
        import treelite
    except ImportError:
        treelite = None
    if treelite is not None and treelite_path.is_file():
        forest = treelite.Model.deserialize(str(treelite_path))
        ways["treelite (GTIL) predict"] = lambda X: treelite.gtil.predict(forest, X)
    for way, fn in ways.items():
        outputs[way] = fn(batch)
    differ = {
        "Predictor predict": int(np.count_nonzero(outputs["Predictor predict"] != outputs["sklearn predict"])),
        "Predictor predict_proba": int(np.count_nonzero((outputs["Predictor predict_proba"] != outputs["sklearn predict_proba"]).any(axis=1))),
    }
    if "onnxruntime label" in outputs:
        differ["onnxruntime label"] = int(np.count_nonzero(outputs["onnxruntime label"].ravel() != outputs["sklearn predict"]))
        differ["onnxruntime probabilities"] = _max_difference(outputs["onnxruntime probabilities"], outputs["sklearn predict_proba"])
    if "treelite (GTIL) predict" in outputs:
        got = outputs["treelite (GTIL) predict"].reshape(len(batch), -1)
        differ["treelite (GTIL) predict"] = _max_difference(got, outputs["sklearn predict_proba"])
    samples: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, fn in ways.items():
            n = calls // 20 if way.startswith("sklearn") else calls
            times = []
            for _ in range(n):
                start = time.perf_counter()
                fn(row)
                times.append(time.perf_counter() - start)
            samples[way].append(statistics.median(times))
    return {"seconds": {way: statistics.median(values) for way, values in samples.items()}, "differ": differ}


def one_row_varied(name: str, rounds: int, n_rows: int = 1_000) -> dict[str, float]:
    """One-row ``predict_proba`` over ``n_rows`` different float32 rows of the reference data
    (each row's path through the trees is not in cache as with the same row over and over):
    the Predictor and onnxruntime's probabilities, each row one timed call; per round the
    median over rows, rounds alternating; medians of the rounds, in seconds."""
    import numpy as np
    import treeshard

    cached = models.ensure(name, refresh=False)
    predictor = treeshard.Predictor(cached.path("treeshard-lz4"))
    rows = [np.ascontiguousarray(row[None, :]) for row in np.load(cached.rows)[:n_rows].astype(np.float32)]
    ways: dict[str, Any] = {"Predictor predict_proba": predictor.predict_proba}
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None and cached.path("onnx").is_file():
        session = onnxruntime.InferenceSession(str(cached.path("onnx")), providers=["CPUExecutionProvider"])
        name_in, proba = session.get_inputs()[0].name, session.get_outputs()[1].name
        ways["onnxruntime probabilities"] = lambda X: session.run([proba], {name_in: X})[0]
    samples: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, fn in ways.items():
            times = []
            for row in rows:
                start = time.perf_counter()
                fn(row)
                times.append(time.perf_counter() - start)
            samples[way].append(statistics.median(times))
    return {way: statistics.median(values) for way, values in samples.items()}


def _max_difference(got: Any, expected: Any) -> str:
    """Rows of probabilities not equal to sklearn's, and the largest absolute difference."""
    import numpy as np

    rows = int(np.count_nonzero((got != expected).any(axis=1)))
    return f"{rows} (max abs difference {float(np.max(np.abs(got - expected))):.1e})"


SHALLOW = (("RandomForestClassifier", 3), ("RandomForestClassifier", 6), ("RandomForestClassifier", 8),
           ("GradientBoostingClassifier", 1), ("GradientBoostingClassifier", 3), ("GradientBoostingClassifier", 5))


def shallow(repeat: int, rows: int = 1_000) -> list[dict[str, Any]]:
    """Small shallow models (100 trees or stages, make_classification 10,000 x 30, 3 classes):
    median seconds of ``predict_proba`` on ``rows`` rows, the Predictor with and without the
    complete layout (``n_jobs=None``), checked equal to sklearn."""
    import numpy as np
    import zarr
    from sklearn import ensemble
    from sklearn.datasets import make_classification

    import treeshard

    X, y = make_classification(10_000, 30, n_informative=10, n_classes=3, random_state=0)
    X = X.astype(np.float32)
    Xn = np.ascontiguousarray(np.resize(X, (rows, X.shape[1])))
    out = []
    for kind, depth in SHALLOW:
        estimator = getattr(ensemble, kind)(n_estimators=100, max_depth=depth, random_state=0).fit(X, y)
        store = zarr.storage.MemoryStore()
        treeshard.save(estimator, store)
        after, before = treeshard.Predictor(store, n_jobs=None), treeshard.Predictor(store, n_jobs=None)
        before._complete = None
        times: dict[str, list[float]] = {"after": [], "before": []}
        for _ in range(repeat):
            for path, engine in (("before", before), ("after", after)):
                seconds, got = _seconds(engine.predict_proba, Xn, 0.2)
                times[path].append(seconds)
                if not np.array_equal(got, estimator.predict_proba(Xn)):
                    raise AssertionError(f"{kind} depth {depth}: the Predictor ({path}) differs from sklearn")
        out.append({"model": f"{kind} depth {depth}", **{path: statistics.median(t) for path, t in times.items()}})
        print(f"| {out[-1]['model']} | {_ms(out[-1]['before'])} | {_ms(out[-1]['after'])} | {out[-1]['before'] / out[-1]['after']:.1f}x |", flush=True)
    return out


_FIRST_PREDICTION = """
import time, numpy as np
import treeshard{extra}
X = np.load({rows!r})[:1]
t0, c0 = time.perf_counter(), time.process_time()
model = {load}({path!r})
t1, c1 = time.perf_counter(), time.process_time()
model.predict_proba(X)
t2, c2 = time.perf_counter(), time.process_time()
print(t1 - t0, t2 - t1, c1 - c0, c2 - c1)
"""


def first_prediction(name: str, rounds: int) -> dict[str, list[float]]:
    """Fresh processes, alternating: ``Predictor(path)`` then a one-row ``predict_proba``, and
    lazy ``treeshard.load(path)`` then the same; medians of (load, first predict) in wall-clock and
    CPU seconds. Imports are done before the clock starts (sklearn's too for the lazy model).

    The children import from cached bytecode, as an installed package does
    (:func:`treeshard.bench.child.child_env` ``"warm"``, after one untimed run of each):
    with ``PYTHONDONTWRITEBYTECODE`` set, the modules only a lazy load imports (the load
    API, the adapters, the dispatch) were compiled from source inside its timed part.
    """
    import subprocess

    from treeshard.bench.child import child_env

    cached = models.ensure(name, refresh=False)
    path, rows = str(cached.path("treeshard-lz4")), str(cached.rows)
    children = {
        "Predictor": _FIRST_PREDICTION.format(extra="", load="treeshard.Predictor", path=path, rows=rows),
        "lazy load": _FIRST_PREDICTION.format(extra=", " + cached.sklearn_module, load="treeshard.load", path=path, rows=rows),
    }
    env = child_env("warm")
    samples: dict[str, list[list[float]]] = {label: [] for label in children}
    for round_ in range(rounds + 1):
        for label, code in children.items():
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
            if round_:  # the first round writes the bytecode
                samples[label].append([float(v) for v in run.stdout.split()])
    return {label: [statistics.median(column) for column in zip(*values)] for label, values in samples.items()}


def _line(r: dict[str, Any]) -> str:
    before = f" {_ms(r['before'])} | {r['sklearn'] / r['before']:.1f}x |" if "before" in r else ""
    return (
        f"| {r['model']} | {r['n_jobs']} | {r['rows']:,} | {_ms(r['treeshard'])} | {_ms(r['sklearn'])} | {r['speedup']:.1f}x |{before}"
    )


def _ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.3f}" if ms < 1 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def main(argv: list[str] | None = None) -> int:
    from treeshard.predictor import available_cores

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["RF-L", "GB-M"])
    parser.add_argument("--rows", nargs="+", type=int, default=list(ROWS))
    parser.add_argument("--repeat", type=int, default=5, help="alternating rounds (a third of them for 1M rows)")
    parser.add_argument("--baseline", action="store_true", help="also time the Predictor without the complete layout (before it)")
    parser.add_argument("--first-prediction", action="store_true", help="only: load + first one-row prediction, fresh processes")
    parser.add_argument("--shallow", action="store_true", help="only: small shallow models, with and without the complete layout")
    parser.add_argument("--one-row", action="store_true", help="only: one-row latency against sklearn, onnxruntime and treelite")
    parser.add_argument("--one-row-varied", action="store_true", help="only: one-row latency over 1,000 different rows, against onnxruntime")
    args = parser.parse_args(argv)
    if args.one_row_varied:
        print(f"1,000 different float32 rows, one call each: median over rows, median of {args.repeat} alternating rounds\n")
        print("| model | way | us per call |")
        print("|---|---|---:|")
        for name in args.models:
            for way, seconds in one_row_varied(name, args.repeat).items():
                print(f"| {name} | {way} | {1e6 * seconds:.1f} |", flush=True)
        return 0
    if args.one_row:
        print(f"one float32 row, in one process: median of {args.repeat} alternating rounds of each round's median single call\n")
        print("| model | way | us per call | differ from sklearn (of 1,000 rows) |")
        print("|---|---|---:|---:|")
        for name in args.models:
            result = one_row_peers(name, args.repeat)
            for way, seconds in result["seconds"].items():
                differ = result["differ"].get(way, "")
                print(f"| {name} | {way} | {1e6 * seconds:.1f} | {differ} |", flush=True)
        return 0
    if args.shallow:
        print(f"predict_proba on 1,000 rows, n_jobs=None, median ms of {args.repeat} alternating rounds\n")
        print("| model (100 trees) | before ms | complete layout ms | speed-up |")
        print("|---|---:|---:|---:|")
        shallow(args.repeat)
        return 0
    if args.first_prediction:
        print("fresh processes, medians of --repeat alternating rounds: load, then the first one-row predict_proba\n")
        print("| model | path | load ms | first predict ms | load + predict ms | CPU: load + predict ms |")
        print("|---|---|---:|---:|---:|---:|")
        for name in args.models:
            for label, (load, predict, load_cpu, predict_cpu) in first_prediction(name, args.repeat).items():
                print(f"| {name} | {label} | {_ms(load)} | {_ms(predict)} | {_ms(load + predict)} | {_ms(load_cpu + predict_cpu)} |", flush=True)
        return 0
    print(f"predict_proba, median ms of {args.repeat} alternating rounds, {available_cores()} cores; speedup = sklearn / treeshard\n")
    extra = (" before ms | speedup before |", "---:|---:|") if args.baseline else ("", "")
    print("| model | n_jobs | rows | treeshard Predictor ms | sklearn ms | speedup |" + extra[0])
    print("|---|---|---:|---:|---:|---:|" + extra[1])
    for name in args.models:
        measure(name, tuple(args.rows), args.repeat, baseline=args.baseline)
    print("\none-row latency (median of single calls, n_jobs=None):\n")
    print("| model | treeshard Predictor ms | sklearn ms |")
    print("|---|---:|---:|")
    for name in args.models:
        result = latency(name)
        print(f"| {name} | {_ms(result['treeshard'])} | {_ms(result['sklearn'])} |", flush=True)
    return 0


class EngineScoring:
    """``predict_proba`` of the Predictor and of sklearn, by batch size and n_jobs."""

    params = (models.selected_models(), ["treeshard", "sklearn"], ["none", "all"], [1, 1000, 100000])
    param_names = ["model", "engine", "n_jobs", "rows"]
    timeout = 600

    def setup(self, model: str, engine: str, n_jobs: str, rows: int) -> None:
        import treeshard

        cached = models.ensure(model, refresh=False)
        if cached.meta["model"]["estimator"] == "IsolationForest":
            raise NotImplementedError("no predict_proba: benchmarks/iforest.py times IF-L")  # asv skips
        jobs = None if n_jobs == "none" else -1
        if engine == "treeshard":
            self.model = treeshard.Predictor(cached.path("treeshard-lz4"), n_jobs=jobs)
        else:
            self.model = cached.load_estimator()
            if hasattr(self.model, "n_jobs"):
                self.model.n_jobs = jobs
        self.X = _cached_rows(cached, rows)

    def time_predict_proba(self, model: str, engine: str, n_jobs: str, rows: int) -> None:
        self.model.predict_proba(self.X)


def _cached_rows(cached: Any, rows: int) -> Any:
    """``rows`` float32 rows from the model's cached 1,000 (asv: every model, the tiny one too)."""
    import numpy as np

    X = np.load(cached.rows).astype(np.float32)
    return np.ascontiguousarray(np.resize(X, (rows, X.shape[1])))


if __name__ == "__main__":
    raise SystemExit(main())
