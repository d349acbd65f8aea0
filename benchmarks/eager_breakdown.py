"""Where an eager load's CPU goes, stage by stage (issue 17).

    python benchmarks/eager_breakdown.py [--model RF-L] [--repeat 3]

Loads the reference model's lz4 ``.zip`` (written by this treeshard) with
``treeshard.load(lazy=False)`` in this process and sums, over every thread,
the CPU time (``time.thread_time``) spent in each stage of the load path:

- ``allocate``: ``Tree.__setstate__`` from zero pages (the caller's thread,
  holding the GIL; sklearn's copy faults the trees' pages in);
- ``prepare``: a batch's chunk bytes read and its decode prepared (the
  caller's thread);
- ``read``: a batch's decode on the reader thread, of which ``kernel``
  (``_kernels.decode_batch`` alone: rows carried, sha256, crc32c, Blosc,
  weighted counts, no GIL);
- ``fill``: values and the compiled check that writes node records into the
  trees (the caller's thread, GIL released), of which ``check`` alone;
- ``caller``: the caller's thread's CPU time in all (the rest of ``cpu`` is the
  reader thread's), and ``waiting``: its wall time without CPU (waiting for a
  read, the GIL or a core); ``caller faults``: the page faults it took itself.

Stages nest (``kernel`` runs inside ``read``), so the columns do not add
up to the total; the process's own CPU time, wall time and minor page faults
are printed beside them. Figures are per load, the median of ``--repeat``.
"""

from __future__ import annotations

import argparse
import collections
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _timed_stages() -> collections.defaultdict[str, float]:
    from treeshard import _kernels, lazy

    spent: collections.defaultdict[str, float] = collections.defaultdict(float)
    lock = threading.Lock()

    def wrap(owner: Any, name: str, label: str) -> None:
        function = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    spent[label] += time.thread_time() - start

        setattr(owner, name, timed)

    wrap(lazy.TreeSource, "allocate", "allocate")
    wrap(lazy.TreeSource, "prepare_batch", "prepare")
    wrap(lazy.TreeSource, "read_batch", "read")
    wrap(_kernels, "decode_batch", "kernel")  # imported by chunks at each call
    wrap(lazy.TreeSource, "fill", "fill")
    wrap(lazy, "check_trees_into", "check")
    return spent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="RF-L")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import save as save_bench

    import treeshard

    with tempfile.TemporaryDirectory(prefix="treeshard-eager-") as folder:
        path = Path(folder) / "m.zip"
        treeshard.save(save_bench.reference(args.model), path)
        spent = _timed_stages()
        treeshard.load(path, lazy=False)  # imports and threads, paid once
        rows: list[dict[str, float]] = []
        for _ in range(args.repeat):
            spent.clear()
            usage, own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_THREAD)
            cpu, wall, caller = time.process_time(), time.perf_counter(), time.thread_time()
            model = treeshard.load(path, lazy=False)
            wall, cpu, caller = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - caller
            after, own_after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_THREAD)
            faults = {"faults": float(after.ru_minflt - usage.ru_minflt), "caller faults": float(own_after.ru_minflt - own.ru_minflt)}
            rows.append({"wall": wall, "cpu": cpu, "caller": caller, "waiting": wall - caller, **spent, **faults})
            del model
    print(f"eager load of {args.model}, medians of {args.repeat} (ms; faults counted)")
    for key in rows[0]:
        value = statistics.median(row.get(key, 0.0) for row in rows)
        print(f"  {key:13s} {value:10,.0f}" if key.endswith("faults") else f"  {key:13s} {value * 1e3:10.1f}")


if __name__ == "__main__":
    main()
