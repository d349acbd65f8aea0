"""Load planning: which trees a load reads, eagerly or on demand, and how it splits a memory budget.

:func:`plan_load` turns ``load``'s ``estimators=``, ``lazy=`` and ``max_memory=``
into a :class:`LoadPlan` before anything but the config and the tree offsets is
read; :class:`~treeshard.api.ModelHandle` then follows the plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .adapters.families import BAGGED, BOOSTING, HIST_BOOSTING, family_of
from .errors import MemoryBudgetError
from .lazy import DEFAULT_BATCH_BYTES
from .record import Config

#: An eager load decodes about a 32nd of the model per batch, within these bounds.
MIN_EAGER_BATCH_BYTES = 2 * 1024 * 1024
#: Batches a pass over a lazy forest's trees holds at once, counted in ``batch_bytes`` (stored
#: column bytes): the read-ahead's three column buffers (two workers and the batch being
#: filled) and up to three batches of built trees, each about 1.5x its stored columns.
BATCHES_IN_FLIGHT = 8


@dataclass(frozen=True)
class LoadPlan:
    """Which trees a load reads, when, and what memory each part of it may take.

    Attributes
    ----------
    selection : ndarray of int64
        Global ids of the selected trees, in order.
    needed : int
        Bytes the selected trees take once built.
    budget : int or None
        ``max_memory`` in bytes (None: no budget).
    lazy : bool
        Trees are read on demand (forests loaded lazily); else all are built during the load.
    streamed : bool
        The trees exceed the budget: they are streamed through a bounded cache at each prediction.
    cache_bytes : int or None
        Capacity of the lazy tree cache (None: unbounded; 0 for an eager load, which keeps none).
    batch_bytes : int
        Bytes of trees decoded per read batch.
    engine_budget : int or None
        Bytes the flat engine of a lazy forest may take (None: no limit).
    reason : str
        Why the plan is what it is, in words.
    """

    selection: np.ndarray
    needed: int
    budget: int | None
    lazy: bool
    streamed: bool
    cache_bytes: int | None
    batch_bytes: int
    engine_budget: int | None
    reason: str


def plan_load(
    config: Config,
    estimators: Any,
    *,
    lazy: bool,
    max_memory: int | str | None,
    tree_bytes: Callable[[np.ndarray], np.ndarray],
) -> LoadPlan:
    """The plan of a load of ``config``'s model; ``tree_bytes(selection)``: each selected tree's
    size in memory once built. Raises :class:`~treeshard.MemoryBudgetError` when the selected
    trees exceed ``max_memory`` and cannot be streamed.

    >>> from treeshard.record import TreeLayout
    >>> from types import SimpleNamespace
    >>> config = SimpleNamespace(estimator="RandomForestRegressor", fitted={}, trees=TreeLayout(4, 40, 3, 1, (1,)))
    >>> plan = plan_load(config, 2, lazy=True, max_memory="1KB", tree_bytes=lambda s: np.full(len(s), 800))
    >>> plan.selection.tolist(), plan.streamed, plan.cache_bytes, plan.batch_bytes, plan.engine_budget
    ([0, 1], True, 250, 15, 500)
    """
    is_forest = family_of(config.estimator) in BAGGED
    selection = select_trees(estimators, config)
    budget = parse_memory(max_memory)
    needed = int(tree_bytes(selection).sum())
    over_budget = budget is not None and needed > budget
    if over_budget and not (is_forest and lazy):
        if is_forest:
            what = "with lazy=False: only lazily loaded forests stream trees (load lazily, the default, or select fewer trees with estimators=...)"
        elif family_of(config.estimator) == BOOSTING:
            what = f"a {config.estimator}: only forests stream trees (select fewer stages with estimators=...)"
        else:
            what = f"a {config.estimator}: only forests stream trees (a single tree is loaded whole: raise max_memory)"
        raise MemoryBudgetError(f"the selected trees need {needed:,} bytes in memory, over max_memory={budget:,}; cannot load {what}")
    if is_forest and lazy:
        if over_budget:
            # Streamed: the cache takes a quarter of the budget, the batches in flight an eighth
            # and the flat engine half.
            batch_bytes = max(1, budget // 8 // BATCHES_IN_FLIGHT)
            return LoadPlan(
                selection, needed, budget, lazy=True, streamed=True, cache_bytes=budget // 4, batch_bytes=batch_bytes,
                engine_budget=budget // 2, reason=f"a lazy forest over max_memory: its {needed:,} bytes of trees are streamed",
            )
        # Of what the trees leave of the budget, the batches in flight take an eighth (a pass that
        # reads the trees beside the engine: decision_path, feature_importances_) and the flat
        # engine the rest.
        batch_bytes, engine_budget = DEFAULT_BATCH_BYTES, None
        if budget is not None:
            batches = (budget - needed) // 8
            batch_bytes, engine_budget = min(DEFAULT_BATCH_BYTES, max(1, batches // BATCHES_IN_FLIGHT)), budget - needed - batches
        return LoadPlan(
            selection, needed, budget, lazy=True, streamed=False, cache_bytes=None, batch_bytes=batch_bytes,
            engine_budget=engine_budget, reason="a lazy forest: trees are read on demand and kept",
        )
    # Eager: stream batches (about a 32nd of the model, 2-32 MB while being built) so that
    # only a small fraction of the model exists twice.
    batch = min(DEFAULT_BATCH_BYTES, max(MIN_EAGER_BATCH_BYTES, needed // 32))
    why = "lazy=False" if is_forest else f"a {config.estimator} is always built in full"
    return LoadPlan(
        selection, needed, budget, lazy=False, streamed=False, cache_bytes=0, batch_bytes=batch,
        engine_budget=None, reason=f"eager ({why}): every selected tree is built during the load",
    )


def trees_per_stage(config: Config) -> int:
    """Trees per boosting stage (1 for forests and single trees)."""
    per_stage = config.fitted.get("n_trees_per_iteration_", 1) if family_of(config.estimator) in (BOOSTING, HIST_BOOSTING) else 1
    return per_stage if isinstance(per_stage, int) and not isinstance(per_stage, bool) and per_stage >= 1 else 1


def select_trees(spec: Any, config: Config) -> np.ndarray:
    """Global ids of the trees that ``estimators=spec`` selects.

    Forests take the first ``k`` trees (an int), a slice or a list of distinct
    indices; gradient boosting takes a prefix of its stages (an int ``k``, a
    slice ``:k`` or ``range(k)``), so staged predictions stay meaningful.
    """
    n_trees = config.trees.n_trees
    if spec is None:
        return np.arange(n_trees, dtype=np.int64)
    if family_of(config.estimator) in (BOOSTING, HIST_BOOSTING):
        per_stage = trees_per_stage(config)
        n_units, unit = n_trees // per_stage, "stages"
    elif family_of(config.estimator) in BAGGED:
        per_stage, n_units, unit = 1, n_trees, "trees"
    else:
        raise TypeError(f"estimators= selects trees of an ensemble; a {config.estimator} has one tree")
    if isinstance(spec, bool):
        raise TypeError("estimators must be an int, a slice or a list of indices, not a bool")
    if isinstance(spec, (int, np.integer)):
        if not 1 <= spec <= n_units:
            raise ValueError(f"estimators={spec}: choose between 1 and {n_units} {unit}")
        units = np.arange(int(spec), dtype=np.int64)
    elif isinstance(spec, slice):
        units = np.arange(n_units, dtype=np.int64)[spec]
    elif isinstance(spec, (Sequence, np.ndarray, range)) and not isinstance(spec, (str, bytes, bytearray)):
        units = np.asarray(spec if isinstance(spec, np.ndarray) else list(spec))
        if units.ndim != 1:
            raise TypeError(f"estimators: expected a 1-D list of indices, got shape {units.shape}")
        if units.size and (units.dtype.kind not in "iu"):
            raise TypeError(f"estimators: indices must be integers, got {units.dtype}")
        units = units.astype(np.int64)
        outside = (units < -n_units) | (units >= n_units)
        if outside.any():
            raise IndexError(f"estimators: index {int(units[outside.argmax()])} is out of range for {n_units} {unit} (0 to {n_units - 1}, or -{n_units} to -1)")
        units = units % n_units if units.size else units
        seen, first = np.unique(units, return_index=True)
        if len(seen) != len(units):
            again = int(np.setdiff1d(np.arange(len(units)), first)[0])
            raise ValueError(f"estimators: indices must be distinct; {unit[:-1]} {int(units[again])} is selected twice (at positions {int(np.flatnonzero(units == units[again])[0])} and {again})")
    else:
        raise TypeError(f"estimators must be an int, a slice or a list of indices, not {type(spec).__name__}")
    if units.size == 0:
        raise ValueError(f"estimators={spec!r} selects no {unit}")
    if per_stage > 1 or family_of(config.estimator) in (BOOSTING, HIST_BOOSTING):
        if not np.array_equal(units, np.arange(len(units))):
            raise ValueError(f"estimators: gradient boosting loads a prefix of its stages (e.g. {len(units)} or slice(0, {len(units)}))")
        return np.arange(len(units) * per_stage, dtype=np.int64)
    return units


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(value: int | str | None) -> int | None:
    """Bytes from an int or a string such as ``"512MB"`` or ``"1.5 GiB"``.

    >>> parse_memory("512MB"), parse_memory("1GiB"), parse_memory(1000)
    (512000000, 1073741824, 1000)
    """
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"max_memory must be positive, got {value}")
        return int(value)
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGTIB")
        unit = text[len(number) :]
        try:
            amount = float(number)
        except ValueError:
            amount = math.nan
        if unit in _UNITS and math.isfinite(amount) and int(amount * _UNITS[unit]) >= 1:
            return int(amount * _UNITS[unit])
    raise ValueError(f"max_memory must be an integer number of bytes or a string like '512MB', '1.5GiB' or '2e9', got {value!r}")
