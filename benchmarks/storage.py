"""asv benchmarks: every storage strategy on every reference model.

Parameters are ``model`` (``$TREESHARD_BENCH_MODELS``, default RF-L, GB-M and
RF-XL; see ``models.py``) and ``strategy`` (or ``format`` for what only
depends on the file). Strategies come from :mod:`treeshard.bench`, the same
definitions ``treeshard bench`` runs; one whose treeshard feature has not
landed yet (lazy loading, the Predictor), or whose package is not installed
(the peers onnxruntime and treelite: ``pip install 'treeshard[peers]'``), is
skipped from ``setup`` and runs as soon as it is there.

- ``ColdStart.track_*``: fresh processes timed from outside (``setup_cache``
  runs ``$TREESHARD_BENCH_REPEAT`` of them per strategy, default 3, and each
  track returns a median);
- ``FileSize.track_file_size``;
- ``Load.time_load``, ``Load.time_partial_load`` (first 10 trees; a full load
  for formats that cannot do less), ``Load.peakmem_load``;
- ``Open.time_open`` (treeshard: config only);
- ``Predict.time_predict_one_row`` / ``time_predict_1000_rows`` after a load
  and one warm-up prediction;
- ``Save.time_save``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import joblib  # noqa: F401 - imported once here: asv forks every benchmark from this module's process
import numpy  # noqa: F401
import skops.io  # noqa: F401
import sklearn.ensemble  # noqa: F401
import sklearn.tree  # noqa: F401
import treeshard  # noqa: F401
import zarr  # noqa: F401
from treeshard import bench

from . import models

MODELS = models.selected_models()
STRATEGIES = bench.STRATEGY_NAMES
FORMATS = list(bench.FORMATS)
TREESHARD_FORMATS = list(models.TREESHARD_FORMATS)


def _format_file(cached: models.CachedModel, fmt: str) -> Path:
    """The cached model's file of ``fmt``; NotImplementedError (asv: skipped) when there is none."""
    if fmt not in cached.meta["files"]:
        raise NotImplementedError(bench.FORMATS[fmt].missing() or cached.meta.get("failed", {}).get(fmt, f"no {fmt} file"))
    return cached.path(fmt)


def _available(name: str) -> bench.Strategy:
    strategy = bench.get_strategy(name)
    if not strategy.available:
        raise NotImplementedError(strategy.reason)
    return strategy


class ColdStart:
    """Fresh interpreter -> imports -> load -> first one-row prediction, timed from outside."""

    params = [MODELS, STRATEGIES]
    param_names = ["model", "strategy"]
    unit = "seconds"
    timeout = 600

    def setup_cache(self) -> dict:
        repeat = int(os.environ.get("TREESHARD_BENCH_REPEAT", "3"))
        results = {}
        for name in MODELS:
            cached = models.ensure(name)
            result = bench.run_comparison(cached.files(), cached.rows, cached.meta["model"], repeat=repeat, after=False)
            results[name] = result.figures
        return results

    setup_cache.timeout = 7200  # type: ignore[attr-defined]

    def setup(self, results: dict, model: str, strategy: str) -> None:
        _available(strategy)
        if strategy not in results.get(model, {}):
            raise NotImplementedError(f"{strategy} did not run on {model}")

    def track_cold_start(self, results: dict, model: str, strategy: str) -> float:
        return results[model][strategy]["cold_start"]

    def track_cold_interpreter(self, results: dict, model: str, strategy: str) -> float:
        return results[model][strategy]["interpreter"]

    def track_cold_import(self, results: dict, model: str, strategy: str) -> float:
        return results[model][strategy]["import"]

    def track_cold_load(self, results: dict, model: str, strategy: str) -> float:
        return results[model][strategy]["load"]

    def track_cold_first_predict(self, results: dict, model: str, strategy: str) -> float:
        return results[model][strategy]["first_predict"]

    def track_cold_load_peak_memory(self, results: dict, model: str, strategy: str) -> float:
        return results[model][strategy]["load_rss"]

    track_cold_load_peak_memory.unit = "bytes"  # type: ignore[attr-defined]


class FileSize:
    params = [MODELS, FORMATS]
    param_names = ["model", "format"]
    unit = "bytes"
    timeout = 3600  # the first run may build the model

    def setup(self, model: str, fmt: str) -> None:
        self.path = _format_file(models.ensure(model), fmt)

    def track_file_size(self, model: str, fmt: str) -> int:
        return bench.file_size(self.path)


class Load:
    """In-process loads (imports done in setup), one load per sample."""

    params = [MODELS, STRATEGIES]
    param_names = ["model", "strategy"]
    number = 1
    repeat = (1, 5, 30.0)
    rounds = 1
    warmup_time = 0
    timeout = 3600

    def setup(self, model: str, strategy: str) -> None:
        self.strategy = _available(strategy)
        self.cached = models.ensure(model)
        self.path = _format_file(self.cached, self.strategy.format)
        self.load = self.strategy.loader(self.cached.sklearn_module)

    def time_load(self, model: str, strategy: str) -> None:
        self.load(self.path)

    def time_partial_load(self, model: str, strategy: str) -> None:
        self.load(self.path, bench.PARTIAL_TREES)

    def peakmem_load(self, model: str, strategy: str) -> None:
        self.load(self.path)


class Open:
    """treeshard.open: read and validate the config record only."""

    params = [MODELS, TREESHARD_FORMATS]
    param_names = ["model", "format"]
    timeout = 3600

    def setup(self, model: str, fmt: str) -> None:
        import treeshard

        self.open = treeshard.open
        self.path = models.ensure(model).path(fmt)

    def time_open(self, model: str, fmt: str) -> None:
        with self.open(self.path) as handle:
            handle.info  # noqa: B018


class Predict:
    """Prediction latency after the model is loaded and has predicted once."""

    params = [MODELS, STRATEGIES]
    param_names = ["model", "strategy"]
    repeat = (3, 10, 10.0)
    rounds = 1
    timeout = 3600

    def setup(self, model: str, strategy: str) -> None:
        import numpy as np

        self.strategy = _available(strategy)
        cached = models.ensure(model)
        rows = np.load(cached.rows)
        self.one, self.batch = rows[:1], rows[: bench.N_ROWS]
        self.model = self.strategy.loader(cached.sklearn_module)(_format_file(cached, self.strategy.format))
        self.model.predict(self.one)

    def time_predict_one_row(self, model: str, strategy: str) -> None:
        self.model.predict(self.one)

    def time_predict_1000_rows(self, model: str, strategy: str) -> None:
        self.model.predict(self.batch)


class Save:
    params = [MODELS, FORMATS]
    param_names = ["model", "format"]
    number = 1
    repeat = (1, 3, 60.0)
    rounds = 1
    warmup_time = 0
    timeout = 3600

    def setup(self, model: str, fmt: str) -> None:
        if reason := bench.FORMATS[fmt].missing():
            raise NotImplementedError(reason)
        cached = models.ensure(model)
        if fmt in cached.meta.get("failed", {}):
            raise NotImplementedError(cached.meta["failed"][fmt])
        self.estimator = cached.load_estimator()
        self.directory = tempfile.mkdtemp(prefix="treeshard-asv-save-")
        self.target = Path(self.directory) / bench.FORMATS[fmt].filename()
        self.save = bench.FORMATS[fmt].save

    def teardown(self, model: str, fmt: str) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def time_save(self, model: str, fmt: str) -> None:
        self.save(self.estimator, self.target)
