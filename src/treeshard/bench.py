"""``treeshard bench``: compare storage strategies on one model, in fresh processes.

A *format* is a file on disk (pickle, joblib with each compression, skops,
treeshard with each codec, and the peers' ONNX and treelite files). A
*strategy* is a way to get a working model from one: ``joblib.load``,
``treeshard.load(lazy=False)``, ``treeshard.load(lazy=True)``,
``treeshard.Predictor``, an onnxruntime session... Strategies that need a
treeshard feature this install does not have yet, or a package that is not
installed (the reason names the extra that adds it), are listed with the
reason and skipped.

Every strategy is measured in fresh Python processes (``sys.executable -c``),
which import every module from cached bytecode (see :func:`child_env`):

- **cold start**: wall time from spawning the interpreter to receiving the
  first one-row prediction, timed by the parent (so interpreter start-up is
  included, process exit is not); the child prints ``perf_counter``
  checkpoints that split it into *interpreter* (the rest), *import* (numpy,
  the library, and the estimator's sklearn module when the strategy returns
  a sklearn estimator), *load* and *first predict*;
- **load peak memory**: the child's peak resident memory after loading minus
  its resident memory just before (Linux: ``VmHWM``, reset with
  ``/proc/self/clear_refs`` before loading; elsewhere ``ru_maxrss``). On Linux
  ``ru_maxrss`` would also count the spawning parent's pages, since ``exec``
  records the old address space's peak;
- **predict 1 / 1000 rows**: medians of repeated calls after the first one;
- **partial load**: loading the first ``k`` trees (gradient boosting: stages).
  Formats that cannot do that report a full load (marked ``*``);
- **mismatch**: how many ``predict`` outputs on the rows differ from the
  original estimator's (the peers are not exact).

Size and save time are measured by the parent while writing the files.
Reported figures are medians over ``repeat`` runs; the runs of all strategies
are interleaved, so slow drift on a shared machine hits them alike. Ratios
are *strategy / joblib uncompressed*, measured in the same run: below 1 is
better in every column (0.20x = five times faster, or smaller).

Loading a pickle or joblib file runs any code it contains: the CLI asks for
``--trust-pickle`` before unpickling MODEL, exactly like ``treeshard convert``.
This module is the benchmark harness; the read path never imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The strategy every ratio is relative to.
BASELINE = "joblib"
#: Number of trees (gradient boosting: stages) read by a partial load.
PARTIAL_TREES = 10
N_ROWS = 1000
CHILD_TIMEOUT = 3600.0


# --------------------------------------------------------------------------- formats
def _save_pickle(estimator: Any, path: Path) -> None:
    import pickle

    with open(path, "wb") as handle:
        pickle.dump(estimator, handle, protocol=pickle.HIGHEST_PROTOCOL)


def _save_joblib(compress: Any) -> Callable[[Any, Path], None]:
    def save(estimator: Any, path: Path) -> None:
        import joblib

        joblib.dump(estimator, path, compress=compress)

    return save


def _save_skops(estimator: Any, path: Path) -> None:
    import skops.io

    skops.io.dump(estimator, path)


def _save_treeshard(codec: str) -> Callable[[Any, Path], None]:
    def save(estimator: Any, path: Path) -> None:
        from .api import save as treeshard_save

        treeshard_save(estimator, path, codec=codec, overwrite=True)

    return save


def _save_onnx(estimator: Any, path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    # Labels and probabilities as plain tensors (no ZipMap of dicts), as a server would want them.
    options = {type(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    onx = convert_sklearn(
        estimator, initial_types=[("X", FloatTensorType([None, int(estimator.n_features_in_)]))], options=options
    )
    path.write_bytes(onx.SerializeToString())


def _save_treelite(estimator: Any, path: Path) -> None:
    import treelite.sklearn

    treelite.sklearn.import_model(estimator).serialize(os.fspath(path))


#: Import name -> (distribution, treeshard extra that installs it), for the packages formats need.
PACKAGES: dict[str, tuple[str, str]] = {
    "joblib": ("joblib", "bench"),
    "lz4.frame": ("lz4", "bench"),
    "skops.io": ("skops", "bench"),
    "skl2onnx": ("skl2onnx", "peers"),
    "onnxruntime": ("onnxruntime", "peers"),
    "treelite": ("treelite", "peers"),
}


@functools.cache
def importable(module: str) -> bool:
    """Whether ``module`` imports in this process (installed *and* working)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def missing_packages(requires: Sequence[str]) -> str:
    """``""`` when every module of ``requires`` imports, else which package is missing and the extra that adds it."""
    missing = [module for module in requires if not importable(module)]
    if not missing:
        return ""
    names = sorted({PACKAGES.get(m, (m.split(".")[0], ""))[0] for m in missing})
    extras = sorted({PACKAGES[m][1] for m in missing if m in PACKAGES})
    hint = f": pip install 'treeshard[{','.join(extras)}]'" if extras else ""
    return f"needs {', '.join(names)}, not installed{hint}"


