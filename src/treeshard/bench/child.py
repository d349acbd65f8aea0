"""Measurement in fresh processes: the child's source, running it, its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .strategies import N_ROWS, PARTIAL_TREES, Strategy

CHILD_TIMEOUT = 3600.0

_CHILD = """\
import time
t0 = time.perf_counter()
import json, resource, sys
spec = json.loads(sys.argv[1])
def proc_status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
def maxrss():
    # VmHWM: the peak of this process's own memory. ru_maxrss is the fallback
    # elsewhere; on Linux it also counts the spawning parent's pages (exec
    # records the old mm's peak), which would hide what loading adds.
    hwm = proc_status("VmHWM")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
def reset_peak():
    # Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return maxrss()
    return proc_status("VmRSS") or maxrss()
import numpy as np
X = np.load(spec["rows"])
t_numpy = time.perf_counter()
{imports}
t_import = time.perf_counter()
rss_import = maxrss()
rss_before = reset_peak()
path = spec["path"]
{load}
t_load = time.perf_counter()
rss_load = maxrss()
model.predict(X[:1])
t_predict = time.perf_counter()
cold = dict(numpy=t_numpy - t0, imports=t_import - t0, load=t_load - t_import,
            first_predict=t_predict - t_load, inside=t_predict - t0,
            rss_import=rss_import, rss_before=rss_before, rss_load=rss_load)
sys.stdout.write("COLD " + json.dumps(cold) + "\\n")
sys.stdout.flush()
if spec["after"]:
    def median_seconds(fn, min_calls, min_seconds, max_calls):
        times = []
        while len(times) < max_calls and (len(times) < min_calls or sum(times) < min_seconds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        times.sort()
        n = len(times)
        return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    one = X[:1]
    batch = X[:{n_rows}]
    after = dict(
        predict_1=median_seconds(lambda: model.predict(one), 7, 0.1, 50),
        predict_1000=median_seconds(lambda: model.predict(batch), 5, 0.1, 20),
    )
    if spec["expected"]:
        expected = np.load(spec["expected"])
        got = np.asarray(model.predict(batch[: len(expected)]))
        if got.size == expected.size:
            after["mismatch"] = int(np.count_nonzero(got.reshape(expected.shape) != expected))
        else:  # another shape of output: nothing matches
            after["mismatch"] = len(expected)
    if spec["partial"]:
        del model
        k = spec["k"]
        start = time.perf_counter()
{partial}
        after["partial"] = time.perf_counter() - start
    sys.stdout.write("AFTER " + json.dumps(after) + "\\n")
    sys.stdout.flush()
"""


def child_code(strategy: Strategy, sklearn_module: str) -> str:
    """The source a fresh interpreter runs for ``strategy`` (see :data:`_CHILD`)."""
    partial = strategy.partial or "pass"
    return _CHILD.format(
        imports=strategy.import_code(sklearn_module),
        load=strategy.load,
        partial=_indent(partial, 8),
        n_rows=N_ROWS,
    )


def _indent(code: str, n: int) -> str:
    return "\n".join(" " * n + line for line in code.splitlines())


class ChildError(RuntimeError):
    """A benchmark child process failed; the message carries its stderr."""


def run_child(
    strategy: Strategy,
    path: str | os.PathLike,
    rows: str | os.PathLike,
    *,
    sklearn_module: str,
    after: bool = True,
    k: int = PARTIAL_TREES,
    python: str = sys.executable,
    timeout: float = CHILD_TIMEOUT,
    expected: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run one fresh process for ``strategy`` and return its figures.

    ``cold_start`` is the parent's wall time from spawn to the first
    prediction's line; ``interpreter`` is what the child's own checkpoints
    do not cover (start-up, site, and the pipe). With ``expected`` (a
    ``.npy`` of the original model's outputs on the first rows, in the
    strategy's ``output`` form), ``mismatch`` counts the outputs that differ.
    ``env``: the child's environment (default: this process's, see
    :func:`child_env`).
    """
    spec = {
        "path": os.fspath(path),
        "rows": os.fspath(rows),
        "after": after,
        "k": k,
        "partial": strategy.partial is not None,
        "expected": None if expected is None else os.fspath(expected),
    }
    code = child_code(strategy, sklearn_module)
    with tempfile.TemporaryFile(mode="w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            [python, "-c", code, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=None if env is None else dict(env),
        )
        # Read everything through the same buffered stream: communicate(timeout=...)
        # reads the raw pipe and would lose lines readline() already buffered.
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            first = process.stdout.readline()  # type: ignore[union-attr]
            cold_start = time.perf_counter() - start
            rest = process.stdout.read()  # type: ignore[union-attr]
            process.wait()
        finally:
            timer.cancel()
            process.stdout.close()  # type: ignore[union-attr]
        if timed_out.is_set():
            raise ChildError(f"{strategy.name}: timed out after {timeout:.0f} s")
        stderr.seek(0)
        errors = stderr.read()
    if process.returncode != 0 or not first.startswith("COLD "):
        tail = "\n".join(errors.strip().splitlines()[-15:])
        raise ChildError(f"{strategy.name}: child process failed (exit {process.returncode}):\n{tail}")
    cold = json.loads(first[5:])
    out: dict[str, Any] = {
        "cold_start": cold_start,
        "interpreter": cold_start - cold["inside"],
        "import": cold["imports"],
        "import_numpy": cold["numpy"],
        "load": cold["load"],
        "first_predict": cold["first_predict"],
        "peak_rss": max(cold["rss_load"], cold["rss_import"]),
        "load_rss": cold["rss_load"] - cold["rss_before"],
    }
    for line in rest.splitlines():
        if line.startswith("AFTER "):
            after_figures = json.loads(line[6:])
            out.update(after_figures)
            if "partial" not in after_figures:
                out["partial"] = out["load"]  # the format can only load everything
    return out


BYTECODE_MODES = {
    "warm": "cached for every module (PYTHONDONTWRITEBYTECODE unset, PYTHONPYCACHEPREFIX=$TREESHARD_BENCH_CACHE/pycache, "
    "warmed by one untimed run per strategy), as an installed package runs",
    "inherit": "this environment as it is",
}


#: The benchmarks' cache directory (bytecode here; reference models in benchmarks/models.py).
CACHE_ENV = "TREESHARD_BENCH_CACHE"


def cache_dir() -> Path:
    """``$TREESHARD_BENCH_CACHE``, default ``~/.cache/treeshard-bench``."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/treeshard-bench")).expanduser()


def child_env(bytecode: str, pycache: str | os.PathLike | None = None) -> dict[str, str] | None:
    """The environment of the measured children for a :data:`BYTECODE_MODES` key.

    ``"warm"``: Python may write bytecode, into ``pycache`` (never into the
    source tree), so that after one untimed run every module, treeshard's
    own included, is imported from cached bytecode, as from an installed
    wheel. With ``PYTHONDONTWRITEBYTECODE`` set and treeshard installed
    editable, every fresh process would compile treeshard from source while
    sklearn and joblib came precompiled. ``"inherit"``: unchanged (None).
    ``pycache`` defaults to ``pycache`` in :func:`cache_dir`, kept between
    runs (Python recompiles a module whose source changed).
    """
    if bytecode not in BYTECODE_MODES:
        raise ValueError(f"bytecode must be one of {sorted(BYTECODE_MODES)}, not {bytecode!r}")
    if bytecode == "inherit":
        return None
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.fspath(cache_dir() / "pycache" if pycache is None else pycache)
    return env
