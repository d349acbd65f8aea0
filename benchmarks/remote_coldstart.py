"""Cold start from S3 (a local moto server): joblib (download, load) vs treeshard (lazy remote).

Each measurement is a fresh Python process, timed by this parent from spawn
to exit, that gets the model from the local S3 server and predicts one row.
All variants run interleaved, ``--repeat`` times (median reported), in one
run, against the same server and the same model (RF-L from
``~/.cache/treeshard-bench`` when present, else a 100-tree forest on
make_classification(20_000, 30)). Credentials and endpoint come from the
environment (``AWS_ENDPOINT_URL``...), as in a serverless function.

    .venv/bin/python benchmarks/remote_coldstart.py --repeat 5 > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

BUCKET = "models"
CACHE = Path.home() / ".cache" / "treeshard-bench" / "RF-L"

JOBLIB_CHILD = """
import time; t0 = time.perf_counter()
import json, os, sys, tempfile
import boto3
client = boto3.client("s3")
path = os.path.join(tempfile.mkdtemp(), "model.joblib")
client.download_file(sys.argv[1], sys.argv[2], path)
t1 = time.perf_counter()
import joblib
model = joblib.load(path)
t2 = time.perf_counter()
row = json.loads(sys.argv[3])
prediction = model.predict([row]).tolist()
t3 = time.perf_counter()
print(json.dumps({"fetch": t1 - t0, "load": t2 - t1, "predict": t3 - t2, "prediction": prediction, "bytes": os.path.getsize(path)}))
"""

TREESHARD_CHILD = """
import time; t0 = time.perf_counter()
import json, sys
import treeshard
model = treeshard.load(sys.argv[1])
t1 = time.perf_counter()
row = json.loads(sys.argv[2])
prediction = model.predict([row]).tolist()
t2 = time.perf_counter()
source = model.estimators_.source.reader._fast.source
print(json.dumps({"load": t1 - t0, "predict": t2 - t1, "prediction": prediction, "requests": source.requests, "bytes": source.remote.bytes}))
"""

PREDICTOR_CHILD = """
import time; t0 = time.perf_counter()
import json, sys
from treeshard import Predictor
predictor = Predictor(sys.argv[1])
t1 = time.perf_counter()
row = json.loads(sys.argv[2])
prediction = predictor.predict([row]).tolist()
t2 = time.perf_counter()
print(json.dumps({"load": t1 - t0, "predict": t2 - t1, "prediction": prediction}))
"""


def model_files(work: Path) -> tuple[str, dict[str, Path], list[float]]:
    """``(label, {variant: local file}, a query row)``."""
    import numpy as np

    if (CACHE / "model.joblib").is_file() and (CACHE / "model.lz4.zip").is_file():
        rng = np.random.RandomState(0)
        return "RF-L", {
            "joblib": CACHE / "model.joblib",
            "joblib-zlib3": CACHE / "model.zlib3.joblib",
            "treeshard-lz4.zip": CACHE / "model.lz4.zip",
        }, rng.normal(size=30).tolist()
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import treeshard

    X, y = make_classification(20_000, 30, n_informative=10, random_state=0)
    model = RandomForestClassifier(100, random_state=0, n_jobs=2).fit(X, y)
    joblib.dump(model, work / "model.joblib")
    joblib.dump(model, work / "model.zlib3.joblib", compress=3)
    treeshard.save(model, work / "model.zip")
    return "RF-100 (20k x 30)", {
        "joblib": work / "model.joblib",
        "joblib-zlib3": work / "model.zlib3.joblib",
        "treeshard-lz4.zip": work / "model.zip",
    }, X[0].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import s3fs
    from helpers.servers import S3Server

    server = S3Server().start()
    server.create_bucket(BUCKET)
    env = dict(os.environ, AWS_ENDPOINT_URL=server.endpoint_url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    work = Path(tempfile.mkdtemp(prefix="treeshard-remote-bench-"))
    try:
        label, files, row = model_files(work)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        for name, path in files.items():
            fs.put_file(str(path), f"{BUCKET}/{name}")
        directory = work / "treeshard-lz4"
        with zipfile.ZipFile(files["treeshard-lz4.zip"]) as archive:
            archive.extractall(directory)
        fs.put(str(directory), f"{BUCKET}/treeshard-lz4", recursive=True)

        import treeshard

        lazy = treeshard.load(f"s3://{BUCKET}/treeshard-lz4.zip")
        pickled = len(pickle.dumps(lazy))

        python = sys.executable
        variants = {
            "joblib (download + joblib.load, uncompressed)": [python, "-c", JOBLIB_CHILD, BUCKET, "joblib", json.dumps(row)],
            "joblib (download + joblib.load, compress=3)": [python, "-c", JOBLIB_CHILD, BUCKET, "joblib-zlib3", json.dumps(row)],
            "treeshard.load lazy, s3 .zip": [python, "-c", TREESHARD_CHILD, f"s3://{BUCKET}/treeshard-lz4.zip", json.dumps(row)],
            "treeshard.load lazy, s3 directory": [python, "-c", TREESHARD_CHILD, f"s3://{BUCKET}/treeshard-lz4", json.dumps(row)],
            "treeshard.Predictor, s3 .zip": [python, "-c", PREDICTOR_CHILD, f"s3://{BUCKET}/treeshard-lz4.zip", json.dumps(row)],
        }
        results: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, command in variants.items():
                server.counter.reset()
                start = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
                inner = json.loads(done.stdout.strip().splitlines()[-1])
                inner.update(wall=wall, server_requests=server.counter.requests, server_bytes=server.counter.bytes_sent)
                results[name].append(inner)
        predictions = {json.dumps(r["prediction"]) for runs in results.values() for r in runs}
        summary = {
            name: {
                "wall_median_s": statistics.median(r["wall"] for r in runs),
                "wall_all_s": [round(r["wall"], 3) for r in runs],
                "server_requests": runs[-1]["server_requests"],
                "server_bytes": runs[-1]["server_bytes"],
                **{key: statistics.median(r[key] for r in runs) for key in ("fetch", "load", "predict") if key in runs[0]},
            }
            for name, runs in results.items()
        }
        print(
            json.dumps(
                {
                    "model": label,
                    "files": {name: path.stat().st_size for name, path in files.items()},
                    "repeat": args.repeat,
                    "same_prediction_everywhere": len(predictions) == 1,
                    "pickled_lazy_model_bytes": pickled,
                    "load_average": os.getloadavg(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "results": summary,
                },
                indent=1,
            )
        )
    finally:
        server.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