@dataclass(frozen=True)
class Format:
    """A file format: how to write a model to one file.

    ``requires`` are the modules ``save`` imports; ``convert_errors`` the
    exceptions a converter raises for a model it cannot represent (a peer
    format is then skipped with the message, not the whole run).
    """

    name: str
    suffix: str  # the file is model<suffix>
    save: Callable[[Any, Path], None]
    description: str
    requires: tuple[str, ...] = ()
    convert_errors: tuple[type[BaseException], ...] = ()

    def filename(self, stem: str = "model") -> str:
        return stem + self.suffix

    def missing(self) -> str:
        """Why this install cannot write the format (``""``: it can)."""
        return missing_packages(self.requires)


_PEER_ERRORS = (RuntimeError, NotImplementedError, ValueError, TypeError, KeyError)

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("pickle", ".pkl", _save_pickle, "pickle.dump, highest protocol"),
        Format("joblib", ".joblib", _save_joblib(0), "joblib.dump, uncompressed", ("joblib",)),
        Format("joblib-zlib3", ".zlib3.joblib", _save_joblib(3), "joblib.dump(compress=3), zlib", ("joblib",)),
        Format("joblib-lz4", ".lz4.joblib", _save_joblib("lz4"), "joblib.dump(compress='lz4')", ("joblib", "lz4.frame")),
        Format("skops", ".skops", _save_skops, "skops.io.dump", ("skops.io",)),
        Format("treeshard-lz4", ".lz4.zip", _save_treeshard("lz4"), "treeshard.save(codec='lz4'), one .zip file"),
        Format("treeshard-zstd", ".zstd.zip", _save_treeshard("zstd"), "treeshard.save(codec='zstd'), one .zip file"),
        Format("onnx", ".onnx", _save_onnx, "skl2onnx.convert_sklearn, float32 input", ("skl2onnx",), _PEER_ERRORS),
        Format("treelite", ".treelite", _save_treelite, "treelite.sklearn.import_model(...).serialize", ("treelite",), _PEER_ERRORS),
    )
}


# --------------------------------------------------------------------------- strategies
@dataclass(frozen=True)
class Strategy:
    """One way to turn a file of some format into a model that predicts.

    ``imports`` and ``load``/``partial`` are Python source: the child process
    runs them verbatim (so only what the strategy needs is imported), and
    :meth:`loader` compiles the same text for in-process benchmarks.
    ``load`` assigns ``model`` from ``path``; ``partial`` does the same for
    the first ``k`` trees, or is None when the format can only load it all.
    When ``sklearn`` is true (the strategy returns a sklearn estimator), the
    estimator's sklearn package is imported with the library, as a handler
    module would at its top. ``requires`` are the modules the strategy
    imports; ``output`` is what ``model.predict`` returns: ``"predict"``
    (sklearn's labels or values) or ``"class_index"`` (the index of the
    class in ``classes_``).
    """

    name: str
    format: str
    imports: str
    load: str
    partial: str | None = None
    available: bool = True
    reason: str = ""
    sklearn: bool = True  # returns a sklearn estimator (so its module is imported up front)
    requires: tuple[str, ...] = ()
    output: str = "predict"

    def import_code(self, sklearn_module: str) -> str:
        code = self.imports
        if self.sklearn and sklearn_module:
            code += f"\nimport {sklearn_module}"
        return code

    def loader(self, sklearn_module: str = "") -> Callable[..., Any]:
        """``loader(path, k=None)``: the strategy's load (or partial load) in this process."""
        namespace: dict[str, Any] = {}
        exec(compile(self.import_code(sklearn_module), f"<{self.name} imports>", "exec"), namespace)  # noqa: S102
        full = compile(self.load, f"<{self.name} load>", "exec")
        partial = compile(self.partial or self.load, f"<{self.name} partial>", "exec")

        def load(path: str | os.PathLike, k: int | None = None) -> Any:
            local = {"path": os.fspath(path), "k": k}
            exec(full if k is None else partial, namespace, local)  # noqa: S102
            return local["model"]

        return load


# The peers return no sklearn estimator: a thin class gives them ``predict``.
_ONNX_IMPORTS = """\
import numpy as np
import onnxruntime
class OnnxModel:
    def __init__(self, path):
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name  # label (classifiers) or variable
    def predict(self, X):
        y = self.session.run([self.output], {self.input: np.asarray(X, dtype=np.float32)})[0]
        return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y"""

