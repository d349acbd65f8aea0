"""A run: the model's facts, its files in every format, every strategy measured."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .child import BYTECODE_MODES, child_env, run_child
from .formats import FORMATS, PACKAGES
from .strategies import BASELINE, N_ROWS, PARTIAL_TREES, Strategy, strategies


def sub_estimators(estimator: Any) -> list[Any]:
    """The fitted decision trees of an estimator (itself for a single tree)."""
    if hasattr(estimator, "tree_"):
        return [estimator]
    import numpy as np

    return [e for e in np.ravel(np.asarray(getattr(estimator, "estimators_", []), dtype=object)) if hasattr(e, "tree_")]


def hist_trees(estimator: Any) -> list[Any]:
    """The ``TreePredictor`` objects of a histogram gradient boosting (empty for other estimators)."""
    return [predictor for iteration in getattr(estimator, "_predictors", []) for predictor in iteration]


def n_units(estimator: Any) -> int:
    """What ``treeshard.load(estimators=k)`` counts: stages for gradient boosting, else trees."""
    if hasattr(estimator, "_predictors"):  # histogram gradient boosting: iterations
        return len(estimator._predictors)
    if hasattr(estimator, "n_estimators_"):
        return len(estimator.estimators_)  # the stages held (sklearn's n_estimators_ may count one more)
    return len(sub_estimators(estimator))


def model_nbytes(estimator: Any) -> int:
    """Bytes of the node and value arrays of every tree: the model's in-memory size."""
    total = sum(p.nodes.nbytes + p.raw_left_cat_bitsets.nbytes + p.binned_left_cat_bitsets.nbytes for p in hist_trees(estimator))
    for tree in sub_estimators(estimator):
        state = tree.tree_.__getstate__()
        total += state["nodes"].nbytes + state["values"].nbytes
    return int(total)


def describe(estimator: Any) -> dict[str, Any]:
    trees, hist = sub_estimators(estimator), hist_trees(estimator)
    return {
        "estimator": type(estimator).__name__,
        "n_trees": len(trees) + len(hist),
        "n_nodes": int(sum(t.tree_.node_count for t in trees) + sum(len(p.nodes) for p in hist)),
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


class RowsError(ValueError):
    """The model refuses the rows the benchmark would feed every strategy."""


#: How fresh processes get their bytecode (the ``bytecode`` argument of :func:`run_comparison`).
def write_expected(estimator: Any, rows: Any, directory: str | os.PathLike) -> dict[str, Path]:
    """Save the estimator's own outputs on ``rows``, per strategy ``output`` form, for the mismatch count.

    ``"predict"``: ``estimator.predict(rows)``; ``"class_index"`` (single-output
    classifiers): the index of each predicted label in ``classes_``. Outputs
    numpy cannot save without pickle (object labels) are left out.
    """
    import numpy as np

    directory = Path(directory)
    try:
        predicted = np.asarray(estimator.predict(rows))
    except (ValueError, TypeError) as exc:
        named = getattr(estimator, "feature_names_in_", None) is not None
        raise RowsError(
            f"the model cannot predict the benchmark's rows, a {rows.shape[0]} x {rows.shape[1]} {rows.dtype} array "
            f"({type(exc).__name__}: {exc}); pass --rows with a .npy file of rows it accepts"
            + (" (a model that selects DataFrame columns by name cannot be benchmarked: the rows are a plain array)" if named else "")
        ) from None
    out = {}
    if predicted.dtype != object:
        out["predict"] = directory / "expected.npy"
        np.save(out["predict"], predicted)
        classes = getattr(estimator, "classes_", None)
        if isinstance(classes, np.ndarray) and predicted.ndim == 1:
            out["class_index"] = directory / "expected-class-index.npy"
            np.save(out["class_index"], np.searchsorted(classes, predicted).astype(np.int64))
    return out


@dataclass
class BenchResult:
    """Medians per strategy, and what was run."""

    model: dict[str, Any]
    figures: dict[str, dict[str, float]]  # strategy -> figure -> median
    skipped: dict[str, str]  # strategy -> reason
    repeat: int
    environment: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    saves: dict[str, list[float]] = field(default_factory=dict)  # format -> seconds of each save

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "figures": self.figures,
            "skipped": self.skipped,
            "repeat": self.repeat,
            "environment": self.environment,
            "samples": self.samples,
            "saves": self.saves,
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
            saves={k: list(v) for k, v in data.get("saves", {}).items()},
        )


@dataclass
class SavedFile:
    path: Path
    size: int
    save: float | None  # median seconds, None when the file was reused
    save_samples: tuple[float, ...] = ()  # seconds of each save, in order


def write_formats(
    estimator: Any,
    directory: str | os.PathLike,
    *,
    formats: Sequence[str] = tuple(FORMATS),
    save_repeat: int = 1,
    progress: Callable[[str], None] | None = None,
    failed: dict[str, str] | None = None,
) -> dict[str, SavedFile]:
    """Save ``estimator`` in every format under ``directory``, timing each save
    (``save_repeat`` saves per format, each over the last: ``SavedFile.save`` is their median).

    A format the estimator cannot be converted to (a peer's converter raises
    one of its ``convert_errors``) is left out of the result, with the
    message in ``failed`` when given; without ``failed`` the error propagates.
    """
    if isinstance(save_repeat, bool) or not isinstance(save_repeat, int) or save_repeat < 1:
        raise ValueError(f"save_repeat must be an integer of at least 1, got {save_repeat!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in formats:
        fmt = FORMATS[name]
        path = directory / fmt.filename()
        times = []
        for _ in range(save_repeat):
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
        out[name] = SavedFile(path=path, size=file_size(path), save=statistics.median(times), save_samples=tuple(times))
        if progress is not None:
            progress(name)
    return out


def installation() -> str:
    """How treeshard is installed: imported from site-packages (a wheel) or from a source tree (editable, PYTHONPATH)."""
    from .. import __file__ as package_file

    parts = Path(package_file).resolve().parts
    if "site-packages" in parts or "dist-packages" in parts:
        return "installed (site-packages)"
    return "source tree (editable install or PYTHONPATH)"


def environment(bytecode: str = "warm") -> dict[str, str]:
    """What the figures depend on: versions, how treeshard is installed, how children get bytecode."""
    from importlib import metadata

    import numpy
    import sklearn

    from .. import __version__

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
        saves={name: list(saved.save_samples) for name, saved in files.items() if saved.save_samples},
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
