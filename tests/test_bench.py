"""Keep the benchmarks from rotting: `treeshard bench` end to end on a tiny model,
the asv suite discovered by `asv check` and run once in-process on a tiny model.

No timing is asserted anywhere: only that every strategy is measured (or
skipped with a reason) and that every figure is there.
"""

from __future__ import annotations

import importlib
import json
import os
import re
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
FIGURES = ["cold_start", "interpreter", "import", "load", "first_predict", "predict_1", "predict_1000", "partial", "load_rss", "size", "save", "mismatch"]
#: Every package a strategy needs beyond the core install and joblib.
EXTRA_MODULES = ("lz4", "skops", "skl2onnx", "onnxruntime", "treelite", "matplotlib")
PEERS = ("onnxruntime", "treelite")


@pytest.fixture(scope="module")
def tiny_model() -> RandomForestClassifier:
    X, y = make_classification(n_samples=300, n_features=6, n_informative=3, n_classes=3, random_state=0)
    return RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory):
    """One bytecode cache for every run of this module (``$TREESHARD_BENCH_CACHE``)."""
    cache = tmp_path_factory.mktemp("bench-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TREESHARD_BENCH_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def bench_run(tiny_model, tmp_path_factory, bench_cache):
    """One `treeshard bench` run over every strategy, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("bench")
    model = tmp / "tiny.zip"  # a treeshard store: no --trust-pickle needed
    treeshard.save(tiny_model, model)
    # --bytecode inherit: a fresh bytecode cache would compile every module once (slow); see test_children_import_*
    argv = ["bench", str(model), "--repeat", "1", "--save-repeat", "2", "--quiet", "--no-warmup", "--bytecode", "inherit"]
    argv += ["--json", str(tmp / "out.json")]
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
    result = json.loads((tmp / "out.json").read_text())
    assert set(result["figures"]) | set(result["skipped"]) == set(bench.STRATEGY_NAMES)
    assert bench.BASELINE in result["figures"]
    for name in bench.STRATEGY_NAMES:
        rows = [line for line in cold.splitlines() if line.split(" ", 1)[0] == name]
        assert len(rows) == 1, f"{name} row missing:\n{cold}"
        rows = [line for line in after.splitlines() if line.split(" ", 1)[0] == name]
        assert len(rows) == (name in result["figures"]), f"{name}:\n{after}"  # a skipped strategy: one line in all
    formats = {strategy.name: strategy.format for strategy in bench.strategies()}
    assert set(result["saves"]) == {formats[name] for name in result["figures"]}
    for name, figures in result["figures"].items():
        saves = result["saves"][formats[name]]
        assert len(saves) == 2 and figures["save"] == (saves[0] + saves[1]) / 2, name  # --save-repeat 2: their median
        assert set(FIGURES) <= set(figures), name
        assert figures["cold_start"] > figures["load"] > 0, name
        assert figures["size"] > 0, name
        if name in PEERS:  # onnxruntime: float32 thresholds, not exact by design
            assert 0 <= figures["mismatch"] <= bench.N_ROWS, name
        else:
            assert figures["mismatch"] == 0, name
    for name, reason in result["skipped"].items():
        assert reason, name
        assert len(re.findall(rf"^{name} +skipped: {re.escape(reason)}$", out, flags=re.M)) == 1
    env = result["environment"]
    assert env["bytecode"] == "inherit: this environment as it is"
    assert env["treeshard_install"] == "source tree (editable install or PYTHONPATH)"
    assert bench.environment_line(env) in out
    for module, (distribution, extra) in bench.PACKAGES.items():
        if bench.importable(module):
            assert env[distribution] != "not installed"
        else:
            assert env[distribution] == "not installed"
            assert any(f"pip install 'treeshard[{extra}]'" in reason for reason in result["skipped"].values())
    if has_matplotlib:
        assert (tmp / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_strategy_is_listed_and_compiles():
    """Every treeshard strategy is available (no feature probes left); a missing package is a reason, not a hidden row."""
    listed = bench.strategies(packages=False)
    assert [s.name for s in listed] == bench.STRATEGY_NAMES
    assert all(s.available and not s.reason for s in listed)
    for strategy in bench.strategies():
        if strategy.name.startswith("treeshard"):
            assert strategy.available, strategy.name
        assert strategy.available or strategy.reason, strategy.name
    by_name = {s.name: s for s in listed}
    assert by_name["treeshard-lz4"].partial == "model = treeshard.load(path, estimators=k, lazy=False)"
    assert by_name["treeshard-zstd-lazy"].partial == "model = treeshard.load(path, estimators=k, lazy=True)"
    assert by_name["treeshard-lz4-predictor"].partial is None and not by_name["treeshard-lz4-predictor"].sklearn
    for strategy in listed:
        compile(bench.child_code(strategy, "sklearn.ensemble"), strategy.name, "exec")


def _run_cli_without(modules, argv, cache):
    """`treeshard <argv>` in a fresh interpreter where ``modules`` cannot be imported (as if not installed)."""
    code = (
        "import sys\n"
        f"for name in {list(modules)!r}:\n"
        "    sys.modules[name] = None  # `import name` now raises ImportError\n"
        "from treeshard.cli import main\n"
        f"sys.exit(main({list(argv)!r}))\n"
    )
    env = {**os.environ, "TREESHARD_BENCH_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def test_bench_runs_with_only_the_core_and_joblib(tiny_model, tmp_path, bench_cache):
    """No extra installed: every strategy that needs one is skipped with one line naming it; the rest run."""
    model = tmp_path / "tiny.joblib"
    joblib.dump(tiny_model, model)
    argv = ["bench", str(model), "--trust-pickle", "--repeat", "1", "--quiet", "--no-warmup", "--bytecode", "inherit"]
    argv += ["--json", str(tmp_path / "out.json")]
    done = _run_cli_without(EXTRA_MODULES, argv, bench_cache)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["skipped"] == {
        "joblib-lz4": "needs lz4, not installed: pip install 'treeshard[bench]'",
        "skops": "needs skops, not installed: pip install 'treeshard[bench]'",
        "onnxruntime": "needs onnxruntime, skl2onnx, not installed: pip install 'treeshard[peers]'",
        "treelite": "needs treelite, not installed: pip install 'treeshard[peers]'",
    }
    assert set(result["figures"]) == set(bench.STRATEGY_NAMES) - set(result["skipped"])
    assert all(figures["mismatch"] == 0 for figures in result["figures"].values())
    for name, reason in result["skipped"].items():
        assert len(re.findall(rf"^{name} +skipped: {re.escape(reason)}$", done.stdout, flags=re.M)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "tiny.joblib"]  # nothing written beside the model


@pytest.mark.parametrize(
    ("blocked", "option", "message"),
    [
        (["lz4"], "--formats=joblib-lz4", "strategy joblib-lz4 (joblib-lz4 format) needs lz4, not installed: pip install 'treeshard[bench]'"),
        (["skops"], "--strategies=pickle,skops", "strategy skops (skops format) needs skops, not installed: pip install 'treeshard[bench]'"),
        (["treelite"], "--formats=joblib,treelite", "strategy treelite (treelite format) needs treelite, not installed: pip install 'treeshard[peers]'"),
        (["onnxruntime", "skl2onnx"], "--formats=onnx", "strategy onnxruntime (onnx format) needs onnxruntime, skl2onnx, not installed: pip install 'treeshard[peers]'"),
        ([], "--formats=joblib,h5", "unknown formats ['h5']; choose from " + str(list(bench.FORMATS))),
        ([], "--strategies=onnx", "unknown strategies ['onnx']; choose from " + str(bench.STRATEGY_NAMES)),
    ],
)
def test_asking_for_a_missing_strategy_is_an_error(blocked, option, message, monkeypatch, tmp_path, capsys):
    importable = bench.importable
    monkeypatch.setattr(bench.formats, "importable", lambda module: module.split(".")[0] not in blocked and importable(module))
    names = option.split("=", 1)[1]
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        if option.startswith("--strategies"):
            bench.selected_strategies(names, None)
        else:
            bench.selected_strategies(None, names)
    store = tmp_path / "tiny.zip"
    store.write_bytes(b"")  # never read: the options are checked first
    assert main(["bench", str(store), option, "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_selected_strategies():
    assert bench.selected_strategies(None, None) is None
    assert bench.selected_strategies("treeshard-lz4", None) == ["treeshard-lz4", "joblib"]
    assert bench.selected_strategies(None, "pickle,treeshard-zstd") == [
        "pickle", "treeshard-zstd", "treeshard-zstd-lazy", "treeshard-zstd-predictor", "joblib"
    ]
    assert bench.selected_strategies("joblib", "pickle") == ["joblib", "pickle"]


def test_get_strategy_names_an_unknown_strategy_and_the_known_ones():
    assert bench.get_strategy("joblib").name == "joblib"
    known = ", ".join(bench.STRATEGY_NAMES)
    with pytest.raises(ValueError) as info:
        bench.get_strategy("nope")
    assert str(info.value) == f"unknown strategy 'nope'; choose from {known}"


def test_save_repeat_saves_each_format_that_many_times(tiny_model, tmp_path, monkeypatch):
    calls = []

    def save(estimator, path):
        calls.append(path.name)
        joblib.dump(estimator, path)

    monkeypatch.setitem(bench.FORMATS, "counted", bench.Format("counted", ".counted", save, "joblib, counted"))
    written = bench.write_formats(tiny_model, tmp_path, formats=["counted"], save_repeat=3)
    assert calls == [".tmp-model.counted"] * 3
    saved = written["counted"]
    assert len(saved.save_samples) == 3 and saved.save == sorted(saved.save_samples)[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.counted"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=f"^save_repeat must be an integer of at least 1, got {re.escape(repr(bad))}$"):
            bench.write_formats(tiny_model, tmp_path, formats=["counted"], save_repeat=bad)


@pytest.mark.parametrize("option", ["--repeat", "--save-repeat"])
def test_repeats_below_one_are_refused(option, tmp_path, capsys):
    store = tmp_path / "tiny.zip"
    store.write_bytes(b"")  # never read: the options are checked first
    assert main(["bench", str(store), option, "0", "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {option} must be at least 1\n"


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_an_output_in_a_missing_directory_is_refused_before_the_run(option, tmp_path, capsys, monkeypatch):
    def run(*args, **kwargs):
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(bench.command, "bench_estimator", run)
    store = tmp_path / "tiny.zip"
    store.write_bytes(b"")  # never read: the options are checked first
    target = tmp_path / "missing" / "out.file"
    assert main(["bench", str(store), option, str(target), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {option} {target}: the directory {str(tmp_path / 'missing')!r} does not exist\n"


def test_a_model_a_peer_cannot_convert_is_skipped_with_the_reason(tiny_model, tmp_path, monkeypatch):
    def cannot(estimator, path):
        raise NotImplementedError("Unable to find a shape calculator for type <class 'Forest'>.\nIt usually means...")

    peer = bench.Format("peer", ".peer", cannot, "a peer", convert_errors=(NotImplementedError,))
    monkeypatch.setitem(bench.FORMATS, "peer", peer)
    failed = {}
    written = bench.write_formats(tiny_model, tmp_path, formats=["joblib", "peer"], failed=failed)
    assert list(written) == ["joblib"]
    assert failed == {"peer": "cannot convert the model: NotImplementedError: Unable to find a shape calculator for type <class 'Forest'>."}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.joblib"]
    with pytest.raises(NotImplementedError, match="^Unable to find a shape calculator"):
        bench.write_formats(tiny_model, tmp_path, formats=["peer"])


def test_a_pipeline_treelite_cannot_import_is_skipped_with_the_reason(tiny_model, tmp_path):
    """treelite raises TreeliteError (an Exception only) for a Pipeline: the format is skipped, not the run."""
    pytest.importorskip("treelite")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=100, n_features=6, random_state=0)
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=2, random_state=0)).fit(X, y)
    failed = {}
    written = bench.write_formats(pipeline, tmp_path, formats=["joblib", "treelite"], failed=failed)
    assert list(written) == ["joblib"]
    assert failed == {"treelite": "cannot convert the model: RuntimeError: treelite: Not supported model type: Pipeline"}


def test_rows_the_model_refuses_are_an_error_not_a_traceback(tiny_model, tmp_path, capsys):
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"x": [0.5, 1.5, 2.5, 3.5], "city": ["a", "b", "a", "b"]})
    pipeline = make_pipeline(make_column_transformer((OneHotEncoder(), ["city"]), remainder="passthrough"), RandomForestClassifier(n_estimators=2, random_state=0))
    treeshard.save(pipeline.fit(frame, [0, 1, 0, 1]), tmp_path / "pipeline.zip")
    assert main(["bench", str(tmp_path / "pipeline.zip"), "--repeat", "1", "--quiet", "--no-warmup"]) == 2
    assert capsys.readouterr().err == (
        "error: the model cannot predict the benchmark's rows, a 1000 x 2 float64 array (ValueError: Specifying the columns "
        "using strings is only supported for dataframes.); pass --rows with a .npy file of rows it accepts (a model that "
        "selects DataFrame columns by name cannot be benchmarked: the rows are a plain array)\n"
    )
    treeshard.save(tiny_model, tmp_path / "tiny.zip")
    np.save(tmp_path / "narrow.npy", np.zeros((3, 2)))
    assert main(["bench", str(tmp_path / "tiny.zip"), "--rows", str(tmp_path / "narrow.npy"), "--quiet", "--no-warmup"]) == 2
    assert capsys.readouterr().err == (
        "error: the model cannot predict the benchmark's rows, a 3 x 2 float64 array (ValueError: X has 2 features, but "
        "RandomForestClassifier is expecting 6 features as input.); pass --rows with a .npy file of rows it accepts\n"
    )
    np.save(tmp_path / "flat.npy", np.zeros(6))
    assert main(["bench", str(tmp_path / "tiny.zip"), "--rows", str(tmp_path / "flat.npy"), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: --rows {tmp_path / 'flat.npy'}: expected a 2-D array of rows, got ndarray (6,)\n"
    (tmp_path / "rows.txt").write_text("1,2,3\n")
    assert main(["bench", str(tmp_path / "tiny.zip"), "--rows", str(tmp_path / "rows.txt"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"error: --rows {tmp_path / 'rows.txt'}: not a readable .npy file of numeric rows (")


def test_children_import_treeshard_from_cached_bytecode(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    assert bench.child_env("inherit") is None
    env = bench.child_env("warm", tmp_path / "pycache")
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["PYTHONPYCACHEPREFIX"] == str(tmp_path / "pycache")
    code = "import treeshard.bench, sys; print(treeshard.bench.__cached__); print(sys.flags.dont_write_bytecode)"
    cached, flag = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert flag == "0"
    assert Path(cached).is_file() and Path(cached).is_relative_to(tmp_path / "pycache")
    with pytest.raises(ValueError, match=r"^bytecode must be one of \['inherit', 'warm'\], not 'cold'$"):
        bench.child_env("cold")


def test_peers_predict_through_their_strategies(tiny_model, tmp_path):
    """onnxruntime and treelite, in-process, on the tiny model (needs the peers extra)."""
    for module in ("skl2onnx", "onnxruntime", "treelite"):
        pytest.importorskip(module)
    rows = np.random.default_rng(0).standard_normal((200, tiny_model.n_features_in_))
    expected = bench.write_expected(tiny_model, rows, tmp_path)
    assert np.array_equal(np.load(expected["predict"]), tiny_model.predict(rows))
    assert np.array_equal(tiny_model.classes_[np.load(expected["class_index"])], tiny_model.predict(rows))
    files = bench.write_formats(tiny_model, tmp_path, formats=["onnx", "treelite"])
    for name in PEERS:
        strategy = bench.get_strategy(name)
        assert strategy.available and not strategy.sklearn
        model = strategy.loader()(files[strategy.format].path)
        got = model.predict(rows)
        want = np.load(expected[strategy.output])
        assert got.shape == want.shape
        assert np.count_nonzero(got != want) <= 2, name  # float32 thresholds (onnx) may flip a row near a split


def test_bench_needs_trust_for_pickles(tiny_model, tmp_path, capsys):
    model = tmp_path / "tiny.joblib"
    joblib.dump(tiny_model, model)
    assert main(["bench", str(model), "--quiet"]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    args = build_parser().parse_args(["bench", str(model), "--trust-pickle"])
    loaded = bench.command._load_model(args)
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
    assert set(cached.meta["files"]) | set(cached.meta["failed"]) == {f for f in bench.FORMATS if not bench.FORMATS[f].missing()}
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


def test_asv_suite_runs_on_hgb_l(tmp_path, monkeypatch):
    """HGB-L's recipe, on 600 rows of its data instead of 100,000, through the asv benchmarks."""
    monkeypatch.setenv("TREESHARD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TREESHARD_BENCH_MODELS", "tiny,HGB-L")
    monkeypatch.syspath_prepend(str(ROOT))
    modules = ("benchmarks.storage", "benchmarks.engine", "benchmarks.models", "benchmarks")
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)
    storage = importlib.import_module("benchmarks.storage")
    small = make_classification(n_samples=600, n_features=30, n_informative=10, n_classes=3, random_state=0)
    monkeypatch.setattr(storage.models, "_reference_data", lambda: small)
    assert storage.MODELS == ["tiny", "HGB-L"]
    cached = storage.models.ensure("HGB-L")
    model = cached.load_estimator()
    assert type(model).__name__ == "HistGradientBoostingClassifier"
    assert (model.max_iter, model.early_stopping, model.n_iter_, model.random_state) == (500, False, 500, 0)
    ran = 0
    for cls in (storage.FileSize, storage.Load, storage.Open, storage.Predict, storage.Save):
        for params in _param_sets(cls):
            if params[0] != "HGB-L":
                continue
            instance = cls()
            instance.setup(*params)
            for name in dir(cls):
                if name.startswith(("time_", "peakmem_", "track_")):
                    value = getattr(instance, name)(*params)
                    if name.startswith("track_"):
                        assert value > 0
                    ran += 1
    assert ran >= 8
    engine_module = importlib.import_module("benchmarks.engine")
    instance = engine_module.EngineScoring()
    instance.setup("HGB-L", "treeshard", "none", 100)
    instance.time_predict_proba("HGB-L", "treeshard", "none", 100)
    for name in modules:
        sys.modules.pop(name, None)


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


