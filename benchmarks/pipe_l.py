"""PIPE-L (issue 15): a whole pipeline, fresh process to the first one-row prediction, and one-row latency.

PIPE-L is ``ColumnTransformer`` (``OneHotEncoder`` on 3 categorical string
columns, ``SimpleImputer`` + ``StandardScaler`` on 30 numeric columns with 5%
NaN) + ``RandomForestClassifier(100)`` on 100,000 rows (3 classes). It is
fitted once and cached outside the repository::

    python benchmarks/pipe_l.py build       # fit and save as joblib, skops and treeshard (zip)
    python benchmarks/pipe_l.py coldstart   # fresh processes, alternating, medians
    python benchmarks/pipe_l.py latency     # one-row predict_proba after load: sklearn vs Predictor

Every child reads the one-row request from ``row.json`` and predicts with
``predict_proba``; the parent checks the outputs are equal. joblib, skops and
``treeshard`` read it as a DataFrame (pandas imported); ``treeshard-json``
decodes the JSON to a mapping of column -> values, as a serverless handler
receives it, and never imports pandas. Each request path has its floor (the
interpreter plus what that path imports to read the request).
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

BENCH = Path(os.environ.get("TREESHARD_BENCH", "/tmp/treeshard-pipe-bench"))
ROW = BENCH / "row.json"
PATHS = {"joblib": BENCH / "pipe-l.joblib", "skops": BENCH / "pipe-l.skops", "treeshard": BENCH / "pipe-l.zip"}
N_NUMERIC, CATEGORIES = 30, {"city": 40, "device": 6, "plan": 12}


def make_frame(n: int, seed: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    rng = np.random.RandomState(seed)
    numeric = rng.normal(size=(n, N_NUMERIC))
    numeric[rng.rand(n, N_NUMERIC) < 0.05] = np.nan
    frame = pd.DataFrame(numeric, columns=[f"x{i}" for i in range(N_NUMERIC)])
    for name, k in CATEGORIES.items():
        frame[name] = np.array([f"{name}_{j}" for j in range(k)], dtype=object)[rng.randint(0, k, size=n)]
    score = np.nan_to_num(numeric[:, 0]) + 0.5 * np.nan_to_num(numeric[:, 1]) + (frame["device"] == "device_1").to_numpy()
    return frame, np.digitize(score, [-0.5, 0.5])


def build(rows: int, trees: int) -> None:
    import joblib
    import skops.io
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import treeshard

    BENCH.mkdir(parents=True, exist_ok=True)
    X, y = make_frame(rows, 0)
    pre = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORIES)),
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), [f"x{i}" for i in range(N_NUMERIC)]),
        ]
    )
    model = Pipeline([("pre", pre), ("forest", RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=0))])
    start = time.perf_counter()
    model.fit(X, y)
    model.set_params(forest__n_jobs=None)
    print(f"fit: {time.perf_counter() - start:.1f} s")
    joblib.dump(model, PATHS["joblib"])
    skops.io.dump(model, PATHS["skops"])
    treeshard.save(model, PATHS["treeshard"], overwrite=True)
    query, _ = make_frame(1, 7)
    ROW.write_text(query.to_json(orient="split"))
    for name, path in PATHS.items():
        print(f"{name:10s} {path.stat().st_size / 1e6:8.1f} MB")


#: name -> (what it imports to read the request, how it loads the model, how it reads the request).
FRAME = "import pandas as pd", "row = pd.read_json(io.StringIO(text), orient='split')"
# The request as a serverless handler receives it: JSON decoded to a mapping of column -> values.
JSON = "import numpy", "d = json.loads(text)\nrow = {c: [r[i] for r in d['data']] for i, c in enumerate(d['columns'])}"
CHILD = {
    "floor": (FRAME, "model = None  # the interpreter, pandas and the request row as a DataFrame"),
    "joblib": (FRAME, "import joblib\nmodel = joblib.load({path!r})"),
    "skops": (FRAME, "import skops.io\npath = {path!r}\nmodel = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))"),
    "treeshard": (FRAME, "import treeshard\nmodel = treeshard.Predictor({path!r})"),
    "floor-json": (JSON, "model = None  # the interpreter, numpy and the request row as a mapping"),
    "treeshard-json": (JSON, "import treeshard\nmodel = treeshard.Predictor({path!r})"),
}


def child_code(name: str) -> str:
    (imports, read), load = CHILD[name]
    path = PATHS.get(name.removesuffix("-json"), "")
    return (
        f"import time\nstart = time.perf_counter()\nimport json, io\n{imports}\n"
        + load.format(path=str(path))
        + f"\ntext = open({str(ROW)!r}).read()\n{read}\n"
        + "out = None if model is None else model.predict_proba(row).tolist()\nprint(json.dumps([time.perf_counter() - start, out]))\n"
    )


def coldstart(repeats: int) -> None:
    for path in PATHS.values():
        path.read_bytes()  # warm page cache
    times: dict[str, list[float]] = {name: [] for name in CHILD}
    outputs = {}
    for _ in range(repeats):
        for name in CHILD:  # alternating: drift in machine load hits every path alike
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", child_code(name)], capture_output=True, text=True, check=True)
            times[name].append(time.perf_counter() - start)
            outputs[name] = json.loads(done.stdout.strip().splitlines()[-1])[1]
    assert outputs["treeshard"] == outputs["treeshard-json"] == outputs["joblib"] == outputs["skops"], outputs
    base = statistics.median(times["joblib"])
    print(f"fresh process to first one-row predict_proba, median of {repeats} (outputs equal: True)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:15s} {median:7.3f} s   joblib / this = {base / median:5.2f}x   (min {min(values):.3f}, max {max(values):.3f})")
    for floor, name in (("floor", "treeshard"), ("floor-json", "treeshard-json")):
        above = statistics.median(times[name]) - statistics.median(times[floor])
        print(f"  {name} above its floor ({floor}): {above:.3f} s")
    print(f"  joblib above the DataFrame floor: {base - statistics.median(times['floor']):.3f} s")


def latency(calls: int) -> None:
    import io

    import joblib
    import numpy as np
    import pandas as pd

    import treeshard

    model = joblib.load(PATHS["joblib"])
    predictor = treeshard.Predictor(PATHS["treeshard"], n_jobs=None)
    row = pd.read_json(io.StringIO(ROW.read_text()), orient="split")
    split = json.loads(ROW.read_text())
    mapping = {c: [r[i] for r in split["data"]] for i, c in enumerate(split["columns"])}
    assert np.array_equal(model.predict_proba(row), predictor.predict_proba(row))
    assert np.array_equal(model.predict_proba(row), predictor.predict_proba(mapping))
    results = {}
    paths = (("sklearn", model.predict_proba, row), ("treeshard", predictor.predict_proba, row), ("treeshard-json", predictor.predict_proba, mapping))
    for _ in range(3):  # alternating rounds
        for name, function, X in paths:
            samples = []
            for _ in range(calls):
                start = time.perf_counter()
                function(X)
                samples.append(time.perf_counter() - start)
            results.setdefault(name, []).extend(samples)
    base = statistics.median(results["sklearn"])
    print(f"one-row predict_proba (a 1-row DataFrame; treeshard-json: a mapping of column -> [value]), median of {3 * calls} calls")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"  {name:15s} {median * 1e3:8.3f} ms   sklearn / this = {base / median:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "coldstart", "latency"])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    if args.command == "build":
        build(args.rows, args.trees)
    elif args.command == "coldstart":
        coldstart(args.repeats)
    else:
        latency(args.calls)


if __name__ == "__main__":
    main()
