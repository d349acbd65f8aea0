"""Where a save's time goes, stage by stage (issue 17): CPU seconds of each stage run alone.

    python benchmarks/save_stages.py            # RF-L (built by benchmarks/models.py)
    python benchmarks/save_stages.py GB-M

Each stage runs in this thread over the whole model, as a save runs it (the save spreads
the fill, compression and chunk hashing over worker threads; see ``treeshard.writer``);
the last lines time whole saves (wall and CPU of all threads) beside ``joblib.dump``.
Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cpu(function: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    import joblib
    import numpy as np

    import treeshard
    from save import reference
    from treeshard import writer
    from treeshard.adapters import adapter_for
    from treeshard.codecs import node_chunk_rows
    from treeshard.columns import NotWeightedCounts, TreeNodeRows
    from treeshard.saving import encode_files
    from treeshard.storage.targets import _write_zip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="RF-L")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    model = reference(args.model)
    adapter = adapter_for(model)
    saved = adapter.to_saved(model)
    nodes = TreeNodeRows(saved.trees, saved.layout)
    rows = node_chunk_rows(saved.layout.value_width)
    specs = writer.node_column_specs(nodes, "nodes", rows=rows)
    n_rows = -(-nodes.n_nodes // rows)
    chunks: list[tuple[Any, np.ndarray]] = []

    def fill(keep: bool = False) -> None:
        chunks.clear()
        scratch: dict[str, np.ndarray] = {}
        for k in range(n_rows):
            for spec in specs:
                try:
                    data = spec.chunk(k * rows, (k + 1) * rows, scratch)
                except NotWeightedCounts:  # not weighted counts (GB-M): a save encodes float64 values
                    continue
                if keep:
                    chunks.append((spec, data.copy()))

    figures = {"fill the node columns (compiled, one pass)": _cpu(fill, args.repeat)}
    fill(keep=True)
    shuffles = {spec.path: writer.choose_shuffle("lz4", data)[0] for spec, data in chunks[: len(specs)]}
    bodies: list[bytes] = []

    def compress() -> None:
        bodies[:] = [writer._compressor("lz4", shuffles[spec.path], data.dtype.itemsize)(data) for spec, data in chunks]

    figures["lz4 + shuffle compression (one thread)"] = _cpu(compress, args.repeat)
    compress()
    figures["crc32c of every chunk"] = _cpu(lambda: [writer._crc32c(b) for b in bodies], args.repeat)
    figures["sha256 of every chunk"] = _cpu(lambda: [hashlib.sha256(b).digest() for b in bodies], args.repeat)
    figures["sha256 of every shard (the same bytes again)"] = figures["sha256 of every chunk"]
    files = encode_files(model)  # the digest included (a save computes it while writing)
    workdir = Path(tempfile.mkdtemp(prefix="treeshard-stages-"))
    real_fsync = os.fsync
    try:

        def write_zip() -> None:
            (workdir / "m.zip").unlink(missing_ok=True)
            os.fsync = lambda fd: None
            try:
                _write_zip(files, workdir / "m.zip")
            finally:
                os.fsync = real_fsync

        figures["writing the zip (zipfile: crc32 + copy to the page cache)"] = _cpu(write_zip, args.repeat)
        figures["encode everything, digest included (all threads)"] = _cpu(lambda: encode_files(model), args.repeat)
        walls, cpus, dumps = [], [], []
        for _ in range(args.repeat):
            (workdir / "s.zip").unlink(missing_ok=True)
            start, cpu = time.perf_counter(), time.process_time()
            treeshard.save(model, workdir / "s.zip")
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            start = time.perf_counter()
            joblib.dump(model, workdir / "m.joblib")
            dumps.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.model}: CPU ms per stage (medians of {args.repeat}; load {os.getloadavg()[0]:.1f})")
    for name, value in figures.items():
        print(f"  {name:60s} {value * 1e3:8.1f}")
    print(f"  {'treeshard.save, wall':60s} {statistics.median(walls) * 1e3:8.1f}")
    print(f"  {'treeshard.save, CPU of all threads':60s} {statistics.median(cpus) * 1e3:8.1f}")
    print(f"  {'joblib.dump, wall':60s} {statistics.median(dumps) * 1e3:8.1f}")


if __name__ == "__main__":
    main()
