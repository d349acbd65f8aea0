"""scikit-learn's own test modules, plain against round-tripped, side by side in one run (issue 17).

Each module runs with ``--treeshard-off`` (the plain tests) and with a round trip
after every top-level fit (``--treeshard-eager`` or ``--treeshard-lazy``), one
process after the other, alternating, ``--repeat`` times; wall times and the load
average before each run are printed, then per module and in total the median
round-tripped over plain ratio. Usage (from the repository root)::

    python benchmarks/sklearn_suite_time.py [--repeat 1] [--mode eager] [--profile DIR] [MODULE ...]

``--profile DIR`` also writes a cProfile of one round-tripped run per module to ``DIR``
(run after the timed runs, not timed).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["sklearn.ensemble.tests.test_forest", "sklearn.ensemble.tests.test_gradient_boosting", "sklearn.tree.tests.test_tree"]


def command(module: str, mode: str, *, profile: Path | None = None) -> list[str]:
    runner = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else []) + ["-m", "pytest"]
    return runner + ["-c", "tests/sklearn_suite/pytest.ini", "-p", "no:cacheprovider", "-q", f"--treeshard-{mode}", "--pyargs", module]


def run(module: str, mode: str, *, profile: Path | None = None) -> tuple[float, float, str]:
    """``(wall seconds, 1-minute load average before, pytest's summary line)``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, ["tests/sklearn_suite", os.environ.get("PYTHONPATH")]))}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command(module, mode, profile=profile), cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = done.stdout.splitlines()
    summary = [line for line in lines if " passed" in line or " failed" in line]
    summary += [line for line in lines if line.startswith(("round-tripped fits", "time in round trips"))]
    if done.returncode != 0:
        raise SystemExit(f"{module} --treeshard-{mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    trips = [line for line in summary if line.startswith(("round-tripped fits", "time in"))]
    tests = [line for line in summary if line not in trips]
    return seconds, load, " | ".join(tests[-1:] + trips)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=MODULES)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--mode", choices=["eager", "lazy"], default="eager")
    parser.add_argument("--profile", type=Path, help="write a cProfile of one round-tripped run per module here")
    args = parser.parse_args(argv)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_ in range(args.repeat):
        for module in args.modules:
            for mode in ("off", args.mode):
                seconds, load, summary = run(module, mode)
                found = re.search(r"passed.* in ([0-9.]+)s", summary)
                tests = float(found[1]) if found else float("nan")
                times.setdefault((module, mode), []).append((seconds, tests))
                print(f"round {round_ + 1} {module} {mode}: {seconds:.1f} s wall (load {load:.2f}) {summary}", flush=True)
    mode = args.mode
    print(f"\n| module | plain: pytest / wall | round-tripped ({mode}): pytest / wall | ratio pytest / wall |")
    print("| --- | ---: | ---: | ---: |")
    total = {key: [0.0, 0.0] for key in ("off", mode)}
    for module in args.modules:
        row = []
        for key in ("off", mode):
            wall = statistics.median(t[0] for t in times[module, key])
            tests = statistics.median(t[1] for t in times[module, key])
            total[key][0] += tests
            total[key][1] += wall
            row.append((tests, wall))
        (p_tests, p_wall), (r_tests, r_wall) = row
        print(f"| {module.rsplit('.', 1)[-1]} | {p_tests:.1f} / {p_wall:.1f} s | {r_tests:.1f} / {r_wall:.1f} s | {r_tests / p_tests:.2f}x / {r_wall / p_wall:.2f}x |")
    (p_tests, p_wall), (r_tests, r_wall) = total["off"], total[mode]
    print(f"| total | {p_tests:.1f} / {p_wall:.1f} s | {r_tests:.1f} / {r_wall:.1f} s | {r_tests / p_tests:.2f}x / {r_wall / p_wall:.2f}x |")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        for module in args.modules:
            path = args.profile / f"{module.rsplit('.', 1)[-1]}-{args.mode}.prof"
            run(module, args.mode, profile=path)
            print(f"profile: {path}")


if __name__ == "__main__":
    main()
