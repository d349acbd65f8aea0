"""Keep the benchmarks from rotting: `treeshard bench` end to end on a tiny model,
the asv suite discovered by `asv check` and run once in-process on a tiny model.

No timing is asserted anywhere: only that every strategy is measured (or
skipped with a reason) and that every figure is there.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

joblib = pytest.importorskip("joblib")
pytest.importorskip("skops")

from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

import treeshard  # noqa: E402
from treeshard import bench  # noqa: E402
from treeshard.cli import build_parser, main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ["cold_start", "interpreter", "import", "load", "first_predict", "predict_1", "predict_1000", "partial", "load_rss", "size", "save"]


@pytest.fixture(scope="module")
def tiny_model() -> RandomForestClassifier:
    X, y = make_classification(n_samples=300, n_features=6, n_informative=3, n_classes=3, random_state=0)
    return RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def bench_run(tiny_model, tmp_path_factory):
    """One `treeshard bench` run over every strategy, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("bench")
    model = tmp / "tiny.zip"  # a treeshard store: no --trust-pickle needed
    treeshard.save(tiny_model, model)
    argv = ["bench", str(model), "--repeat", "1", "--quiet", "--no-warmup", "--json", str(tmp / "out.json")]
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    if has_matplotlib:
        argv += ["--plot", str(tmp / "out.png")]
    return tmp, argv, has_matplotlib


