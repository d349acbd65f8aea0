"""Cold start and latency of treeshard's Predictor against joblib + sklearn, on RF-L.

RF-L is RandomForestClassifier(100 fully grown trees) on
make_classification(100_000, 30 features, 10 informative, 3 classes). It is
fitted once and cached (not in the repository)::

    python scripts/coldstart.py build        # ~2 min on 2 cores; writes /tmp/treeshard-bench/
    python scripts/coldstart.py coldstart    # fresh processes, alternating, medians
    python scripts/coldstart.py latency      # after load: one row, batches, crossover
    python scripts/coldstart.py importtime   # what the Predictor path imports (-X importtime)

``coldstart`` runs each path in a fresh interpreter, alternating between paths,
and splits the time to the first one-row prediction into interpreter start
(parent's clock before spawning -> child's first statement; both read the
same CLOCK_MONOTONIC), imports, load and predict, in wall-clock and in the
child's CPU time (robust to other processes sharing the machine). The floor
is an interpreter that imports numpy and reads the bytes of the treeshard
zip. Page cache is warm (every file is read once first) and bytecode is
cached (a warm-up run compiles every module into BENCH/pycache, as installed
packages ship .pyc files; PYTHONDONTWRITEBYTECODE is ignored for children).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(os.environ.get("TREESHARD_BENCH", "/tmp/treeshard-bench"))
JOBLIB = BENCH / "rf-l.joblib"
ZIP = BENCH / "rf-l.zip"
DIRECTORY = BENCH / "rf-l.ts"
ROWS = BENCH / "X.npy"

# Each child prints [t_start, t_imports, t_load, t_predict] (time.perf_counter()).
_CHILD = {
    "treeshard zip": """
import time; t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
from treeshard import Predictor
t1, c1 = time.perf_counter(), time.process_time()
model = Predictor({zip!r})
t2, c2 = time.perf_counter(), time.process_time()
y = model.predict(np.asarray({row!r}))
t3, c3 = time.perf_counter(), time.process_time()
""",
    "treeshard dir": """
import time; t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
from treeshard import Predictor
t1, c1 = time.perf_counter(), time.process_time()
model = Predictor({directory!r})
t2, c2 = time.perf_counter(), time.process_time()
y = model.predict(np.asarray({row!r}))
t3, c3 = time.perf_counter(), time.process_time()
""",
    "joblib+sklearn": """
import time; t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
import joblib, sklearn.ensemble
t1, c1 = time.perf_counter(), time.process_time()
model = joblib.load({joblib!r})
t2, c2 = time.perf_counter(), time.process_time()
y = model.predict(np.asarray({row!r}))
t3, c3 = time.perf_counter(), time.process_time()
""",
    "floor": """
import time; t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
t1, c1 = time.perf_counter(), time.process_time()
with open({zip!r}, "rb") as f:
    data = f.read()
t2, c2 = time.perf_counter(), time.process_time()
y = None
t3, c3 = time.perf_counter(), time.process_time()
""",
}
_REPORT = "\nimport json, sys; sys.stdout.write(json.dumps([t0, t1, t2, t3, c0, c1, c2, c3, str(y)]))\n"
PHASES = ("interpreter", "imports", "load", "predict", "total")


def build() -> None:
    """Fit RF-L once (n_jobs=2) and write the joblib file and treeshard stores."""
    import joblib
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import treeshard

    BENCH.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(n_samples=100_000, n_features=30, n_informative=10, n_classes=3, random_state=0)
    start = time.perf_counter()
    model = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0).fit(X, y)
    print(f"fit: {time.perf_counter() - start:.1f} s")
    model.n_jobs = None  # predict as a default-configured model would
    joblib.dump(model, JOBLIB)
    treeshard.save(model, ZIP, overwrite=True)
    treeshard.save(model, DIRECTORY, overwrite=True)
    np.save(ROWS, X[:5000])
    print(f"joblib {JOBLIB.stat().st_size / 1e6:.1f} MB, treeshard zip {ZIP.stat().st_size / 1e6:.1f} MB")


def _first_row() -> list[list[float]]:
    import numpy as np

    return np.load(ROWS)[:1].tolist()


def _child_env() -> dict[str, str]:
    """Children cache bytecode (as a deployed package would have .pyc files) under BENCH, not in the source tree."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(BENCH / "pycache")
    return env


def _run_child(name: str, row: list[list[float]]) -> dict[str, float]:
    """Wall-clock phases (parent's clock at spawn, child's at each step) and the child's CPU time per phase."""
    code = _CHILD[name].format(zip=str(ZIP), directory=str(DIRECTORY), joblib=str(JOBLIB), row=row) + _REPORT
    spawn = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_child_env())
    t0, t1, t2, t3, c0, c1, c2, c3, _ = json.loads(done.stdout)
    return {
        "interpreter": t0 - spawn,
        "imports": t1 - t0,
        "load": t2 - t1,
        "predict": t3 - t2,
        "total": t3 - spawn,
        "cpu interpreter": c0,
        "cpu imports": c1 - c0,
        "cpu load": c2 - c1,
        "cpu predict": c3 - c2,
        "cpu total": c3,
    }