_TREELITE_IMPORTS = """\
import numpy as np
import treelite
class TreeliteModel:
    def __init__(self, path):
        self.model = treelite.Model.deserialize(path)
        # task_type 0: binary classifier, 1: regressor, 2: multiclass (treelite 4)
        self.task = int(self.model.get_header_accessor().get_field("task_type")[0])
    def predict(self, X):
        out = treelite.gtil.predict(self.model, np.asarray(X, dtype=np.float64))[:, 0, :]
        if self.task == 1:
            return out[:, 0] if out.shape[1] == 1 else out
        if out.shape[1] == 1:
            return (out[:, 0] > 0.5).astype(np.int64)
        return out.argmax(axis=1)"""


def treeshard_features() -> dict[str, bool]:
    """Which optional read-path features this treeshard install has."""
    import treeshard

    from . import api

    parameters = inspect.signature(api.load).parameters
    features = {
        "lazy": "lazy" in parameters,
        "estimators": "estimators" in parameters,
        "predictor": hasattr(treeshard, "Predictor"),
        "predictor_estimators": False,
    }
    if features["predictor"]:
        try:
            features["predictor_estimators"] = "estimators" in inspect.signature(treeshard.Predictor).parameters
        except (TypeError, ValueError):
            features["predictor_estimators"] = False
    return features


def strategies(features: Mapping[str, bool] | None = None, *, packages: bool = True) -> list[Strategy]:
    """Every strategy, in table order, with ``available`` set for this install.

    ``features``: treeshard's optional features (default: this install's).
    ``packages``: also mark unavailable a strategy whose format or loader
    needs a package that does not import here (the reason names the extra).
    """
    features = treeshard_features() if features is None else features
    lazy, partial = features.get("lazy", False), features.get("estimators", False)
    eager_kw = ", lazy=False" if lazy else ""
    out = [
        Strategy("pickle", "pickle", "import pickle", "with open(path, 'rb') as f:\n    model = pickle.load(f)"),
        Strategy("joblib", "joblib", "import joblib", "model = joblib.load(path)", requires=("joblib",)),
        Strategy("joblib-zlib3", "joblib-zlib3", "import joblib", "model = joblib.load(path)", requires=("joblib",)),
        Strategy("joblib-lz4", "joblib-lz4", "import joblib", "model = joblib.load(path)", requires=("joblib", "lz4.frame")),
        Strategy(
            "skops",
            "skops",
            "import skops.io",
            "model = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))",
            requires=("skops.io",),
        ),
    ]
    for codec in ("lz4", "zstd"):
        fmt = f"treeshard-{codec}"
        out.append(
            Strategy(
                fmt,
                fmt,
                "import treeshard",
                f"model = treeshard.load(path{eager_kw})",
                f"model = treeshard.load(path, estimators=k{eager_kw})" if partial else None,
            )
        )
    for codec in ("lz4", "zstd"):
        fmt = f"treeshard-{codec}"
        out.append(
            Strategy(
                f"{fmt}-lazy",
                fmt,
                "import treeshard",
                "model = treeshard.load(path, lazy=True)",
                "model = treeshard.load(path, estimators=k, lazy=True)" if partial else None,
                available=lazy,
                reason="" if lazy else "treeshard.load has no lazy= yet (issue 3)",
            )
        )
    for codec in ("lz4", "zstd"):
        fmt = f"treeshard-{codec}"
        has = features.get("predictor", False)
        out.append(
            Strategy(
                f"{fmt}-predictor",
                fmt,
                "import treeshard",
                "model = treeshard.Predictor(path)",
                "model = treeshard.Predictor(path, estimators=k)" if features.get("predictor_estimators") else None,
                available=has,
                reason="" if has else "treeshard.Predictor does not exist yet (issue 5)",
                sklearn=False,
            )
        )
    out += [
        Strategy("onnxruntime", "onnx", _ONNX_IMPORTS, "model = OnnxModel(path)", sklearn=False, requires=("onnxruntime",)),
        Strategy(
            "treelite",
            "treelite",
            _TREELITE_IMPORTS,
            "model = TreeliteModel(path)",
            sklearn=False,
            requires=("treelite",),
            output="class_index",
        ),
    ]
    if packages:
        out = [_with_packages(s) for s in out]
    return out


def _with_packages(strategy: Strategy) -> Strategy:
    reason = missing_packages(FORMATS[strategy.format].requires + strategy.requires)
    if not reason or not strategy.available:
        return strategy
    return dataclasses.replace(strategy, available=False, reason=reason)


def get_strategy(name: str, features: Mapping[str, bool] | None = None) -> Strategy:
    for strategy in strategies(features):
        if strategy.name == name:
            return strategy
    raise KeyError(f"unknown strategy {name!r}")


