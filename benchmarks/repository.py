"""Model repositories (issue 16): cold starts through an alias vs a plain store, save/open/rollback
times and the bytes a warm-start version writes, on a local directory and on a local S3 (moto) server.

Model: RandomForestClassifier(100 trees, fully grown) on make_classification(20_000, 20, 3 classes),
then warm-started to 110 trees. Cold starts are fresh Python processes (timed inside the child from
its first line), interleaved, ``--repeat`` times; every figure is the median. Requests per open are
counted by the S3 server.

    PYTHONPATH=src .venv/bin/python benchmarks/repository.py --repeat 7 > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CHILD = """
import time; t0 = time.perf_counter()
import json, sys
import treeshard
t1 = time.perf_counter()
kind, store, row = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if kind == "open":
    with treeshard.open(store) as handle:
        n = handle.info.n_trees
    t2 = time.perf_counter()
    out = {"import": t1 - t0, "open": t2 - t1, "total": t2 - t0}
else:
    predictor = treeshard.Predictor(store)
    t2 = time.perf_counter()
    label = predictor.predict([row]).tolist()
    t3 = time.perf_counter()
    out = {"import": t1 - t0, "open": t2 - t1, "predict": t3 - t2, "total": t3 - t0, "label": label,
           "zarr_imported": "zarr" in sys.modules, "sklearn_imported": "sklearn" in sys.modules}
print(json.dumps(out))
"""


def _child(kind: str, store: str, row: list[float], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, kind, store, json.dumps(row)], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _timed(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import treeshard
    from helpers.servers import S3Server

    X, y = make_classification(20_000, 20, n_informative=10, n_classes=3, random_state=0)
    model = RandomForestClassifier(100, random_state=0, n_jobs=1, warm_start=True).fit(X, y)
    bigger = RandomForestClassifier(100, random_state=0, n_jobs=1, warm_start=True).fit(X, y)
    bigger.n_estimators = 110
    bigger.fit(X, y)
    row = X[0].tolist()

    server = S3Server().start()
    server.create_bucket("models")
    env = dict(os.environ, AWS_ENDPOINT_URL=server.endpoint_url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    options = server.storage_options
    work = Path(tempfile.mkdtemp())
    result: dict = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(), "repeat": args.repeat}

    # -- warm-start bytes, locally (bytes of new objects + the manifest vs the plain store's files)
    bytes_table = {}
    for rows in (65536, 16384, 8192, 4096):
        repo = treeshard.Repository(work / f"bytes-{rows}")
        repo.node_rows = rows
        repo.save(model)
        first = repo.last_save
        repo.save(bigger)
        second = repo.last_save
        bytes_table[rows] = {
            "full_save_bytes": first.bytes_written,
            "plain_store_bytes_110": second.store_bytes,
            "warm_start_bytes": second.bytes_written,
            "ratio": second.bytes_written / second.store_bytes,
        }
    result["warm_start_bytes"] = bytes_table

    # -- stores to serve: plain vs repository, local and S3
    plain_local = str(work / "plain")
    treeshard.save(model, plain_local)
    repo_local = treeshard.Repository(work / "repo")
    version = repo_local.save(model)
    repo_local.set_alias("production", version)
    plain_s3 = "s3://models/plain"
    treeshard.save(model, plain_s3, storage_options=options)
    repo_s3 = treeshard.Repository("s3://models/repo", storage_options=options)
    version = repo_s3.save(model)
    repo_s3.set_alias("production", version)
    targets = {
        "local plain": plain_local,
        "local repo@production": f"{work / 'repo'}@production",
        "local repo@latest": f"{work / 'repo'}@latest",
        "s3 plain": plain_s3,
        "s3 repo@production": "s3://models/repo@production",
        "s3 repo@latest": "s3://models/repo@latest",
    }
    cold: dict = {name: {"open": [], "predictor": []} for name in targets}
    requests: dict = {name: {} for name in targets}
    for _ in range(args.repeat):
        for name, store in targets.items():
            for kind in ("open", "predictor"):
                server.counter.reset()
                cold[name][kind].append(_child(kind, store, row, env))
                requests[name][kind] = server.counter.requests
    result["cold_start"] = {
        name: {
            "open_total_s": _median(runs["open"], "total"),
            "open_after_import_s": _median(runs["open"], "open"),
            "predictor_total_s": _median(runs["predictor"], "total"),
            "predictor_open_s": _median(runs["predictor"], "open"),
            "requests_open": requests[name]["open"],
            "requests_predictor": requests[name]["predictor"],
            "zarr_imported": runs["predictor"][0]["zarr_imported"],
            "sklearn_imported": runs["predictor"][0]["sklearn_imported"],
        }
        for name, runs in cold.items()
    }
    labels = {name: runs["predictor"][0]["label"] for name, runs in cold.items()}
    assert len({json.dumps(v) for v in labels.values()}) == 1, labels

    # -- in-process operation times (median of --repeat)
    ops = {}
    for where, make in (("local", lambda i: treeshard.Repository(work / f"ops-{i}")), ("s3", lambda i: treeshard.Repository(f"s3://models/ops-{i}", storage_options=options))):
        counter = iter(range(10**6))
        repo = make(next(counter))
        first = repo.save(model)
        save_full = _timed(lambda: make(next(counter)).save(model), args.repeat)
        save_warm = _timed(lambda: repo.save(bigger), args.repeat)
        repo.set_alias("production", first)
        repo.set_alias("production", "latest")

        def open_alias() -> None:
            with repo.open("production") as handle:
                handle.info

        def rollback_time() -> float:
            times = []
            for _ in range(args.repeat):
                repo.set_alias("production", "latest")
                start = time.perf_counter()
                repo.rollback("production")
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        plain = plain_local if where == "local" else plain_s3

        def open_plain() -> None:
            with treeshard.open(plain, storage_options=None if where == "local" else options) as handle:
                handle.info

        ops[where] = {
            "save_first_s": save_full,
            "save_warm_start_s": save_warm,
            "open_alias_s": _timed(open_alias, args.repeat),
            "open_plain_s": _timed(open_plain, args.repeat),
            "rollback_s": rollback_time(),
            "set_alias_s": _timed(lambda: repo.set_alias("production", "latest"), args.repeat),
        }
        ops[where]["plain_save_s"] = _timed(
            lambda: treeshard.save(model, plain, overwrite=True, storage_options=None if where == "local" else options), args.repeat
        )
    result["operations"] = ops
    server.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
