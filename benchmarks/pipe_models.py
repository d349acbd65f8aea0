"""PIPE-L's preprocessing ending in a HistGradientBoostingClassifier or an IsolationForest (issue 15).

The ``ColumnTransformer`` of PIPE-L (``OneHotEncoder`` on 3 categorical
string columns, ``SimpleImputer`` + ``StandardScaler`` on 30 numeric columns
with 5% NaN) on 100,000 rows, then ``HistGradientBoostingClassifier(max_iter=100)``
(3 classes) or ``IsolationForest(100)``. Fitted once and cached outside the
repository::

    python benchmarks/pipe_models.py build --model hgb        # joblib and treeshard (zip)
    python benchmarks/pipe_models.py coldstart --model hgb    # fresh processes, alternating, medians
    python benchmarks/pipe_models.py latency --model hgb      # one-row call after load: sklearn vs Predictor

``--model iforest`` for the IsolationForest (``score_samples``). Every child
reads its one-row request from a JSON file, as a DataFrame (pandas imported) or,
for ``treeshard-json``, as a mapping of column -> values (no pandas), and calls
the model's method (``predict_proba``, ``score_samples``); the parent checks the
outputs are equal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# PIPE-L's data, cache folder and request readers (a DataFrame, or JSON decoded to a mapping).
from benchmarks.pipe_l import BENCH, CATEGORIES, FRAME, JSON, N_NUMERIC, make_frame  # noqa: E402

METHOD = {"hgb": "predict_proba", "iforest": "score_samples"}


def paths(model: str) -> dict[str, Path]:
    return {"joblib": BENCH / f"pipe-{model}.joblib", "treeshard": BENCH / f"pipe-{model}.zip"}


def build(model_name: str, rows: int) -> None:
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import treeshard

    BENCH.mkdir(parents=True, exist_ok=True)
    X, y = make_frame(rows, 0)
    pre = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(CATEGORIES)),
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), [f"x{i}" for i in range(N_NUMERIC)]),
        ]
    )
    final = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0) if model_name == "hgb" else IsolationForest(n_estimators=100, random_state=0)
    model = Pipeline([("pre", pre), ("model", final)])
    start = time.perf_counter()
    model.fit(X, y if model_name == "hgb" else None)
    print(f"fit: {time.perf_counter() - start:.1f} s")
    joblib.dump(model, paths(model_name)["joblib"])
    treeshard.save(model, paths(model_name)["treeshard"], overwrite=True)
    query, _ = make_frame(1, 7)
    (BENCH / "row.json").write_text(query.to_json(orient="split"))
    for name, path in paths(model_name).items():
        print(f"{name:10s} {path.stat().st_size / 1e6:8.2f} MB")


CHILD = {
    "floor": (FRAME, "model = None  # the interpreter, pandas and the request row: what every path pays"),
    "joblib": (FRAME, "import joblib\nmodel = joblib.load({path!r})"),
    "treeshard": (FRAME, "import treeshard\nmodel = treeshard.Predictor({path!r})"),
    "floor-json": (JSON, "model = None  # the interpreter, numpy and the request row as a mapping"),
    "treeshard-json": (JSON, "import treeshard\nmodel = treeshard.Predictor({path!r})"),
}


def child_code(model_name: str, name: str) -> str:
    (imports, read), load = CHILD[name]
    path = paths(model_name).get(name.removesuffix("-json"), "")
    return (
        f"import time\nstart = time.perf_counter()\nimport json, io\n{imports}\n"
        + load.format(path=str(path))
        + f"\ntext = open({str(BENCH / 'row.json')!r}).read()\n{read}\n"
        + f"out = None if model is None else model.{METHOD[model_name]}(row).tolist()\nprint(json.dumps([time.perf_counter() - start, out]))\n"
    )


def coldstart(model_name: str, repeats: int) -> None:
    for path in paths(model_name).values():
        path.read_bytes()  # warm page cache
    times: dict[str, list[float]] = {name: [] for name in CHILD}
    outputs = {}
    for _ in range(repeats):
        for name in CHILD:  # alternating: drift in machine load hits every path alike
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", child_code(model_name, name)], capture_output=True, text=True, check=True)
            times[name].append(time.perf_counter() - start)
            outputs[name] = json.loads(done.stdout.strip().splitlines()[-1])[1]
    assert outputs["treeshard"] == outputs["treeshard-json"] == outputs["joblib"], outputs
    base = statistics.median(times["joblib"])
    print(f"{model_name}: fresh process to first one-row {METHOD[model_name]}, median of {repeats} (outputs equal: True)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:15s} {median:7.3f} s   joblib / this = {base / median:5.2f}x   (min {min(values):.3f}, max {max(values):.3f})")


def latency(model_name: str, calls: int) -> None:
    import io

    import joblib
    import numpy as np
    import pandas as pd

    import treeshard

    model = joblib.load(paths(model_name)["joblib"])
    predictor = treeshard.Predictor(paths(model_name)["treeshard"], n_jobs=None)
    row = pd.read_json(io.StringIO((BENCH / "row.json").read_text()), orient="split")
    method = METHOD[model_name]
    assert np.array_equal(getattr(model, method)(row), getattr(predictor, method)(row))
    results: dict[str, list[float]] = {}
    for _ in range(3):  # alternating rounds
        for name, function in (("sklearn", getattr(model, method)), ("treeshard", getattr(predictor, method))):
            samples = []
            for _ in range(calls):
                start = time.perf_counter()
                function(row)
                samples.append(time.perf_counter() - start)
            results.setdefault(name, []).extend(samples)
    base = statistics.median(results["sklearn"])
    print(f"{model_name}: one-row {method} (a 1-row DataFrame), median of {3 * calls} calls")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"  {name:10s} {median * 1e3:8.3f} ms   sklearn / this = {base / median:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "coldstart", "latency"])
    parser.add_argument("--model", choices=sorted(METHOD), default="hgb")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    if args.command == "build":
        build(args.model, args.rows)
    elif args.command == "coldstart":
        coldstart(args.model, args.repeats)
    else:
        latency(args.model, args.calls)


if __name__ == "__main__":
    main()