def test_bench_table_has_every_strategy(bench_run, capsys):
    tmp, argv, has_matplotlib = bench_run
    assert main(argv) == 0
    out = capsys.readouterr().out
    cold, after = out.split("size, memory and latency")
    assert "tiny.zip: RandomForestClassifier, 4 trees" in cold
    for name in bench.STRATEGY_NAMES:
        for table in (cold, after):
            rows = [line for line in table.splitlines() if line.split(" ", 1)[0] == name]
            assert len(rows) == 1, f"{name} row missing:\n{table}"
    result = json.loads((tmp / "out.json").read_text())
    assert set(result["figures"]) | set(result["skipped"]) == set(bench.STRATEGY_NAMES)
    assert bench.BASELINE in result["figures"]
    for name, figures in result["figures"].items():
        assert set(FIGURES) <= set(figures), name
        assert figures["cold_start"] > figures["load"] > 0, name
        assert figures["size"] > 0, name
    for name, reason in result["skipped"].items():
        assert reason, name
        assert f"{name}  skipped: {reason}" in out
    if has_matplotlib:
        assert (tmp / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_strategies_track_treeshard_features():
    features = bench.treeshard_features()
    available = {s.name: s.available for s in bench.strategies()}
    assert available["treeshard-lz4-lazy"] == features["lazy"]
    assert available["treeshard-lz4-predictor"] == features["predictor"] == hasattr(treeshard, "Predictor")
    # Nothing is hidden when a feature is missing: the row is there, with the reason.
    missing = bench.strategies({})
    assert [s.name for s in missing] == bench.STRATEGY_NAMES
    assert all(s.reason for s in missing if not s.available)
    for strategy in bench.strategies() + missing:
        compile(bench.child_code(strategy, "sklearn.ensemble"), strategy.name, "exec")


def test_bench_needs_trust_for_pickles(tiny_model, tmp_path, capsys):
    model = tmp_path / "tiny.joblib"
    joblib.dump(tiny_model, model)
    assert main(["bench", str(model), "--quiet"]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    args = build_parser().parse_args(["bench", str(model), "--trust-pickle"])
    loaded = bench._load_model(args)
    assert type(loaded) is RandomForestClassifier and len(loaded.estimators_) == 4


def test_markdown_and_text_tables_agree():
    figures = {key: 1.0 for key in FIGURES}
    result = bench.BenchResult(
        model={"estimator": "X", "n_trees": 1, "n_nodes": 1, "nbytes": 1},
        figures={"joblib": figures, "treeshard-lz4": {**figures, "load": 0.25}},
        skipped={"skops": "not installed"},
        repeat=1,
    )
    text = bench.format_tables(result)
    markdown = bench.format_tables(result, markdown=True)
    assert "(0.25x)" in text and "(0.25x)" in markdown
    assert "skipped: not installed" in text and "skipped: not installed" in markdown


# --------------------------------------------------------------------------- asv suite
@pytest.fixture()
def tiny_suite(tmp_path, monkeypatch):
    monkeypatch.setenv("TREESHARD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TREESHARD_BENCH_MODELS", "tiny")
    monkeypatch.syspath_prepend(str(ROOT))
    modules = ("benchmarks.storage", "benchmarks.dispatch", "benchmarks.engine", "benchmarks.models", "benchmarks")
    for name in modules:
        sys.modules.pop(name, None)
    storage = importlib.import_module("benchmarks.storage")
    yield storage
    for name in modules:
        sys.modules.pop(name, None)


def test_asv_suite_runs_once_on_tiny(tiny_suite):
    """Every asv benchmark, called the way asv calls it, on the tiny model (one sample each)."""
    storage = tiny_suite
    cached = storage.models.ensure("tiny")
    assert set(cached.meta["files"]) == set(bench.FORMATS)
    ran = 0
    for cls in (storage.FileSize, storage.Load, storage.Open, storage.Predict, storage.Save):
        for params in _param_sets(cls):
            instance = cls()
            try:
                instance.setup(*params)
            except NotImplementedError:
                continue  # a feature that has not landed: asv skips it the same way
            for name in dir(cls):
                if name.startswith(("time_", "peakmem_", "track_")):
                    value = getattr(instance, name)(*params)
                    if name.startswith("track_"):
                        assert value > 0
                    ran += 1
            if hasattr(instance, "teardown"):
                instance.teardown(*params)
    assert ran > 0
    dispatch = importlib.import_module("benchmarks.dispatch")
    for engine in ("auto", "sklearn"):
        instance = dispatch.DispatchLatency()
        instance.setup("tiny", engine, 10)
        instance.time_predict_proba("tiny", engine, 10)
        assert (instance.model.estimators_.engine._engine is not None) is (engine == "auto")
    engine_module = importlib.import_module("benchmarks.engine")
    for params in (("tiny", "treeshard", "all", 100), ("tiny", "sklearn", "none", 1)):
        instance = engine_module.EngineScoring()
        instance.setup(*params)
        instance.time_predict_proba(*params)
        assert type(instance.model).__name__ == ("Predictor" if params[1] == "treeshard" else "RandomForestClassifier")
        assert instance.X.shape == (params[3], instance.model.n_features_in_)
    cold = storage.ColdStart()
    results = {"tiny": {"joblib": {key: 1.0 for key in ["cold_start", "interpreter", "import", "load", "first_predict", "load_rss"]}}}
    cold.setup(results, "tiny", "joblib")
    for name in dir(cold):
        if name.startswith("track_"):
            assert getattr(cold, name)(results, "tiny", "joblib") == 1.0


def _param_sets(cls) -> list[tuple[str, str]]:
    models, second = cls.params
    picks = [p for p in second if p in {"joblib", "treeshard-lz4", "treeshard-lz4-lazy", "treeshard-lz4-predictor"}]
    return [(model, pick) for model in models for pick in picks]


def test_asv_check_discovers_the_suite(tiny_suite):
    """What `asv check` does (discover every benchmark, check its signatures), in-process."""
    config = pytest.importorskip("asv.config")
    discovery = pytest.importorskip("asv_runner.discovery")
    conf = config.Config.load(str(ROOT / "asv.conf.json"))
    assert conf.environment_type == "existing" and conf.benchmark_dir.endswith("benchmarks")
    saved_meta_path = list(sys.meta_path)
    try:
        found = list(discovery.disc_benchmarks(str(ROOT / "benchmarks")))
        assert all(benchmark.check(str(ROOT / "benchmarks")) for benchmark in found)
    finally:
        sys.meta_path[:] = saved_meta_path
    names = {benchmark.name for benchmark in found}
    assert {
        "storage.ColdStart.track_cold_start",
        "storage.FileSize.track_file_size",
        "storage.Load.time_load",
        "storage.Load.time_partial_load",
        "storage.Load.peakmem_load",
        "storage.Predict.time_predict_one_row",
        "storage.Predict.time_predict_1000_rows",
        "storage.Save.time_save",
        "dispatch.DispatchLatency.time_predict_proba",
        "engine.EngineScoring.time_predict_proba",
    } <= names