def coldstart(runs: int, names: list[str]) -> None:
    """Fresh processes, alternating paths; medians per phase."""
    for path in (ZIP, JOBLIB):
        with open(path, "rb") as handle:  # warm the page cache
            while handle.read(1 << 24):
                pass
    row = _first_row()
    for name in names:  # warm-up run (compiles .pyc files), not counted
        _run_child(name, row)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for i in range(runs):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            results[name].append(_run_child(name, row))
    print(f"fresh process -> first one-row prediction, RF-L, median of {runs} runs each (ms)")
    print(f"{'path':24s}" + "".join(f"{p:>13s}" for p in PHASES))
    medians = {}
    for name in names:
        for clock, prefix in (("wall", ""), ("cpu", "cpu ")):
            medians[name, clock] = {p: statistics.median(r[prefix + p] for r in results[name]) for p in PHASES}
            print(f"{name + ' (' + clock + ')':24s}" + "".join(f"{1e3 * medians[name, clock][p]:13.1f}" for p in PHASES))
    if "joblib+sklearn" in names:
        for clock in ("wall", "cpu"):
            base = medians["joblib+sklearn", clock]["total"]
            for name in names:
                if name != "joblib+sklearn":
                    print(f"{clock}: joblib+sklearn / {name} = {base / medians[name, clock]['total']:.2f}x")


def _median_time(fn, number: int, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def latency(sizes: list[int], repeat: int) -> None:
    """Predict latency after load, side by side, and the batch size where sklearn starts to win."""
    import joblib
    import numpy as np

    import treeshard

    X = np.load(ROWS)
    model = joblib.load(JOBLIB)
    predictor = treeshard.Predictor(ZIP)
    print(f"predict latency after load, RF-L, median of {repeat} repeats (ms)")
    print(f"{'rows':>6s}{'predictor':>12s}{'sklearn':>12s}{'speedup':>10s}")
    crossover = None
    for n in sizes:
        batch = X[:n]
        assert np.array_equal(predictor.predict_proba(batch), model.predict_proba(batch))
        number = max(1, 2000 // (n + 20))
        ours_t, sk_t = [], []
        for _ in range(repeat):  # alternate to share the machine's noise
            ours_t.append(_median_time(lambda: predictor.predict(batch), number, 1))
            sk_t.append(_median_time(lambda: model.predict(batch), number, 1))
        ours, sk = statistics.median(ours_t), statistics.median(sk_t)
        if crossover is None and sk < ours:
            crossover = n
        print(f"{n:6d}{1e3 * ours:12.2f}{1e3 * sk:12.2f}{sk / ours:9.1f}x")
    print(f"sklearn faster from {crossover} rows" if crossover else "predictor faster at every size tried")


def importtime(runs: int = 5) -> None:
    """Cumulative import times (ms) of the Predictor path's top-level imports: best of ``runs`` processes."""
    code = f"import numpy as np\nfrom treeshard import Predictor\nPredictor({str(ZIP)!r}).predict(np.zeros((1, 30)))"
    best: dict[str, int] = {}
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, env=_child_env())
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _, cumulative_us, name = line[len("import time:") :].split("|")
            if (len(name) - len(name.lstrip()) - 1) // 2 == 0:  # top level only
                best[name.strip()] = min(best.get(name.strip(), 1 << 62), int(cumulative_us))
    print(f"top-level imports of the Predictor path (cumulative ms, best of {runs}):")
    for name, cumulative in best.items():
        if cumulative > 1000:
            print(f"  {name:40s}{cumulative / 1e3:8.1f}")
    print(f"  {'total':40s}{sum(best.values()) / 1e3:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build")
    cold = sub.add_parser("coldstart")
    cold.add_argument("--runs", type=int, default=7)
    cold.add_argument("--paths", nargs="+", default=["treeshard zip", "joblib+sklearn", "floor"], choices=sorted(_CHILD))
    lat = sub.add_parser("latency")
    lat.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 30, 100, 300, 1000, 3000])
    lat.add_argument("--repeat", type=int, default=5)
    sub.add_parser("importtime")
    args = parser.parse_args()
    if args.command == "build":
        build()
    elif args.command == "coldstart":
        coldstart(args.runs, list(args.paths))
    elif args.command == "latency":
        latency(args.sizes, args.repeat)
    else:
        importtime()


if __name__ == "__main__":
    main()
