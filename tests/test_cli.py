"""The ``treeshard`` command line: info (human and --json), convert, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from helpers.compare import assert_round_trip_exact
from helpers.data import make_data
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import treeshard
from treeshard import cli

# predict_log_proba of a tree that gives a class probability 0
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")


@pytest.fixture(scope="module")
def model() -> RandomForestClassifier:
    X, y = make_data("string")
    return RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(X, y)


@pytest.fixture
def store(model, tmp_path) -> Path:
    path = tmp_path / "model.zip"
    treeshard.save(model, path, metadata={"dataset": "synthetic", "accuracy": 0.5})
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- info
def test_info_human(store, model, capsys):
    code, out, err = run(["info", store], capsys)
    assert code == 0, err
    n_nodes = sum(e.tree_.node_count for e in model.estimators_)
    lines = out.splitlines()
    assert lines[0] == "estimator       RandomForestClassifier (classifier)"
    assert "estimators      3 trees" in lines
    assert f"nodes           {n_nodes:,}" in lines
    assert "features        5" in lines
    assert "format version  1" in lines
    assert "codec           lz4" in lines
    assert 'metadata        {"accuracy": 0.5, "dataset": "synthetic"}' in lines
    assert any(line.startswith("versions        ") and "sklearn" in line for line in lines)
    assert any(line.startswith("size            ") and "stored" in line for line in lines)
    assert any(line.strip().startswith("nodes/threshold") for line in lines)


def test_info_json(store, capsys):
    code, out, err = run(["info", store, "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    with treeshard.open(store) as handle:
        info = handle.info
    assert data == json.loads(json.dumps(info.to_dict()))
    assert data["estimator"] == "RandomForestClassifier"
    assert data["n_estimators"] == data["n_trees"] == 3
    assert data["n_nodes"] == info.n_nodes
    assert data["metadata"] == {"dataset": "synthetic", "accuracy": 0.5}
    assert data["stored_bytes"] == sum(a["stored_bytes"] for a in data["arrays"].values())
    assert data["nbytes"] == sum(a["nbytes"] for a in data["arrays"].values())


def test_info_lists_unserializable_params(tmp_path, capsys):
    X, y = make_data("binary")
    model = RandomForestClassifier(n_estimators=2, random_state=np.random.RandomState(0)).fit(X, y)
    treeshard.save(model, tmp_path / "m")
    code, out, _ = run(["info", tmp_path / "m"], capsys)
    assert code == 0
    assert "not stored      random_state (saved as null)" in out.splitlines()


def test_info_of_gradient_boosting_counts_stages_and_trees(tmp_path, capsys):
    X, y = make_data("multiclass")
    model = GradientBoostingClassifier(n_estimators=2, max_depth=1, random_state=0).fit(X, y)
    treeshard.save(model, tmp_path / "gbm")
    code, out, _ = run(["info", tmp_path / "gbm"], capsys)
    assert code == 0
    assert "estimators      2 stages (8 trees)" in out.splitlines()


def test_info_of_a_single_tree(tmp_path, capsys):
    from sklearn.tree import DecisionTreeRegressor

    X, y = make_data("regression")
    treeshard.save(DecisionTreeRegressor(max_depth=2).fit(X, y), tmp_path / "tree")
    code, out, _ = run(["info", tmp_path / "tree"], capsys)
    assert code == 0
    assert "estimators      1 tree" in out.splitlines()


def test_info_of_a_directory_store(model, tmp_path, capsys):
    treeshard.save(model, tmp_path / "m")
    code, out, _ = run(["info", tmp_path / "m", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["estimator"] == "RandomForestClassifier"


# --------------------------------------------------------------------------- errors
def test_info_missing_store_exits_1(tmp_path, capsys):
    code, out, err = run(["info", tmp_path / "nowhere.zip"], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("error: no treeshard store at ")
    assert "Traceback" not in err


def test_info_malformed_store_exits_1(store, capsys):
    store.write_bytes(b"garbage")
    code, _, err = run(["info", store], capsys)
    assert code == 1
    assert "is not a zip file" in err and err.startswith("error: ")


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["explode"])
    assert caught.value.code == 2
    assert "invalid choice: 'explode'" in capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main([])
    assert caught.value.code == 2


def test_info_shows_metadata_as_written(model, tmp_path, capsys):
    """Non-ASCII metadata is printed as the characters, not as JSON escapes (--json keeps them escaped)."""
    path = tmp_path / "modèle.zip"
    treeshard.save(model, path, metadata={"équipe": "forêt 🌲"})
    code, out, err = run(["info", path], capsys)
    assert code == 0, err
    assert 'metadata        {"équipe": "forêt 🌲"}' in out.splitlines()
    code, out, _ = run(["info", path, "--json"], capsys)
    assert json.loads(out)["metadata"] == {"équipe": "forêt 🌲"}


# --------------------------------------------------------------------------- convert
@pytest.fixture
def joblib_file(model, tmp_path) -> Path:
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    return path


def test_convert_refuses_without_trust_pickle(joblib_file, tmp_path, capsys):
    code, _, err = run(["convert", joblib_file, tmp_path / "out.zip"], capsys)
    assert code == 2
    assert "loading one runs any code it contains" in err
    assert "--trust-pickle" in err
    assert not (tmp_path / "out.zip").exists()


@pytest.mark.parametrize("target", ["out.zip", "out"])
def test_convert_with_trust_pickle(target, joblib_file, model, tmp_path, capsys):
    code, _, err = run(["convert", joblib_file, tmp_path / target, "--trust-pickle", "--quiet"], capsys)
    assert code == 0, err
    X, y = make_data("string")
    assert_round_trip_exact(model, treeshard.load(tmp_path / target, lazy=False), X, y)


def test_convert_shows_progress_and_honours_codec(joblib_file, tmp_path, capsys):
    code, _, err = run(["convert", joblib_file, tmp_path / "out.zip", "--trust-pickle", "--codec", "zstd"], capsys)
    assert code == 0
    assert "convert" in err  # the progress bar (on stderr)
    assert treeshard.open(tmp_path / "out.zip").info.codec == "zstd"


def test_convert_gradient_boosting_pickle(tmp_path, capsys):
    import pickle

    X, y = make_data("multiclass")
    model = GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    code, _, err = run(["convert", path, tmp_path / "out", "--trust-pickle", "--quiet"], capsys)
    assert code == 0, err
    assert_round_trip_exact(model, treeshard.load(tmp_path / "out"), X, y)


def test_convert_refuses_to_overwrite_without_flag(joblib_file, store, capsys):
    before = store.read_bytes()
    code, _, err = run(["convert", joblib_file, store, "--trust-pickle", "--quiet"], capsys)
    assert code == 1
    assert err == f"error: {str(store)!r} exists; pass --overwrite to replace it\n"
    assert store.read_bytes() == before
    code, _, err = run(["convert", joblib_file, store, "--trust-pickle", "--quiet", "--overwrite"], capsys)
    assert code == 0, err


def test_convert_refuses_an_existing_store_before_unpickling(store, tmp_path, capsys, monkeypatch):
    """The target is checked first: no trusted file is unpickled (which may take minutes) for a save that cannot happen."""
    import treeshard.convert

    def unpickled(path):
        raise AssertionError("unpickled before the target was checked")

    monkeypatch.setattr(treeshard.convert, "load_trusted_pickle", unpickled)
    before = store.read_bytes()
    code, _, err = run(["convert", tmp_path / "model.joblib", store, "--trust-pickle", "--quiet"], capsys)
    assert (code, err) == (1, f"error: {str(store)!r} exists; pass --overwrite to replace it\n")
    assert store.read_bytes() == before
    with pytest.raises(treeshard.StoreExistsError, match=r"exists; pass overwrite=True to replace it$"):
        treeshard.convert_pickle(tmp_path / "model.joblib", store)


def test_convert_unsupported_estimator_exits_1(tmp_path, capsys):
    X, y = make_data("binary")
    joblib.dump(LogisticRegression().fit(X, y), tmp_path / "lr.joblib")
    code, _, err = run(["convert", tmp_path / "lr.joblib", tmp_path / "out", "--trust-pickle", "--quiet"], capsys)
    assert code == 1
    assert "LogisticRegression is not supported" in err
    assert not (tmp_path / "out").exists()


def test_convert_missing_file_exits_1(tmp_path, capsys):
    code, _, err = run(["convert", tmp_path / "missing.joblib", tmp_path / "out", "--trust-pickle", "--quiet"], capsys)
    assert code == 1
    assert err.startswith("error: no such file: ")
    assert "Traceback" not in err


def test_convert_file_that_is_not_a_pickle_exits_1(tmp_path, capsys):
    path = tmp_path / "notes.joblib"
    path.write_text("these are not the bytes you are looking for")
    code, _, err = run(["convert", path, tmp_path / "out", "--trust-pickle", "--quiet"], capsys)
    assert code == 1
    assert "is not a readable joblib/pickle file" in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the console script
def test_console_script(store, tmp_path):
    script = Path(sys.executable).with_name("treeshard")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "treeshard.cli"]
    result = subprocess.run([*command, "info", str(store), "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_estimators"] == 3
    missing = subprocess.run([*command, "info", str(tmp_path / "missing")], capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no treeshard store at")


def test_read_path_never_imports_the_pickle_converter(store):
    """``load``/``open``/``info`` never import treeshard.convert (the one module that unpickles)."""
    code = (
        "import sys, treeshard\n"
        f"treeshard.open({str(store)!r}).info\n"
        f"treeshard.load({str(store)!r}, lazy=False).predict([[0.0] * 5])\n"
        "from treeshard import cli\n"
        "print('treeshard.convert' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


def test_output_piped_into_a_reader_that_leaves_is_not_an_error(store):
    """`treeshard info --json | head -1`: no "error: [Errno 32] Broken pipe", no traceback."""
    read, write = os.pipe()
    os.close(read)  # the reader has already gone: the first write breaks the pipe
    done = subprocess.run([sys.executable, "-m", "treeshard", "info", "--json", str(store)], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    os.close(write)
    assert (done.returncode, done.stderr) == (1, "")