def test_size_table_forests_are_what_fitting_n_trees_gives(tiny_suite, tmp_path):
    """benchmarks/sizes.py takes the first N trees of one fit, and grows a cached forest with warm_start."""
    sizes = importlib.import_module("benchmarks.sizes")
    X, y = make_classification(n_samples=300, n_features=6, n_informative=3, n_classes=3, random_state=0)

    def nodes(forest):
        return [tree.tree_.__getstate__()["nodes"] for tree in forest.estimators_]

    five = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    two = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)
    head = sizes.first_trees(five, 2)
    assert len(head.estimators_) == head.n_estimators == 2 and len(five.estimators_) == 5
    assert all(np.array_equal(a, b) for a, b in zip(nodes(head), nodes(two), strict=True))
    assert np.array_equal(head.predict_proba(X), two.predict_proba(X))
    grown = two.set_params(warm_start=True, n_estimators=5).fit(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(nodes(grown), nodes(five), strict=True))


def _fake_python(tmp_path, body: str) -> str:
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_run_child_keeps_every_line_of_a_fast_child(tmp_path):
    """A child that writes both lines at once: the AFTER line, already buffered by readline, is kept."""
    cold = {"numpy": 0.1, "imports": 0.2, "load": 0.3, "first_predict": 0.4, "inside": 1.0, "rss_import": 5, "rss_before": 5, "rss_load": 7}
    after = {"predict_1": 0.01, "predict_1000": 0.02, "mismatch": 3}
    lines = f"COLD {json.dumps(cold)}\nAFTER {json.dumps(after)}\n"
    python = _fake_python(tmp_path, f"printf '%s' '{lines}'\n")
    figures = bench.run_child(bench.get_strategy("joblib"), "model", "rows", sklearn_module="", python=python)
    assert {key: figures[key] for key in ("load", "first_predict", "load_rss", "predict_1", "predict_1000", "mismatch")} == {
        "load": 0.3, "first_predict": 0.4, "load_rss": 2, "predict_1": 0.01, "predict_1000": 0.02, "mismatch": 3
    }
    assert figures["partial"] == 0.3  # no partial load reported: the full load


def test_run_child_times_out(tmp_path):
    python = _fake_python(tmp_path, "exec sleep 30\n")
    with pytest.raises(bench.ChildError, match=r"^joblib: timed out after 1 s$"):
        bench.run_child(bench.get_strategy("joblib"), "model", "rows", sklearn_module="", python=python, timeout=1)
