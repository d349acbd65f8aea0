"""Fitted-attribute checks are written once (``treeshard.adapters.checks``): a load and the
``Predictor`` refuse the same malformed config with the same error and message."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.data import make_data
from helpers.stores import edit_config, reseal
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeRegressor

import treeshard
from treeshard import ConfigError
from treeshard.adapters.checks import check_labels, check_stages, stages_problem
from treeshard.record import TreeLayout


CASES = {
    # (model, task, edit of config.fitted, exact message)
    "n_features_in_ disagrees with the trees": (
        "rf",
        lambda fitted: fitted.__setitem__("n_features_in_", 7),
        "config.fitted.n_features_in_: 7, but trees have 5 features",
    ),
    "n_classes_ disagrees with the trees": ("rf", lambda fitted: fitted.__setitem__("n_classes_", 3), "config.fitted.n_classes_: expected 4, got int 3"),
    "n_classes_ missing": ("rf", lambda fitted: fitted.pop("n_classes_"), "config.fitted: missing required key 'n_classes_'"),
    "stages disagree with the trees": (
        "gb",
        lambda fitted: fitted.__setitem__("n_estimators_", 2),
        "config.fitted.n_estimators_: 2 stages of 4 trees, but 12 trees are stored",
    ),
    "trees per stage do not fit the classes": (
        "gb",
        lambda fitted: fitted.__setitem__("n_trees_per_iteration_", 1),
        "config.fitted.n_trees_per_iteration_: 1 does not fit 4 classes",
    ),
    "init prior of the wrong length": (
        "gb",
        lambda fitted: fitted["init_"]["fitted"]["class_prior_"].update(shape=[3], data=[0.25, 0.25, 0.5]),
        "config.fitted.init_.fitted.class_prior_: expected 4 finite float64 values, got ndarray [0.25 0.25 0.5 ]",
    ),
    "init prior not finite": (
        "gb",
        lambda fitted: fitted["init_"]["fitted"]["class_prior_"]["data"].__setitem__(0, "NaN"),
        "config.fitted.init_.fitted.class_prior_: expected 4 finite float64 values, got ndarray [    nan 0.2     0.175   0.24375]",
    ),
    "init strategy not the prior": (
        "gb",
        lambda fitted: fitted["init_"]["fitted"].__setitem__("_strategy", "uniform"),
        "config.fitted.init_.fitted._strategy: expected 'prior', got str uniform",
    ),
    "init of the wrong class": (
        "gb",
        lambda fitted: fitted["init_"].__setitem__("estimator", "DummyRegressor"),
        "config.fitted.init_.estimator: 'DummyRegressor', but a GradientBoostingClassifier starts from a DummyClassifier",
    ),
    "trees per stage not a positive integer": (
        "gb",
        lambda fitted: fitted.__setitem__("n_trees_per_iteration_", True),
        "config.fitted.n_trees_per_iteration_: expected a positive integer, got a boolean",
    ),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    X, y = make_data("multiclass")
    models = {
        "rf": RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
        "gb": GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y),
    }
    root = tmp_path_factory.mktemp("checks")
    for name, model in models.items():
        treeshard.save(model, root / name)
    return {name: root / name for name in models}


@pytest.mark.parametrize("case", CASES)
def test_load_and_predictor_refuse_with_the_same_message(case: str, stores: dict[str, Path], tmp_path: Path) -> None:
    model, edit, message = CASES[case]
    path = tmp_path / "model"
    shutil.copytree(stores[model], path)
    edit_config(path, lambda config: edit(config["fitted"]))
    reseal(path)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        treeshard.load(path, lazy=False)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        treeshard.Predictor(path)


def test_predictor_refuses_a_single_tree_store_with_two_trees_as_load_does(tmp_path: Path) -> None:
    """A forest's two trees under a single-tree estimator id, params and fitted attributes."""
    import json

    X, y = make_data("regression")
    forest_path, tree_path = tmp_path / "forest", tmp_path / "tree"
    treeshard.save(RandomForestRegressor(n_estimators=2, max_depth=2, random_state=0).fit(X, y), forest_path)
    treeshard.save(DecisionTreeRegressor(max_depth=2).fit(X, y), tree_path)
    tree_config = json.loads((tree_path / "zarr.json").read_text())["attributes"]["treeshard"]

    def as_tree(config: dict[str, Any]) -> None:
        config.update(estimator="DecisionTreeRegressor", params=tree_config["params"], fitted=tree_config["fitted"])

    edit_config(forest_path, as_tree)
    reseal(forest_path)
    message = "^config.trees.n_trees: a single tree estimator has 1 tree, not 2$"
    with pytest.raises(ConfigError, match=message):
        treeshard.load(forest_path, lazy=False)
    with pytest.raises(ConfigError, match=message):
        treeshard.Predictor(forest_path)


def test_labels_must_be_distinct_without_numpy_unique() -> None:
    check_labels("classes_", np.array(["a", "b"], dtype=object), 2)
    with pytest.raises(ConfigError, match=r"^classes_: expected an array of 2 distinct labels, got ndarray \['a' 'a'\]$"):
        check_labels("classes_", np.array(["a", "a"], dtype=object), 2)
    with pytest.raises(ConfigError, match=r"^classes_: expected an array of 2 distinct labels, got list \[1, 2\]$"):
        check_labels("classes_", [1, 2], 2)


def test_stages_are_checked_against_the_stored_trees() -> None:
    layout = TreeLayout(n_trees=12, n_nodes=36, n_features=5, n_outputs=1, n_classes=(1,))
    fitted = {"n_trees_per_iteration_": 4, "n_estimators_": 3, "classes_": np.arange(4), "n_classes_": 4}
    assert check_stages(fitted, layout, classifier=True) == (4, 3)
    assert check_stages({**fitted, "n_estimators_": 4}, layout, classifier=True) == (4, 4)  # warm start's extra count
    assert stages_problem(12, 5, n_estimators=2) == "12 trees are not whole stages of 5 trees"
    with pytest.raises(ConfigError, match=r"^config.fitted.n_trees_per_iteration_: 4, a regressor has 1$"):
        check_stages(fitted, layout, classifier=False)
    wide = TreeLayout(n_trees=12, n_nodes=36, n_features=5, n_outputs=1, n_classes=(2,))
    with pytest.raises(ConfigError, match=r"^config.trees: gradient boosting trees have one output and one value$"):
        check_stages(fitted, wide, classifier=True)


def test_nan_labels_count_once_as_numpy_unique_counts_them() -> None:
    check_labels("classes_", np.array([0.0, np.nan]), 2)
    with pytest.raises(ConfigError, match=r"^classes_: expected an array of 2 distinct labels, got ndarray \[nan nan\]$"):
        check_labels("classes_", np.array([np.nan, np.nan]), 2)
