"""Reference models of the benchmarks: built once, cached on disk, never in the repo.

The cache lives in ``$TREESHARD_BENCH_CACHE`` (default ``~/.cache/treeshard-bench``),
one directory per model holding the model in every format of
:data:`treeshard.bench.FORMATS` whose package is installed (a format
installed later, e.g. the peers', is added on the next use), ``rows.npy``
(1000 input rows), the model's own outputs on them (``expected*.npy``, for
the mismatch count) and ``meta.json`` (recipe, fit time, in-memory size,
file sizes, save times, formats the model could not be converted to).

Models (``make_classification`` data is shared by RF-L, GB-M and RF-XL):

- ``tiny``: a 10-tree depth-8 forest on 2,000 x 10 rows, for CI and development;
- ``RF-L``: ``RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=2)`` on
  ``make_classification(n_samples=100_000, n_features=30, n_informative=10, n_classes=3, random_state=0)``;
- ``GB-M``: ``GradientBoostingClassifier(n_estimators=500, max_depth=3, random_state=0)``
  on the first 20,000 rows of that data (all 100,000 take minutes to fit on
  this machine, and depth-3 trees are the same size either way);
- ``IF-L``: ``IsolationForest(n_estimators=300, random_state=0)`` on RF-L's X;
- ``HGB-L``: ``HistGradientBoostingClassifier(max_iter=500, early_stopping=False, random_state=0)``
  on RF-L's data (1,500 trees; ``benchmarks/hist_boosting.py`` has its own figures);
- ``RF-XL``: a 1500-tree forest (over 2 GiB in memory): RF-L's 100 trees
  deep-copied 15 times (see :func:`_forest_xl`; ``TREESHARD_BENCH_RF_XL_FIT=1``
  fits 1500 trees instead, about half an hour on two free cores).

The treeshard files are rewritten whenever treeshard's source changes (the
format is young); the others are written once. Build from the command line
(RF-L and GB-M take minutes to fit; RF-XL then takes a few minutes to write
its 2 GB files; an interrupted build resumes from the cached pickle)::

    python benchmarks/models.py build tiny RF-L GB-M RF-XL
    python benchmarks/models.py list
    python benchmarks/models.py table RF-XL --repeat 3 --plot RF-XL.png
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treeshard import bench

CACHE_ENV = bench.CACHE_ENV
MODELS_ENV = "TREESHARD_BENCH_MODELS"
DEFAULT_MODELS = "RF-L,GB-M,RF-XL"
TREESHARD_FORMATS = ("treeshard-lz4", "treeshard-zstd")
RF_XL_TREES = 1500
#: skl2onnx and an onnxruntime session take over 600 bytes of memory per node (RF-XL's
#: 24M nodes: ~15 GB), so the onnx file is not written for larger models unless this
#: environment variable raises the limit.
ONNX_MAX_NODES_ENV = "TREESHARD_BENCH_ONNX_MAX_NODES"
ONNX_MAX_NODES = 5_000_000


cache_dir = bench.cache_dir


def selected_models() -> list[str]:
    """Models the asv suite runs on: ``$TREESHARD_BENCH_MODELS`` (comma-separated)."""
    names = [n.strip() for n in os.environ.get(MODELS_ENV, DEFAULT_MODELS).split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise ValueError(f"{MODELS_ENV}: unknown models {unknown}; known: {list(RECIPES)}")
    return names


# --------------------------------------------------------------------------- recipes
def _classification(n_samples: int, n_features: int, n_informative: int) -> tuple[Any, Any]:
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n_samples, n_features=n_features, n_informative=n_informative, n_classes=3, random_state=0
    )


def _reference_data() -> tuple[Any, Any]:
    return _classification(100_000, 30, 10)


def _tiny() -> tuple[Any, Any]:
    from sklearn.ensemble import RandomForestClassifier

    X, y = _classification(2_000, 10, 5)
    return RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0).fit(X, y), X


def _forest(n_estimators: int) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        from sklearn.ensemble import RandomForestClassifier

        X, y = _reference_data()
        return RandomForestClassifier(n_estimators=n_estimators, random_state=0, n_jobs=2).fit(X, y), X

    return build


def _forest_xl() -> tuple[Any, Any]:
    """RF-XL: RF-L's 100 fitted trees, each deep-copied 15 times (1500 distinct tree objects).

    Fitting 1500 fully grown trees takes about half an hour of both cores,
    which this shared machine cannot spare; copies have the real size, node
    layout and prediction cost of fitted trees (no compressor window spans the
    143 MB between two copies), and predictions equal RF-L's. Set
    ``TREESHARD_BENCH_RF_XL_FIT=1`` to fit 1500 trees instead.
    """
    if os.environ.get("TREESHARD_BENCH_RF_XL_FIT") == "1":
        return _forest(RF_XL_TREES)()
    import copy

    import numpy as np

    base = ensure("RF-L").load_estimator()
    copies = RF_XL_TREES // len(base.estimators_)
    model = copy.copy(base)
    model.estimators_ = [copy.deepcopy(tree) for _ in range(copies) for tree in base.estimators_]
    model.n_estimators = len(model.estimators_)
    return model, np.load(cache_dir() / "RF-L" / "rows.npy")


def _gradient_boosting() -> tuple[Any, Any]:
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = _reference_data()
    model = GradientBoostingClassifier(n_estimators=500, max_depth=3, random_state=0).fit(X[:20_000], y[:20_000])
    return model, X


def _isolation_forest() -> tuple[Any, Any]:
    from sklearn.ensemble import IsolationForest

    X, _ = _reference_data()
    return IsolationForest(n_estimators=300, random_state=0).fit(X), X


def _hist_gradient_boosting() -> tuple[Any, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _reference_data()
    return HistGradientBoostingClassifier(max_iter=500, early_stopping=False, random_state=0).fit(X, y), X


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    build: Callable[[], tuple[Any, Any]]  # -> (fitted estimator, X)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("tiny", "RandomForestClassifier(10 trees, max_depth=8), 2,000 x 10, 3 classes", _tiny),
        Recipe("RF-L", "RandomForestClassifier(100 trees, n_jobs=2), make_classification 100,000 x 30, 3 classes", _forest(100)),
        Recipe(
            "GB-M",
            "GradientBoostingClassifier(500 stages, max_depth=3), first 20,000 rows of RF-L's data",
            _gradient_boosting,
        ),
        Recipe(
            "RF-XL",
            f"RandomForestClassifier({RF_XL_TREES} trees, n_jobs=2): RF-L's 100 trees deep-copied 15 times",
            _forest_xl,
        ),
        Recipe("IF-L", "IsolationForest(300 trees), RF-L's X (issue 13; benchmarks/iforest.py has its figures)", _isolation_forest),
        Recipe(
            "HGB-L",
            "HistGradientBoostingClassifier(max_iter=500, early_stopping=False), RF-L's data (issue 13; benchmarks/hist_boosting.py)",
            _hist_gradient_boosting,
        ),
    )
}


# --------------------------------------------------------------------------- the cache
def treeshard_fingerprint() -> str:
    """Hash of treeshard's sources (minus the CLI and this harness): the treeshard files' key."""
    import treeshard

    root = Path(treeshard.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if path.name == "cli.py" or path.relative_to(root).parts[0] == "bench":
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class CachedModel:
    """A built model: its files by format, its input rows, and its facts."""

    name: str
    directory: Path
    meta: dict[str, Any]

    def path(self, fmt: str) -> Path:
        return self.directory / bench.FORMATS[fmt].filename()

    @property
    def rows(self) -> Path:
        return self.directory / "rows.npy"

    @property
    def sklearn_module(self) -> str:
        return self.meta["model"]["sklearn_module"]

    def files(self) -> dict[str, bench.SavedFile]:
        return {
            fmt: bench.SavedFile(path=self.path(fmt), size=bench.file_size(self.path(fmt)), save=info.get("save"))
            for fmt, info in self.meta["files"].items()
        }

    @property
    def expected(self) -> dict[str, Path]:
        """The model's own outputs on ``rows`` (see :func:`treeshard.bench.write_expected`)."""
        names = {"predict": "expected.npy", "class_index": "expected-class-index.npy"}
        return {form: self.directory / name for form, name in names.items() if (self.directory / name).is_file()}

    def load_estimator(self) -> Any:
        """The fitted estimator, from the cached pickle (we wrote it: trusted)."""
        import pickle

        with open(self.path("pickle"), "rb") as handle:
            return pickle.load(handle)  # noqa: S301 - our own cache file


