"""Loading a pipeline store: real sklearn objects, the same structure, ensembles read on demand.

The record has been parsed and checked (:mod:`treeshard.pipeline.record`);
this module only builds: each allow-listed class from its table entry, params
filtered against the installed constructor, fitted attributes set by name,
each ensemble loaded from its group as a single model is.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compat import transformer_fitted, transformer_params
from ..errors import ConfigError
from .nodes import EnsembleNode, EstimatorNode, Function, SkopsNode
from .record import PipelineRecord
from .table import function_of, kind_class


@dataclass
class LoadContext:
    load_ensemble: Any  # (EnsembleNode) -> fitted estimator
    load_skops: Any  # (SkopsNode) -> estimator
    models: dict[str, Any] = field(default_factory=dict)


def build(record: PipelineRecord, load_ensemble: Any, load_skops: Any) -> Any:
    """The estimator tree of ``record``; ``load_ensemble(node)`` loads one ensemble, ``load_skops(node)`` a skops step."""
    return build_node(record.root, LoadContext(load_ensemble, load_skops))


def build_node(node: EstimatorNode | EnsembleNode | SkopsNode, context: LoadContext) -> Any:
    if isinstance(node, SkopsNode):
        return context.load_skops(node)
    if isinstance(node, EnsembleNode):
        if node.group not in context.models:
            context.models[node.group] = context.load_ensemble(node)
        return context.models[node.group]
    cls = kind_class(node.id)
    known = set(cls._get_param_names())
    # Params the installed sklearn does not have are dropped (written by another version).
    params = {name: build_value(value, context) for name, value in node.params.items() if name in known and name not in node.unserializable}
    params = transformer_params(node.id, params)
    estimator = cls(**params)
    try:
        if hasattr(estimator, "_parameter_constraints"):  # FeatureUnion has none
            estimator._validate_params()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{node.where}.params: {exc}") from None
    fitted = {name: build_value(value, context) for name, value in node.fitted.items()}
    # Written by another sklearn: attributes as the installed one keeps them.
    fitted = transformer_fitted(node.id, params, fitted)
    for name, value in fitted.items():
        setattr(estimator, name, value)
    return estimator


def build_value(value: Any, context: LoadContext) -> Any:
    if isinstance(value, (EstimatorNode, EnsembleNode, SkopsNode)):
        return build_node(value, context)
    if isinstance(value, Function):
        return function_of(value.id)
    if isinstance(value, list):
        return [build_value(v, context) for v in value]
    if isinstance(value, tuple):
        return tuple(build_value(v, context) for v in value)
    if isinstance(value, dict):
        return {k: build_value(v, context) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype == object:
        out = np.empty(value.shape, dtype=object)
        for index, item in np.ndenumerate(value):
            out[index] = build_value(item, context)
        return out
    return value


def load_pipeline(handle: Any, *, lazy: bool, estimators: Any, max_memory: Any, engine: str) -> Any:
    """What :meth:`treeshard.ModelHandle.load` returns for a pipeline store (once ``verify``/``public_key`` passed)."""
    record: PipelineRecord = handle._reader.pipeline
    check_selection(record, estimators)

    budgets = split_budget(handle, record, estimators, max_memory)

    def load_ensemble(node: EnsembleNode) -> Any:
        with type(handle).of_reader(handle._store, handle._reader.for_model(node.group, node.config)) as step:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=_version_warning())  # warned once for the whole store below
                return step.load(lazy=lazy, estimators=estimators, max_memory=budgets.get(node.group, max_memory), engine=engine)

    def load_skops(node: SkopsNode) -> Any:
        from .skops_step import load_step, read_bytes

        return load_step(node, read_bytes(handle._reader, node))

    estimator = build(record, load_ensemble, load_skops)
    _warn_on_version_change(record)
    return estimator


def check_selection(record: PipelineRecord, estimators: Any) -> None:
    """``estimators=`` selects trees of a pipeline's only ensemble."""
    if estimators is not None and len(record.ensembles) != 1:
        raise TypeError(f"estimators= selects trees of one ensemble; this pipeline holds {len(record.ensembles)}")


def split_budget(handle: Any, record: PipelineRecord, estimators: Any, max_memory: Any) -> dict[str, int]:
    """Each ensemble's share of ``max_memory`` (by group), in proportion to what its trees need:
    the budget covers the whole pipeline, so a pipeline that fits it loads each ensemble whole,
    and one that does not streams (or refuses) each within its share. Empty for one ensemble."""
    from ..planning import parse_memory

    budget = parse_memory(max_memory)
    if budget is None or len(record.ensembles) < 2:
        return {}
    needs = {group: max(1, need) for group, need in ensemble_needs(handle, estimators).items()}
    total = sum(needs.values())
    return {group: max(1, budget * need // total) for group, need in needs.items()}


def ensemble_needs(handle: Any, estimators: Any) -> dict[str, int]:
    """What each ensemble's selected trees take in memory (by group), as its load counts them."""
    record: PipelineRecord = handle._reader.pipeline
    needs = {}
    for node in record.ensembles:
        with type(handle).of_reader(handle._store, handle._reader.for_model(node.group, node.config)) as step:
            needs[node.group] = step.needed_bytes(estimators)
    return needs


def _version_warning() -> type:
    from ..errors import SklearnVersionWarning

    return SklearnVersionWarning


def _warn_on_version_change(record: PipelineRecord) -> None:
    """Warn as a single-model store does: only when an ensemble's outputs may differ under the
    installed sklearn (schema steps are exact between every pair of the matrix; a skops step
    written by another minor version is refused before this runs)."""
    import sklearn

    from ..compat import pair_is_exact
    from ..errors import SklearnVersionWarning

    saved = record.versions.get("sklearn")
    installed = sklearn.__version__
    if saved is None or saved == installed:
        return
    if all(
        pair_is_exact(node.config.estimator, saved, installed, value_encoding=node.config.trees.value_encoding)
        for node in record.ensembles
    ):
        return
    warnings.warn(SklearnVersionWarning(saved, installed), stacklevel=5)
