"""The Icechunk measurements behind docs/REPOSITORY.md ("Engine: why not Icechunk").

Run with an interpreter that has icechunk (not a treeshard dependency):

    python -m venv /tmp/ice && /tmp/ice/bin/pip install "icechunk==1.1.*"
    /tmp/ice/bin/python benchmarks/icechunk_probe.py --repeat 5

Writes a repository of six 400,000-row float64 columns (8,192-row chunks in
65,536-row shards) and tags it; then, in fresh processes, times the import,
opening the tag and reading the group's attributes, and reading the first
chunk. Finally it rewrites the column with 10% more rows (the first 100%
identical, as a warm-start save rewrites a model) and reports the bytes the
second commit added.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

COLD = """
import json, sys, time; t0 = time.perf_counter()
import icechunk, zarr
t1 = time.perf_counter()
repo = icechunk.Repository.open(icechunk.local_filesystem_storage(sys.argv[1]))
group = zarr.open_group(store=repo.readonly_session(tag="production").store, mode="r")
dict(group.attrs)
t2 = time.perf_counter()
group["nodes/threshold"][:8192]
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "open": t2 - t1, "first_chunk": t3 - t2}))
"""


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)


def main() -> None:
    import icechunk
    import numpy as np
    import zarr

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(), "repo")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(path))
    session = repo.writable_session("main")
    group = zarr.group(store=session.store)
    group.attrs["treeshard"] = {"x": 1}
    data = np.random.default_rng(0).random(400_000)
    for name in ["left", "right", "feature", "threshold", "impurity", "value"]:
        group.create_array(f"nodes/{name}", shape=(400_000,), dtype="f8", chunks=(8192,), shards=(65536,))[:] = data
    session.commit("v1")
    repo.create_tag("production", repo.lookup_branch("main"))
    runs = [json.loads(subprocess.run([sys.executable, "-c", COLD, path], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]) for _ in range(args.repeat)]
    first = _size(path)
    session = repo.writable_session("main")
    array = zarr.open_group(store=session.store)["nodes/threshold"]
    array.resize((440_000,))
    array[:] = np.concatenate([data, np.random.default_rng(1).random(40_000)])
    session.commit("v2")
    print(
        json.dumps(
            {
                "icechunk": icechunk.__version__,
                "cold_median_s": {key: statistics.median(run[key] for run in runs) for key in runs[0]},
                "cold_range_s": {key: [min(run[key] for run in runs), max(run[key] for run in runs)] for key in runs[0]},
                "one_column_bytes": first // 6,
                "warm_rewrite_added_bytes": _size(path) - first,
            },
            indent=2,
        )
    )
    shutil.rmtree(os.path.dirname(path))


if __name__ == "__main__":
    main()