def _meta_path(directory: Path) -> Path:
    return directory / "meta.json"


def _write_meta(directory: Path, meta: dict[str, Any]) -> None:
    tmp = directory / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, _meta_path(directory))


def _too_large(fmt: str, n_nodes: int) -> str | None:
    """Why ``fmt`` is not written for a model of ``n_nodes`` nodes (None: it is)."""
    limit = int(os.environ.get(ONNX_MAX_NODES_ENV, ONNX_MAX_NODES))
    if fmt == "onnx" and n_nodes > limit:
        return f"{n_nodes:,} nodes: converting to onnx would take over {n_nodes * 600 // 1024**3:,} GB of memory (limit {limit:,} nodes, ${ONNX_MAX_NODES_ENV})"
    return None


def ensure(name: str, *, refresh: bool = True, log: Callable[[str], None] = lambda message: None) -> CachedModel:
    """The cached model ``name``, building it if needed.

    With ``refresh`` (the default), treeshard files written by other
    treeshard sources are rewritten first.
    """
    directory = cache_dir() / name
    meta_file = _meta_path(directory)
    fingerprint = treeshard_fingerprint()
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        cached = CachedModel(name, directory, meta)
        present = all(cached.path(fmt).exists() for fmt in meta["files"])
        if present and (not refresh or meta.get("treeshard_fingerprint") == fingerprint):
            return _complete(cached, log)
        if present:
            log(f"{name}: treeshard changed since the files were written; rewriting the treeshard files")
            estimator = cached.load_estimator()
            written = bench.write_formats(estimator, directory, formats=TREESHARD_FORMATS)
            for fmt, saved in written.items():
                meta["files"][fmt] = {"size": saved.size, "save": saved.save}
            meta["treeshard_fingerprint"] = fingerprint
            _write_meta(directory, meta)
            return _complete(cached, log)
    return _build(name, directory, fingerprint, log)


