"""The plugin behind ``make test-sklearn`` (tests/sklearn_suite/roundtrip_plugin.py).

Each check runs pytest on a small test module in a subprocess, with the
plugin loaded as ``make test-sklearn`` loads it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import treeshard

SUITE_DIR = Path(__file__).parent / "sklearn_suite"

PROBE = '''
import numpy as np
from roundtrip_plugin import _stats
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.tree import DecisionTreeClassifier

X = np.arange(40, dtype=float).reshape(20, 2)
y = np.arange(20) % 2


def test_top_level_fits_are_round_tripped():
    before = _stats["roundtrip"]
    forest = RandomForestClassifier(n_estimators=3, random_state=0)
    assert forest.fit(X, y) is forest
    assert _stats["roundtrip"] == before + ROUND_TRIPS
    assert type(forest.estimators_).__name__ == EXPECTED_ESTIMATORS


def test_fits_inside_another_fit_are_left_alone():
    before = _stats["roundtrip"]
    GridSearchCV(DecisionTreeClassifier(random_state=0), {"max_depth": [1, 2]}, cv=2).fit(X, y)
    assert _stats["roundtrip"] == before


def test_unsupported_models_keep_their_state():
    before = _stats["roundtrip"]
    model = GradientBoostingClassifier(init=DecisionTreeClassifier(), n_estimators=2).fit(X, y)
    assert _stats["roundtrip"] == before
    assert isinstance(model.init_, DecisionTreeClassifier)


def test_patched_methods_survive_the_round_trip():
    from unittest.mock import patch

    forest = RandomForestClassifier(n_estimators=2, random_state=0, oob_score=True)
    with patch.object(forest, "_set_oob_score_and_attributes", wraps=forest._set_oob_score_and_attributes) as spy:
        forest.fit(X, y)
        spy.assert_called_once()
'''


def run_probe(tmp_path: Path, *options: str, expected_estimators: str, round_trips: int = 1) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_probe.py"
    test_file.write_text(f"EXPECTED_ESTIMATORS = {expected_estimators!r}\nROUND_TRIPS = {round_trips}\n" + PROBE)
    env = dict(os.environ)
    src = str(Path(treeshard.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join([str(SUITE_DIR), src, env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "pytest", "-c", str(SUITE_DIR / "pytest.ini"), "-q", "-W", "ignore", *options, str(test_file)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


@pytest.mark.parametrize(("options", "expected"), [((), "list"), (("--treeshard-lazy",), "StoredEstimators")])
def test_plugin_round_trips_top_level_fits_only(tmp_path, options, expected):
    done = run_probe(tmp_path, *options, expected_estimators=expected)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    assert "round-tripped fits: 2, nested fits left alone:" in done.stdout
    assert "treeshard refuses: GradientBoostingClassifier with a custom init estimator (DecisionTreeClassifier)" in done.stdout