STRATEGY_NAMES = [s.name for s in strategies({}, packages=False)]


# --------------------------------------------------------------------------- the child
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


# --------------------------------------------------------------------------- model facts
def sub_estimators(estimator: Any) -> list[Any]:
    """The fitted decision trees of an estimator (itself for a single tree)."""
    if hasattr(estimator, "tree_"):
        return [estimator]
    import numpy as np

    return [e for e in np.ravel(np.asarray(getattr(estimator, "estimators_", []), dtype=object)) if hasattr(e, "tree_")]


def n_units(estimator: Any) -> int:
    """What ``treeshard.load(estimators=k)`` counts: stages for gradient boosting, else trees."""
    if hasattr(estimator, "n_estimators_"):
        return len(estimator.estimators_)  # the stages held (sklearn's n_estimators_ may count one more)
    return len(sub_estimators(estimator))


def model_nbytes(estimator: Any) -> int:
    """Bytes of the node and value arrays of every tree: the model's in-memory size."""
    total = 0
    for tree in sub_estimators(estimator):
        state = tree.tree_.__getstate__()
        total += state["nodes"].nbytes + state["values"].nbytes
    return int(total)


def describe(estimator: Any) -> dict[str, Any]:
    trees = sub_estimators(estimator)
    return {
        "estimator": type(estimator).__name__,
        "n_trees": len(trees),
        "n_nodes": int(sum(t.tree_.node_count for t in trees)),
        "n_features": int(getattr(estimator, "n_features_in_", 0)),
        "nbytes": model_nbytes(estimator),
        "n_units": n_units(estimator),
        "sklearn_module": sklearn_module_of(estimator),
    }


def sklearn_module_of(estimator: Any) -> str:
    """``sklearn.ensemble`` for ``sklearn.ensemble._forest``: what a user imports."""
    parts = type(estimator).__module__.split(".")
    return ".".join(parts[:2]) if parts[0] == "sklearn" else ""