def _complete(cached: CachedModel, log: Callable[[str], None]) -> CachedModel:
    """Write what a cache built earlier lacks: formats whose package is now installed, the expected outputs."""
    meta = cached.meta
    too_large = {fmt: why for fmt in bench.FORMATS if (why := _too_large(fmt, meta["model"]["n_nodes"]))}
    todo = [
        fmt
        for fmt in bench.FORMATS
        if fmt not in meta["files"] and fmt not in meta.get("failed", {}) and fmt not in too_large and not bench.FORMATS[fmt].missing()
    ]
    if not todo and cached.expected:
        return cached
    import numpy as np

    estimator = cached.load_estimator()
    if not cached.expected:
        bench.write_expected(estimator, np.load(cached.rows), cached.directory)
    failed: dict[str, str] = {}
    for fmt, saved in bench.write_formats(estimator, cached.directory, formats=todo, failed=failed).items():
        meta["files"][fmt] = {"size": saved.size, "save": saved.save}
        log(f"{cached.name}: wrote {fmt} ({bench.human_bytes(saved.size)}, {saved.save:.1f} s)")
    if failed:
        meta.setdefault("failed", {}).update(failed)
    _write_meta(cached.directory, meta)
    return cached


def _build(name: str, directory: Path, fingerprint: str, log: Callable[[str], None]) -> CachedModel:
    """Fit (or resume: a pickle already written is reused) and write the missing formats.

    ``build.json`` records progress (fit time, each written file), so an
    interrupted build resumes without refitting.
    """
    import numpy as np

    recipe = RECIPES[name]
    directory.mkdir(parents=True, exist_ok=True)
    progress_file = directory / "build.json"
    record = json.loads(progress_file.read_text()) if progress_file.is_file() else {"files": {}}
    pickle_path = directory / bench.FORMATS["pickle"].filename()
    if pickle_path.is_file() and (directory / "rows.npy").is_file():
        log(f"{name}: resuming from the cached pickle")
        estimator = CachedModel(name, directory, {}).load_estimator()
    else:
        log(f"{name}: fitting {recipe.description}")
        start = time.perf_counter()
        estimator, X = recipe.build()
        record = {"fit_seconds": time.perf_counter() - start, "files": {}}
        log(f"{name}: fitted in {record['fit_seconds']:.0f} s; writing every format")
        np.save(directory / "rows.npy", np.ascontiguousarray(X[-bench.N_ROWS :]))
        del X
    bench.write_expected(estimator, np.load(directory / "rows.npy"), directory)
    failed: dict[str, str] = {}
    n_nodes = bench.describe(estimator)["n_nodes"]
    for fmt in bench.FORMATS:
        path = directory / bench.FORMATS[fmt].filename()
        if path.exists() and fmt not in TREESHARD_FORMATS:  # written once; treeshard files always
            record["files"].setdefault(fmt, {"size": bench.file_size(path), "save": None})
            continue
        if reason := bench.FORMATS[fmt].missing() or _too_large(fmt, n_nodes):
            log(f"{name}: no {fmt} file: {reason}")
            continue
        written = bench.write_formats(estimator, directory, formats=[fmt], failed=failed)
        if fmt not in written:
            log(f"{name}: no {fmt} file: {failed[fmt]}")
            continue
        saved = written[fmt]
        record["files"][fmt] = {"size": saved.size, "save": saved.save}
        progress_file.write_text(json.dumps(record, indent=1))
        log(f"{name}: wrote {fmt} ({bench.human_bytes(saved.size)}, {saved.save:.1f} s)")
    meta = {
        "name": name,
        "recipe": recipe.description,
        "fit_seconds": record.get("fit_seconds"),
        "model": bench.describe(estimator),
        "files": record["files"],
        "treeshard_fingerprint": fingerprint,
        "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "failed": failed,
    }
    meta["model"]["label"] = name
    _write_meta(directory, meta)
    return CachedModel(name, directory, meta)


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="build and list the cached benchmark models")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or refresh) models")
    build.add_argument("models", nargs="*", default=selected_models())
    sub.add_parser("list", help="show cached models")
    table = sub.add_parser("table", help="run the `treeshard bench` comparison on a cached model's files")
    table.add_argument("model", choices=list(RECIPES))
    table.add_argument("--repeat", type=int, default=3)
    table.add_argument("--json", help="write the figures as JSON")
    table.add_argument("--plot", help="write the bar chart")
    table.add_argument("--markdown", action="store_true")
    table.add_argument("--bytecode", choices=sorted(bench.BYTECODE_MODES), default="warm")
    table.add_argument("--strategies", help="comma-separated subset (default: all), as for `treeshard bench`")
    table.add_argument("--formats", help="comma-separated formats, as for `treeshard bench`")
    args = parser.parse_args(argv)
    if args.command == "table":
        from tqdm import tqdm

        # Files as last built: run `build` first to rewrite stale treeshard files.
        only = bench.selected_strategies(args.strategies, args.formats)
        cached = ensure(args.model, refresh=False, log=lambda message: print(message, file=sys.stderr, flush=True))
        n_runs = args.repeat * sum(1 for s in bench.strategies() if s.available and (only is None or s.name in only))
        with tqdm(total=n_runs, desc=args.model, unit="run", file=sys.stderr) as bar:
            result = bench.run_comparison(
                cached.files(),
                cached.rows,
                cached.meta["model"],
                repeat=args.repeat,
                progress=bar,
                bytecode=args.bytecode,
                expected=cached.expected,
                only=only,
            )
        print(bench.format_tables(result, markdown=args.markdown))
        print(f"save: one save per format when the cache was built or refreshed (last: {cached.meta['built']}), not a median")
        if args.json:
            Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
        if args.plot:
            bench.plot(result, args.plot)
        return 0
    if args.command == "build":
        for name in args.models:
            cached = ensure(name, log=lambda message: print(message, flush=True))
            model = cached.meta["model"]
            print(
                f"{name}: {model['n_trees']} trees, {model['n_nodes']:,} nodes, "
                f"{bench.human_bytes(model['nbytes'])} in memory, fitted in {cached.meta['fit_seconds']:.0f} s "
                f"-> {cached.directory}"
            )
        return 0
    for name in RECIPES:
        meta_file = _meta_path(cache_dir() / name)
        if not meta_file.is_file():
            print(f"{name}: not built")
            continue
        meta = json.loads(meta_file.read_text())
        sizes = ", ".join(f"{fmt} {bench.human_bytes(info['size'])}" for fmt, info in meta["files"].items())
        print(f"{name}: {bench.human_bytes(meta['model']['nbytes'])} in memory; {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
