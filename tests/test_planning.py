"""Load planning: which trees a load reads, eagerly or on demand, and how a memory budget is split."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

import treeshard
from treeshard.lazy import DEFAULT_BATCH_BYTES
from treeshard.planning import BATCHES_IN_FLIGHT, MIN_EAGER_BATCH_BYTES, LoadPlan, plan_load
from treeshard.record import TreeLayout


def _config(estimator: str, n_trees: int = 10, **fitted: int) -> SimpleNamespace:
    return SimpleNamespace(estimator=estimator, fitted=fitted, trees=TreeLayout(n_trees, 10 * n_trees, 4, 1, (1,)))


def _sizes(each: int):  # noqa: ANN202
    return lambda selection: np.full(len(selection), each, dtype=np.int64)


def test_lazy_forest_without_a_budget_keeps_every_tree_it_reads() -> None:
    plan = plan_load(_config("RandomForestRegressor"), None, lazy=True, max_memory=None, tree_bytes=_sizes(100))
    assert isinstance(plan, LoadPlan)
    assert plan.selection.tolist() == list(range(10))
    assert (plan.needed, plan.budget, plan.lazy, plan.streamed) == (1000, None, True, False)
    assert (plan.cache_bytes, plan.batch_bytes, plan.engine_budget) == (None, DEFAULT_BATCH_BYTES, None)


def test_lazy_forest_within_the_budget_leaves_the_rest_to_the_engine_and_the_batches() -> None:
    plan = plan_load(_config("ExtraTreesClassifier"), 4, lazy=True, max_memory="1KB", tree_bytes=_sizes(100))
    assert plan.selection.tolist() == [0, 1, 2, 3]
    # of the 600 bytes the trees leave, the batches in flight take an eighth (75), the engine the rest
    assert (plan.needed, plan.budget, plan.streamed, plan.cache_bytes, plan.batch_bytes, plan.engine_budget) == (400, 1000, False, None, 9, 525)
    roomy = plan_load(_config("ExtraTreesClassifier"), 4, lazy=True, max_memory="1TB", tree_bytes=_sizes(100))
    assert (roomy.batch_bytes, roomy.engine_budget) == (DEFAULT_BATCH_BYTES, 10**12 - 400 - (10**12 - 400) // 8)


def test_lazy_forest_over_the_budget_streams_in_quarters_eighths_and_halves() -> None:
    plan = plan_load(_config("RandomForestClassifier"), [7, 2], lazy=True, max_memory=1000, tree_bytes=_sizes(1000))
    assert plan.selection.tolist() == [7, 2]
    # the eighth is shared by the batches a streamed pass holds at once
    assert BATCHES_IN_FLIGHT == 8
    assert (plan.needed, plan.streamed, plan.cache_bytes, plan.batch_bytes, plan.engine_budget) == (2000, True, 250, 15, 500)
    assert plan.reason == "a lazy forest over max_memory: its 2,000 bytes of trees are streamed"


@pytest.mark.parametrize(("needed_each", "batch"), [(10, MIN_EAGER_BATCH_BYTES), (10**7, 10**8 // 32), (10**9, DEFAULT_BATCH_BYTES)])
def test_an_eager_load_reads_about_a_32nd_of_the_model_per_batch(needed_each: int, batch: int) -> None:
    plan = plan_load(_config("RandomForestRegressor"), None, lazy=False, max_memory=None, tree_bytes=_sizes(needed_each))
    assert (plan.lazy, plan.streamed, plan.cache_bytes, plan.batch_bytes, plan.engine_budget) == (False, False, 0, batch, None)
    assert plan.reason == "eager (lazy=False): every selected tree is built during the load"


def test_boosting_selects_whole_stages_and_is_always_eager() -> None:
    config = _config("GradientBoostingClassifier", 12, n_trees_per_iteration_=3)
    plan = plan_load(config, 2, lazy=True, max_memory=None, tree_bytes=_sizes(10))
    assert plan.selection.tolist() == [0, 1, 2, 3, 4, 5]
    assert not plan.lazy and plan.reason == "eager (a GradientBoostingClassifier is always built in full): every selected tree is built during the load"


@pytest.mark.parametrize(
    ("estimator", "lazy", "what"),
    [
        (
            "RandomForestRegressor",
            False,
            "with lazy=False: only lazily loaded forests stream trees (load lazily, the default, or select fewer trees with estimators=...)",
        ),
        ("GradientBoostingRegressor", True, "a GradientBoostingRegressor: only forests stream trees (select fewer stages with estimators=...)"),
        ("DecisionTreeRegressor", True, "a DecisionTreeRegressor: only forests stream trees (a single tree is loaded whole: raise max_memory)"),
    ],
)
def test_over_the_budget_without_streaming_is_refused(estimator: str, lazy: bool, what: str) -> None:
    n_trees = 1 if estimator.startswith("Decision") else 10
    message = f"the selected trees need {100 * n_trees:,} bytes in memory, over max_memory=99; cannot load {what}"
    with pytest.raises(treeshard.MemoryBudgetError, match=f"^{re.escape(message)}$"):
        plan_load(_config(estimator, n_trees), None, lazy=lazy, max_memory=99, tree_bytes=_sizes(100))


def test_a_bad_selection_is_refused_before_a_bad_budget() -> None:
    with pytest.raises(ValueError, match=r"^estimators=11: choose between 1 and 10 trees$"):
        plan_load(_config("RandomForestRegressor"), 11, lazy=True, max_memory="lots", tree_bytes=_sizes(1))