def file_size(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def is_treeshard_store(path: str | os.PathLike) -> bool:
    path = Path(path)
    if path.is_dir():
        return (path / "zarr.json").is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return "zarr.json" in archive.namelist()
    return False


def warm_file(path: str | os.PathLike) -> None:
    """Read a file once so every strategy is measured with a warm page cache."""
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            while handle.read(16 * 1024 * 1024):
                pass


#: How fresh processes get their bytecode (the ``bytecode`` argument of :func:`run_comparison`).
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


def write_expected(estimator: Any, rows: Any, directory: str | os.PathLike) -> dict[str, Path]:
    """Save the estimator's own outputs on ``rows``, per strategy ``output`` form, for the mismatch count.

    ``"predict"``: ``estimator.predict(rows)``; ``"class_index"`` (single-output
    classifiers): the index of each predicted label in ``classes_``. Outputs
    numpy cannot save without pickle (object labels) are left out.
    """
    import numpy as np

    directory = Path(directory)
    predicted = np.asarray(estimator.predict(rows))
    out = {}
    if predicted.dtype != object:
        out["predict"] = directory / "expected.npy"
        np.save(out["predict"], predicted)
        classes = getattr(estimator, "classes_", None)
        if isinstance(classes, np.ndarray) and predicted.ndim == 1:
            out["class_index"] = directory / "expected-class-index.npy"
            np.save(out["class_index"], np.searchsorted(classes, predicted).astype(np.int64))
    return out


# --------------------------------------------------------------------------- a run
@dataclass
class BenchResult:
    """Medians per strategy, and what was run."""

    model: dict[str, Any]
    figures: dict[str, dict[str, float]]  # strategy -> figure -> median
    skipped: dict[str, str]  # strategy -> reason
    repeat: int
    environment: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "figures": self.figures,
            "skipped": self.skipped,
            "repeat": self.repeat,
            "environment": self.environment,
            "samples": self.samples,
            "baseline": BASELINE,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResult:
        return cls(
            model=dict(data["model"]),
            figures={k: dict(v) for k, v in data["figures"].items()},
            skipped=dict(data.get("skipped", {})),
            repeat=int(data.get("repeat", 0)),
            environment=dict(data.get("environment", {})),
            samples={k: list(v) for k, v in data.get("samples", {}).items()},
        )


@dataclass
class SavedFile:
    path: Path
    size: int
    save: float | None  # median seconds, None when the file was reused


def write_formats(
    estimator: Any,
    directory: str | os.PathLike,
    *,
    formats: Sequence[str] = tuple(FORMATS),
    save_repeat: int = 1,
    progress: Callable[[str], None] | None = None,
    failed: dict[str, str] | None = None,
) -> dict[str, SavedFile]:
    """Save ``estimator`` in every format under ``directory``, timing each save.

    A format the estimator cannot be converted to (a peer's converter raises
    one of its ``convert_errors``) is left out of the result, with the
    message in ``failed`` when given; without ``failed`` the error propagates.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in formats:
        fmt = FORMATS[name]
        path = directory / fmt.filename()
        times = []
        for _ in range(max(1, save_repeat)):
            tmp = path.with_name(f".tmp-{path.name}")  # same suffix: treeshard writes a .zip
            start = time.perf_counter()
            try:
                fmt.save(estimator, tmp)
            except fmt.convert_errors as exc:
                if failed is None:
                    raise
                failed[name] = f"cannot convert the model: {type(exc).__name__}: {exc}".splitlines()[0][:200]
                break
            times.append(time.perf_counter() - start)
            os.replace(tmp, path)
        if name in (failed or {}):
            continue
        out[name] = SavedFile(path=path, size=file_size(path), save=statistics.median(times))
        if progress is not None:
            progress(name)
    return out


def installation() -> str:
    """How treeshard is installed: imported from site-packages (a wheel) or from a source tree (editable, PYTHONPATH)."""
    from . import __file__ as package_file

    parts = Path(package_file).resolve().parts
    if "site-packages" in parts or "dist-packages" in parts:
        return "installed (site-packages)"
    return "source tree (editable install or PYTHONPATH)"


def environment(bytecode: str = "warm") -> dict[str, str]:
    """What the figures depend on: versions, how treeshard is installed, how children get bytecode."""
    from importlib import metadata

    import numpy
    import sklearn

    from . import __version__

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "treeshard": __version__,
        "treeshard_install": installation(),
        "bytecode": f"{bytecode}: {BYTECODE_MODES[bytecode]}",
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", "unset"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for distribution in sorted({d for d, _ in PACKAGES.values()}):
        try:
            env[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            env[distribution] = "not installed"
    return env


def run_comparison(
    files: Mapping[str, SavedFile],
    rows: str | os.PathLike,
    model: Mapping[str, Any],
    *,
    repeat: int = 3,
    only: Sequence[str] | None = None,
    k: int | None = None,
    progress: Any = None,
    python: str = sys.executable,
    after: bool = True,
    warmup: bool = True,
    bytecode: str = "warm",
    expected: Mapping[str, str | os.PathLike] | None = None,
) -> BenchResult:
    """Run every available strategy ``repeat`` times in fresh processes (interleaved).

    ``k`` trees (gradient boosting: stages) are read by the partial load;
    default ``min(PARTIAL_TREES, model["n_units"])``.

    ``after=False`` stops each child at its first prediction (cold start only);
    ``warmup=False`` skips reading the files and one untimed run of every
    strategy beforehand (quicker, and noisier: the first runs then also
    compile bytecode the first time). ``bytecode``: a :data:`BYTECODE_MODES`
    key (see :func:`child_env`).
    ``expected``: the original model's outputs on ``rows`` per strategy
    ``output`` form (:func:`write_expected`), for the mismatch count.
    """
    if k is None:
        k = min(PARTIAL_TREES, int(model.get("n_units", PARTIAL_TREES)))
    env = child_env(bytecode)
    expected = expected or {}
    chosen = [s for s in strategies() if only is None or s.name in only]
    skipped = {s.name: s.reason for s in chosen if not s.available}
    skipped.update({s.name: f"no {s.format} file" for s in chosen if s.available and s.format not in files})
    runnable = [s for s in chosen if s.name not in skipped]
    sklearn_module = model.get("sklearn_module", "")

    def run(strategy: Strategy, *, measure_after: bool) -> dict[str, Any]:
        return run_child(
            strategy,
            files[strategy.format].path,
            rows,
            sklearn_module=sklearn_module,
            k=k,
            python=python,
            after=measure_after,
            expected=expected.get(strategy.output),
            env=env,
        )

    if warmup:
        for name in {s.format for s in runnable}:
            warm_file(files[name].path)
        for strategy in runnable:  # untimed: compiles (and caches) every module the strategy imports
            run(strategy, measure_after=False)
    samples: dict[str, list[dict[str, float]]] = {s.name: [] for s in runnable}
    for _ in range(repeat):
        for strategy in runnable:
            if progress is not None:
                progress.set_postfix_str(strategy.name)
            samples[strategy.name].append(run(strategy, measure_after=after))
            if progress is not None:
                progress.update()
    figures = {}
    for strategy in runnable:
        medians = {key: statistics.median(s[key] for s in samples[strategy.name]) for key in samples[strategy.name][0]}
        saved = files[strategy.format]
        medians["size"] = saved.size
        if saved.save is not None:
            medians["save"] = saved.save
        if after:
            medians["partial_is_full"] = float(strategy.partial is None)
        figures[strategy.name] = medians
    return BenchResult(
        model=dict(model),
        figures=figures,
        skipped=skipped,
        repeat=repeat,
        environment=environment(bytecode),
        samples=samples,
    )


def bench_estimator(
    estimator: Any,
    *,
    repeat: int = 3,
    save_repeat: int = 1,
    rows: Any = None,
    workdir: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
    progress: bool = True,
    label: str = "",
    warmup: bool = True,
    bytecode: str = "warm",
) -> BenchResult:
    """Write ``estimator`` in every format and run the comparison (the CLI's engine).

    Strategies whose package is missing are skipped, with the reason (and the
    extra that installs it) in ``BenchResult.skipped``.
    """
    import numpy as np
    from tqdm import tqdm

    model = describe(estimator)
    model["label"] = label or model["estimator"]
    selected = [s for s in strategies() if only is None or s.name in only]
    formats = sorted({s.format for s in selected if s.available} | {FORMATS[BASELINE].name}, key=list(FORMATS).index)
    n_runs = repeat * sum(1 for s in selected if s.available)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="treeshard-bench-"))
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        rows_path = workdir / "rows.npy"
        if rows is None:
            rows = np.random.default_rng(0).standard_normal((N_ROWS, model["n_features"]))
        rows = np.asarray(rows)[:N_ROWS]
        np.save(rows_path, rows)
        expected = write_expected(estimator, rows, workdir)
        bar = stack.enter_context(
            tqdm(total=len(formats) + n_runs, desc="treeshard bench", unit="step", disable=not progress, file=sys.stderr)
        )

        def saved(name: str) -> None:
            bar.set_postfix_str(f"saved {name}")
            bar.update()

        bar.set_postfix_str("saving")
        failed: dict[str, str] = {}
        files = write_formats(estimator, workdir, formats=formats, save_repeat=save_repeat, progress=saved, failed=failed)
        only_names = [s.name for s in selected]
        result = run_comparison(
            files, rows_path, model, repeat=repeat, only=only_names, progress=bar, warmup=warmup, bytecode=bytecode, expected=expected
        )
    for strategy in selected:
        if strategy.format in failed:
            result.skipped[strategy.name] = f"{strategy.format}: {failed[strategy.format]}"
    return result


# --------------------------------------------------------------------------- output
#: (figure key, column title, kind) of the two printed tables.
COLD_COLUMNS = [
    ("cold_start", "cold start", "s"),
    ("interpreter", "interpreter", "s"),
    ("import", "import", "s"),
    ("load", "load", "s"),
    ("first_predict", "1st predict", "s"),
]
AFTER_COLUMNS = [
    ("size", "file size", "bytes"),
    ("save", "save", "s"),
    ("partial", "partial load", "s"),
    ("predict_1", "predict 1 row", "s"),
    ("predict_1000", f"predict {N_ROWS} rows", "s"),
    ("load_rss", "load peak mem", "bytes"),
    ("mismatch", f"differ from sklearn (of {N_ROWS})", "count"),
]


def human_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def human_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _cell(figures: Mapping[str, float], baseline: Mapping[str, float] | None, key: str, kind: str) -> str:
    if key not in figures:
        return "-"
    value = figures[key]
    if kind == "count":
        return f"{value:.0f}"
    text = human_bytes(value) if kind == "bytes" else human_seconds(value)
    if key == "partial" and figures.get("partial_is_full"):
        text += "*"
    if baseline is not None and key in baseline and baseline[key] > 0:
        text += f" ({value / baseline[key]:.2f}x)"
    return text


def format_tables(result: BenchResult, *, markdown: bool = False) -> str:
    """The two tables (cold start; size, memory and latency after load) as text or markdown."""
    baseline = result.figures.get(BASELINE)
    model = result.model
    lines = [
        f"{model.get('label', model['estimator'])}: {model['estimator']}, {model['n_trees']} trees, "
        f"{model['n_nodes']:,} nodes, {human_bytes(model['nbytes'])} in memory; "
        f"medians of {result.repeat} fresh processes; (ratio) = strategy / {BASELINE}, lower is better",
    ]
    if result.environment:
        lines.append(environment_line(result.environment))
    lines.append("")
    tables = (("cold start: fresh process to first one-row prediction", COLD_COLUMNS), ("size, memory and latency", AFTER_COLUMNS))
    for i, (title, columns) in enumerate(tables):
        header = ["strategy"] + [c[1] for c in columns]
        body = [[name] + [_cell(fig, baseline, key, kind) for key, _, kind in columns] for name, fig in result.figures.items()]
        if i == 0:  # one line per skipped strategy, with the reason
            body += [[name] + [f"skipped: {reason}"] + [""] * (len(columns) - 1) for name, reason in result.skipped.items()]
        lines.append(f"**{title}**\n" if markdown else title)
        lines.extend(_render(header, body, markdown=markdown))
        lines.append("")
    if any(f.get("partial_is_full") for f in result.figures.values()):
        lines.append(f"partial load: the first {_partial_k(result)} trees (gradient boosting: stages); * a full load, the format cannot do less")
    return "\n".join(lines).rstrip() + "\n"


def environment_line(env: Mapping[str, str]) -> str:
    """One line: versions, how treeshard is installed, and how the children got their bytecode."""
    versions = ", ".join(f"{name} {env[key]}" for name, key in (("Python", "python"), ("numpy", "numpy"), ("sklearn", "sklearn"), ("treeshard", "treeshard")) if key in env)
    peers = ", ".join(f"{d} {env[d]}" for d in sorted({d for d, _ in PACKAGES.values()}) if env.get(d, "not installed") != "not installed")
    parts = [versions, f"treeshard from {env.get('treeshard_install', '?')}", f"bytecode {env.get('bytecode', '?')}"]
    if peers:
        parts.insert(1, peers)
    return "environment: " + "; ".join(parts)


def _partial_k(result: BenchResult) -> int:
    return min(PARTIAL_TREES, int(result.model.get("n_units", PARTIAL_TREES)))


def _render(header: list[str], body: list[list[str]], *, markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in body]
        return out
    widths = [max(len(row[i]) for row in [header, *body] if not (row[1].startswith("skipped") and i > 0)) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for row in body:
        if row[1].startswith("skipped"):
            out.append(row[0].ljust(widths[0]) + "  " + row[1])
            continue
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return out


def plot(result: BenchResult, path: str | os.PathLike) -> None:
    """A bar chart of the main figures, one panel each (needs matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "--plot needs matplotlib: pip install 'treeshard[bench]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.figures)
    y = list(range(len(names)))[::-1]
    panels = [
        ("cold start to first prediction (s)", None),
        ("file size (MB)", ("size", 1 / 2**20)),
        ("load peak memory (MB)", ("load_rss", 1 / 2**20)),
        ("load (s, fresh process)", ("load", 1.0)),
        ("predict 1 row (ms)", ("predict_1", 1e3)),
        (f"predict {N_ROWS} rows (ms)", ("predict_1000", 1e3)),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(18, 4 + 0.75 * len(names)), constrained_layout=True)
    colors = {"pickle": "#888888", "joblib": "#4c72b0", "skops": "#dd8452", "treeshard": "#55a868"}

    def color(name: str) -> str:
        return next((c for prefix, c in colors.items() if name.startswith(prefix)), "#c44e52")

    for ax, (title, spec) in zip(axes.ravel(), panels):
        if spec is None:
            parts = [("interpreter", "#bbbbbb"), ("import", "#8172b3"), ("load", "#4c72b0"), ("first_predict", "#55a868")]
            left = [0.0] * len(names)
            for key, c in parts:
                widths = [result.figures[n].get(key, 0.0) for n in names]
                ax.barh(y, widths, left=left, color=c, label=key.replace("_", " "))
                left = [a + b for a, b in zip(left, widths)]
            base = result.figures.get(BASELINE, {}).get("cold_start")
            for yi, n in zip(y, names):
                ax.text(result.figures[n]["cold_start"], yi, " " + _label(result.figures[n]["cold_start"], base), va="center", fontsize=11)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=4, fontsize=11, frameon=False)
        else:
            key, scale = spec
            values = [result.figures[n].get(key, math.nan) * scale for n in names]
            ax.barh(y, values, color=[color(n) for n in names])
            base = result.figures.get(BASELINE, {}).get(key)
            base = None if base is None else base * scale
            for yi, v in zip(y, values):
                if not math.isnan(v):
                    ax.text(v, yi, " " + _label(v, base), va="center", fontsize=11)
        if base:
            ax.axvline(base, color="black", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=14)
        ax.set_yticks(y, names, fontsize=12)
        ax.tick_params(axis="x", labelsize=11)
        ax.margins(x=0.32)
    model = result.model
    fig.suptitle(
        f"{model.get('label', model['estimator'])}: {model['estimator']}, {model['n_trees']} trees, "
        f"{human_bytes(model['nbytes'])} in memory; medians of {result.repeat} fresh processes "
        f"(dashed line and ratios: vs {BASELINE} uncompressed)",
        fontsize=15,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _label(value: float, base: float | None) -> str:
    """A bar's label: three significant digits, never in exponent form.

    >>> _label(2048.4, 1024.2), _label(0.01234, None), _label(12.0, None)
    ('2,048 (2.00x)', '0.0123', '12')
    """
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if base:
        text += f" ({value / base:.2f}x)"
    return text


# --------------------------------------------------------------------------- CLI
def add_parser(commands: Any) -> None:
    """Register ``treeshard bench`` on the CLI's subparsers."""
    parser = commands.add_parser(
        "bench",
        help="compare pickle, joblib, skops, onnxruntime, treelite and treeshard on your model",
        description=(
            "Save MODEL as pickle, joblib (uncompressed, zlib, lz4), skops, ONNX, treelite and treeshard "
            "(lz4, zstd), then time cold start, load, predict, size and peak memory in "
            "fresh processes. Ratios are relative to joblib uncompressed. A strategy whose "
            "package is not installed is skipped, with the extra that adds it."
        ),
    )
    parser.add_argument("model", help="a treeshard store, or a joblib/pickle file (with --trust-pickle)")
    parser.add_argument("--trust-pickle", action="store_true", help="confirm MODEL is a pickle/joblib file you trust")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per strategy (default 3; figures are medians)")
    parser.add_argument("--save-repeat", type=int, default=1, help="saves per format (default 1)")
    parser.add_argument("--rows", help=".npy file of input rows (default: random normal rows)")
    parser.add_argument("--strategies", help="comma-separated subset (default: all): " + ",".join(STRATEGY_NAMES))
    parser.add_argument(
        "--formats", help="comma-separated file formats; runs every strategy reading them: " + ",".join(FORMATS)
    )
    parser.add_argument(
        "--bytecode",
        choices=sorted(BYTECODE_MODES),
        default="warm",
        help="warm (default): children import every module from cached bytecode, as an installed package does; "
        "inherit: this environment as it is",
    )
    parser.add_argument("--workdir", help="keep the written files here (default: a temporary directory)")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart (needs matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="write every figure and sample as JSON")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--label", help="the model's name in the tables and chart (default: MODEL's file name)")
    parser.add_argument("--no-warmup", action="store_true", help="skip warming the page cache and imports first (quicker, noisier)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib: pip install 'treeshard[bench]' (or pip install matplotlib)", file=sys.stderr)
            return 2
    if args.repeat < 1:
        print("error: --repeat must be at least 1", file=sys.stderr)
        return 2
    try:
        only = selected_strategies(args.strategies, args.formats)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    estimator = _load_model(args)
    if estimator is None:
        return 2
    rows = None
    if args.rows:
        import numpy as np

        rows = np.load(args.rows, allow_pickle=False)
    try:
        result = bench_estimator(
            estimator,
            repeat=args.repeat,
            save_repeat=args.save_repeat,
            rows=rows,
            workdir=args.workdir,
            only=only,
            progress=not args.quiet,
            label=args.label or Path(args.model).name,
            warmup=not args.no_warmup,
            bytecode=args.bytecode,
        )
    except ChildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_tables(result, markdown=args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
    if args.plot:
        plot(result, args.plot)
        print(f"chart written to {args.plot}")
    return 0


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def selected_strategies(strategy_names: str | None, format_names: str | None) -> list[str] | None:
    """The strategies ``--strategies``/``--formats`` ask for (None: all), plus the baseline.

    Raises ValueError for an unknown name, and for a name whose package is not
    installed (the message names the extra): asked for explicitly, it is an
    error rather than a skipped row.
    """
    wanted, formats = _names(strategy_names), _names(format_names)
    if not wanted and not formats:
        return None
    unknown = sorted(set(wanted) - set(STRATEGY_NAMES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {STRATEGY_NAMES}")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown formats {unknown}; choose from {list(FORMATS)}")
    by_name = {s.name: s for s in strategies({}, packages=False)}
    only = wanted + [name for name, s in by_name.items() if s.format in formats and name not in wanted]
    for name in only:
        strategy = by_name[name]
        reason = missing_packages(FORMATS[strategy.format].requires + strategy.requires)
        if reason:
            raise ValueError(f"strategy {name} ({strategy.format} format) {reason}")
    if BASELINE not in only:
        only.append(BASELINE)
    return only


def _load_model(args: argparse.Namespace) -> Any:
    if not Path(args.model).exists():
        print(f"error: {args.model}: no such file or directory", file=sys.stderr)
        return None
    if is_treeshard_store(args.model):
        from .api import load

        kwargs = {"lazy": False} if treeshard_features()["lazy"] else {}
        return load(args.model, **kwargs)
    if not args.trust_pickle:
        print(
            "error: MODEL is not a treeshard store, so it is read as a pickle/joblib file, and loading one\n"
            "runs any code it contains. Only benchmark files you created or fully trust, then pass --trust-pickle.",
            file=sys.stderr,
        )
        return None
    from .convert import load_trusted_pickle

    return load_trusted_pickle(args.model)
