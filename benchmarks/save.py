"""Save and eager-load speed against joblib, side by side in one run (issue 17).

Run as a script for the table in ``BENCHMARKS.md``::

    python benchmarks/save.py                      # small tree, RF-L, GB-M, eager load of RF-L
    python benchmarks/save.py --repeat 9 --only small
    python benchmarks/save.py --repeat 9 --only load --before OLD_SRC  # and another treeshard, fresh processes
    python benchmarks/save.py --repeat 9 --only load --load-model GB-M --before OLD_SRC
    python benchmarks/save.py --repeat 9 --only load --before OLD_SRC --hugetlb  # and with huge pages

Every figure is the median of ``--repeat`` rounds; in each round the
treeshard and joblib operations run back to back, so that a noisy machine
slows both. The reference models come from ``benchmarks/models.py`` (built
once into ``~/.cache/treeshard-bench``).

- **save**: a 300-row ``DecisionTreeClassifier`` to ``.zip`` and to a
  directory against ``joblib.dump``; RF-L and GB-M to ``.zip`` against
  ``joblib.dump`` uncompressed. treeshard's save is durable (it calls ``fsync``
  on the file and its directory, see ``SECURITY.md``); ``joblib.dump`` is not,
  so treeshard without its ``fsync`` calls and joblib followed by the same
  two ``fsync`` calls are reported too. Each save writes a new path (the
  previous round's file is removed before the timer starts), and, "overwriting",
  replaces the previous round's file at the same path (joblib truncates its old
  file, treeshard renames over its own: each frees its old file's blocks).
- **eager load** of RF-L (``treeshard.load(..., lazy=False)``) against
  ``joblib.load`` of the uncompressed file and against the floor: rebuilding
  every tree with sklearn's own ``Tree.__setstate__`` from node arrays already
  in memory (the copy any loader pays); in one process (loads in a loop) and
  in fresh processes (after a warm-up load of a small store: wall and CPU
  time, peak and resident memory above the process before loading);
  ``--hugetlb`` repeats the fresh processes with
  ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (malloc asks for transparent huge
  pages, so the page faults of the trees' memory almost vanish: what is left
  is each loader's own work).

The asv classes at the end time the same operations (``asv run --bench save``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _models_module() -> Any:
    sys.path.insert(0, str(HERE))
    import models

    return models


def small_tree() -> Any:
    import numpy as np
    from sklearn.tree import DecisionTreeClassifier

    X = np.random.RandomState(0).normal(size=(300, 6))
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    return DecisionTreeClassifier(random_state=0).fit(X, y)


def reference(name: str) -> Any:
    import joblib

    path = _models_module().cache_dir() / name / "model.joblib"
    if not path.exists():
        raise SystemExit(f"{path} is missing: build it with `python benchmarks/models.py build {name}`")
    return joblib.load(path)


@contextmanager
def no_fsync() -> Any:
    """No ``fsync``, and no early writeback (a treeshard that has it starts the disk's work early)."""
    from treeshard.storage import targets

    real, writeback = os.fsync, getattr(targets, "start_writeback", None)
    os.fsync = lambda fd: None
    if writeback is not None:
        targets.start_writeback = lambda fd, offset, nbytes: None
    try:
        yield
    finally:
        os.fsync = real
        if writeback is not None:
            targets.start_writeback = writeback


def _timed(function: Any) -> float:
    gc.collect()
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def compare_saves(model: Any, workdir: Path, *, repeat: int, directory: bool, stages: bool = False) -> dict[str, float]:
    """Median seconds of each way to save ``model``, measured round-robin. ``stages``: also a save's
    two halves alone, encoding the files (with the checks before) and writing files encoded before."""
    import joblib

    import treeshard
    from treeshard import saving
    from treeshard.storage import targets

    def clear(path: Path) -> None:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def joblib_durable(path: Path) -> None:
        joblib.dump(model, path)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        fd = os.open(workdir, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def without_fsync(path: Path) -> None:
        with no_fsync():
            treeshard.save(model, path)

    # name -> (the file it writes, removed before each round, untimed, unless the way is in
    # ``overwriting``; the save to that path)
    ways: dict[str, tuple[str, Any]] = {
        "joblib.dump": ("m.joblib", lambda path: joblib.dump(model, path)),
        "joblib.dump + fsync (durable, as treeshard)": ("d.joblib", joblib_durable),
        "treeshard .zip": ("m.zip", lambda path: treeshard.save(model, path)),
        "joblib.dump, overwriting": ("o.joblib", lambda path: joblib.dump(model, path)),
        "treeshard .zip, overwriting": ("o.zip", lambda path: treeshard.save(model, path, overwrite=True)),
    }
    overwriting = {"joblib.dump, overwriting", "treeshard .zip, overwriting"}  # replace their previous round's file
    if directory:
        ways["treeshard directory"] = ("m", lambda path: treeshard.save(model, path))
    ways["treeshard .zip, no fsync"] = ("n.zip", without_fsync)
    if stages:
        files = saving._checked_encoder(model, codec="lz4", metadata=None)()

        def write_only(path: Path, *, sync: bool) -> None:
            with nullcontext() if sync else no_fsync():
                targets.write_files(path, files, overwrite=False)

        ways["stage: encode (checks and files)"] = ("e.zip", lambda path: saving._checked_encoder(model, codec="lz4", metadata=None)())
        ways["stage: write files encoded before"] = ("w.zip", lambda path: write_only(path, sync=True))
        ways["stage: write files encoded before, no fsync"] = ("x.zip", lambda path: write_only(path, sync=False))
    for name, save in ways.values():
        clear(workdir / name)
        save(workdir / name)  # warm-up: imports, thread pools, page cache
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeat):
        for way, (name, save) in ways.items():
            if way not in overwriting:
                clear(workdir / name)
            times[way].append(_timed(lambda: save(workdir / name)))
    sizes = {"treeshard .zip bytes": (workdir / "m.zip").stat().st_size, "joblib bytes": (workdir / "m.joblib").stat().st_size}
    return {**{name: statistics.median(t) for name, t in times.items()}, **sizes}


def _sub_estimators(model: Any) -> list[Any]:
    """A forest's trees, or a gradient boosting's (its ``estimators_`` is 2-D)."""
    import numpy as np

    return list(np.asarray(model.estimators_, dtype=object).reshape(-1))


def setstate_floor(model: Any) -> Any:
    """A function rebuilding every tree of ``model`` with ``Tree.__setstate__`` from states in memory."""
    from sklearn.tree._tree import Tree

    trees = [e.tree_ for e in _sub_estimators(model)]
    states = [t.__getstate__() for t in trees]
    shapes = [(t.n_features, t.n_classes, t.n_outputs) for t in trees]

    def rebuild() -> list[Any]:
        out = []
        for (n_features, n_classes, n_outputs), state in zip(shapes, states, strict=True):
            tree = Tree(n_features, n_classes, n_outputs)
            tree.__setstate__(state)
            out.append(tree)
        return out

    return rebuild


def compare_eager_loads(name: str, *, repeat: int, before: str | None = None, hugetlb: bool = False) -> dict[str, float]:
    import joblib

    import treeshard

    folder = _models_module().cache_dir() / name
    workdir = Path(tempfile.mkdtemp(prefix="treeshard-bench-load-"))
    try:
        model = joblib.load(folder / "model.joblib")
        fresh = workdir / "m.zip"
        treeshard.save(model, fresh)  # written by this treeshard, not by the one that built the cache
        floor = setstate_floor(model)
        ways = {
            "joblib.load (uncompressed)": lambda: joblib.load(folder / "model.joblib"),
            "treeshard.load(lazy=False)": lambda: treeshard.load(fresh, lazy=False),
            "floor: Tree.__setstate__ of every tree": floor,
        }
        for way in ways.values():
            way()
        times: dict[str, list[float]] = {n: [] for n in ways}
        for _ in range(repeat):
            for n, way in ways.items():
                times[n].append(_timed(way))
        out = {n: statistics.median(t) for n, t in times.items()}
        out["model node arrays (bytes)"] = sum(e.tree_.__getstate__()["nodes"].nbytes + e.tree_.value.nbytes for e in _sub_estimators(model))
        del model
        warm_up = workdir / "tiny.zip"
        treeshard.save(small_tree(), warm_up)
        kinds = [("joblib", "joblib", folder / "model.joblib", None), ("treeshard", "treeshard", fresh, None)]
        if before is not None:  # the same store loaded by another treeshard source tree
            kinds.append(("treeshard before", "treeshard", fresh, before))
        runs: dict[str, list[tuple[float, ...]]] = {label: [] for label, *_ in kinds}
        if hugetlb:  # glibc asks for transparent huge pages: the loaders' own work, page faults almost gone
            runs.update({f"{label} (hugetlb)": [] for label, *_ in kinds})
        for _ in range(max(3, repeat // 2)):
            for label, kind, path, src in kinds:
                runs[label].append(_fresh_load(kind, path, warm_up, src=src))
                if hugetlb:
                    runs[f"{label} (hugetlb)"].append(_fresh_load(kind, path, warm_up, src=src, env=HUGETLB))
        for kind, values in runs.items():
            out[f"{kind}: fresh process, load"] = statistics.median(v[0] for v in values)
            out[f"{kind}: fresh process, CPU"] = statistics.median(v[1] for v in values)
            out[f"{kind}: peak RSS increase (bytes)"] = statistics.median(v[2] for v in values)
            out[f"{kind}: resident loaded model (bytes)"] = statistics.median(v[3] for v in values)
            out[f"{kind}: minor page faults"] = statistics.median(v[4] for v in values)
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_FRESH_SCRIPT = """
import resource, sys, time, joblib, sklearn.ensemble, treeshard, numpy
def status(field):  # VmHWM is this process's peak RSS (ru_maxrss would include the parent's, kept across exec)
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))
kind, path, warm_up = sys.argv[1:4]
treeshard.load(warm_up, lazy=False)  # the load path's own imports and threads, paid once per process
before = status("VmRSS")
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start, cpu = time.perf_counter(), time.process_time()
model = joblib.load(path) if kind == "joblib" else treeshard.load(path, lazy=False)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(wall, cpu, status("VmHWM") - before, status("VmRSS") - before, faults)
"""


#: The environment of ``--hugetlb`` runs: glibc's malloc asks for transparent huge pages.
HUGETLB = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def _fresh_load(kind: str, path: Path, warm_up: Path, *, src: str | None = None, env: dict[str, str] | None = None) -> tuple[float, ...]:
    """``(wall seconds, CPU seconds, peak, resident, minor page faults)`` of one load in a new
    interpreter; memory is the peak RSS and the RSS once loaded, above the RSS before loading. ``src``: the treeshard
    source tree to import (``PYTHONPATH``), default this environment's; ``env``: more environment variables."""
    command = [sys.executable, "-c", _FRESH_SCRIPT, kind, str(path), str(warm_up)]
    env = dict(os.environ, **(env or {}), **({} if src is None else {"PYTHONPATH": os.path.abspath(src)}))
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return tuple(float(v) for v in result.stdout.split())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=["small", "RF-L", "GB-M", "load"], action="append")
    parser.add_argument("--before", metavar="SRC", help="eager load: also load in fresh processes with this treeshard source tree")
    parser.add_argument("--load-model", default="RF-L", choices=["RF-L", "GB-M"], help="eager load: the reference model loaded")
    parser.add_argument("--hugetlb", action="store_true", help="eager load: fresh processes also with GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
    args = parser.parse_args(argv)
    only = set(args.only or ["small", "RF-L", "GB-M", "load"])
    results: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="treeshard-bench-save-"))
    try:
        if "small" in only:
            results["save, one 300-row tree"] = compare_saves(small_tree(), workdir, repeat=max(args.repeat, 15), directory=True, stages=True)
        for name in ("RF-L", "GB-M"):
            if name in only:
                results[f"save {name}"] = compare_saves(reference(name), workdir, repeat=args.repeat, directory=False)
        if "load" in only:
            results[f"eager load {args.load_model}"] = compare_eager_loads(
                args.load_model, repeat=args.repeat, before=args.before, hugetlb=args.hugetlb
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for section, figures in results.items():
        print(f"\n{section} (medians of {args.repeat} rounds)")
        for what, value in figures.items():
            shown = f"{value:,.0f}" if "bytes" in what or "faults" in what else f"{value * 1e3:9.2f} ms"
            print(f"  {what:45s} {shown}")
    print("\n" + json.dumps(results))


# --------------------------------------------------------------------------- asv
class SaveSmallTree:
    """``asv run --bench SaveSmallTree``: one 300-row tree saved to .zip, treeshard vs joblib."""

    def setup(self) -> None:
        self.model = small_tree()
        self.dir = Path(tempfile.mkdtemp())

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_treeshard_zip(self) -> None:
        import treeshard

        treeshard.save(self.model, self.dir / "m.zip", overwrite=True)

    def time_joblib_dump(self) -> None:
        import joblib

        joblib.dump(self.model, self.dir / "m.joblib")


class EagerLoad:
    """``asv run --bench EagerLoad``: a reference forest loaded eagerly, against joblib and the floor."""

    params = [["RF-L"]]
    param_names = ["model"]
    timeout = 600

    def setup(self, name: str) -> None:
        import joblib

        import treeshard

        folder = _models_module().cache_dir() / name
        if not (folder / "model.joblib").exists():
            raise NotImplementedError(f"build {name} first (benchmarks/models.py)")
        self.joblib_path = folder / "model.joblib"
        self.dir = Path(tempfile.mkdtemp())
        model = joblib.load(self.joblib_path)
        treeshard.save(model, self.dir / "m.zip")
        self.floor = setstate_floor(model)

    def teardown(self, name: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_treeshard(self, name: str) -> None:
        import treeshard

        treeshard.load(self.dir / "m.zip", lazy=False)

    def time_joblib(self, name: str) -> None:
        import joblib

        joblib.load(self.joblib_path)

    def time_setstate_floor(self, name: str) -> None:
        self.floor()

    def peakmem_treeshard(self, name: str) -> None:
        import treeshard

        treeshard.load(self.dir / "m.zip", lazy=False)


if __name__ == "__main__":
    main()
