"""The pipeline record: parsed and checked without sklearn (the Predictor reads it too).

``parse_pipeline_record`` turns the untrusted JSON of ``attributes.treeshard``
into a tree of :class:`EstimatorNode` / :class:`EnsembleNode` whose params and
fitted attributes are decoded state values (``docs/FORMAT.md``, section 10).
Every problem is a :class:`~treeshard.errors.ConfigError` naming its path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..adapters.base import decode_value
from ..errors import ConfigError
from ..record import (
    parse_config,
    parse_dict,
    parse_float,
    parse_int,
    parse_list,
    parse_record_header,
    parse_str,
    parse_versions,
    require,
)
from .checks import check_node
from .nodes import DTYPES, TYPES, EnsembleNode, EstimatorNode, Function, SkopsNode
from .table import FUNCTIONS, KINDS, PIPELINE_FAMILIES

#: The record's key holding the root node: what tells a pipeline record from a model's config.
PIPELINE_KEY = "pipeline"
#: Group of the k-th ensemble of a pipeline store, and array of the k-th skops step.
MODELS_GROUP = "models"
SKOPS_GROUP = "skops"
#: Bytes of one skops step.
MAX_SKOPS_BYTES = 1 << 30
#: Elements of one ``objects`` array, and state values in one record.
MAX_OBJECTS = 1_000_000
MAX_STATE_VALUES = 5_000_000
@dataclass
class PipelineRecord:
    root: EstimatorNode
    ensembles: list[EnsembleNode]
    skops: list[SkopsNode]
    codec: str
    versions: dict[str, str]
    created: str
    metadata: dict[str, Any]
    arrays: dict[str, Any] = field(default_factory=dict)


def is_pipeline_record(raw: Any) -> bool:
    return isinstance(raw, dict) and PIPELINE_KEY in raw


def parse_pipeline_record(raw: Any) -> PipelineRecord:
    """Check an untrusted pipeline record and decode it."""
    from ..adapters import ESTIMATOR_IDS
    from ..adapters.families import family_of

    where = "config"
    raw, _ = parse_record_header(raw)
    versions = parse_versions(raw)
    context = _Context(known_ensembles=frozenset(e for e in ESTIMATOR_IDS if family_of(e) in PIPELINE_FAMILIES))
    root = _node(PIPELINE_KEY, require(where, raw, PIPELINE_KEY), context)
    if not isinstance(root, EstimatorNode) or root.id not in KINDS:
        raise ConfigError(f"{PIPELINE_KEY}: the root must be an allow-listed composite or transformer, not an ensemble")
    return PipelineRecord(
        root=root,
        ensembles=context.ensembles,
        skops=context.skops,
        codec=parse_str(f"{where}.codec", require(where, raw, "codec"), max_len=100),
        versions=versions,
        created=parse_str(f"{where}.created", require(where, raw, "created"), max_len=100),
        metadata=parse_dict(f"{where}.metadata", raw.get("metadata", {})),
        arrays=parse_dict(f"{where}.arrays", raw.get("arrays", {})),
    )


@dataclass
class _Context:
    known_ensembles: frozenset[str]
    ensembles: list[EnsembleNode] = field(default_factory=list)
    skops: list[SkopsNode] = field(default_factory=list)
    values: int = 0


def _node(where: str, raw: Any, context: _Context) -> EstimatorNode | EnsembleNode | SkopsNode:
    raw = parse_dict(where, raw)
    kind = parse_str(f"{where}.kind", require(where, raw, "kind"), max_len=40)
    if kind == "ensemble":
        _keys(where, raw, {"kind", "group"}, {"config"})
        group = parse_str(f"{where}.group", require(where, raw, "group"), max_len=40)
        known = {e.group: e for e in context.ensembles}
        if "config" not in raw:
            if group not in known:
                raise ConfigError(f"{where}.group: {group!r} refers to no ensemble stored before it")
            return EnsembleNode(group, known[group].config, first=False, where=where)
        expected = f"{MODELS_GROUP}/{len(context.ensembles)}"
        if group != expected:
            raise ConfigError(f"{where}.group: expected {expected!r} (ensembles are numbered in order), got {group!r}")
        try:
            config = parse_config(raw["config"], known_estimators=context.known_ensembles)
        except ConfigError as exc:
            raise type(exc)(f"{where}.{exc}") from None
        node = EnsembleNode(group, config, where=where)
        context.ensembles.append(node)
        return node
    if kind == "skops":
        _keys(where, raw, {"kind", "group", "nbytes", "sklearn", "qualname"})
        group = parse_str(f"{where}.group", raw["group"], max_len=40)
        expected = f"{SKOPS_GROUP}/{len(context.skops)}"
        if group != expected:
            raise ConfigError(f"{where}.group: expected {expected!r} (skops steps are numbered in order), got {group!r}")
        skops_node = SkopsNode(
            group,
            parse_int(f"{where}.nbytes", raw["nbytes"], low=1, high=MAX_SKOPS_BYTES),
            parse_str(f"{where}.sklearn", raw["sklearn"], max_len=40),
            parse_str(f"{where}.qualname", raw["qualname"], max_len=300),
            where=where,
        )
        context.skops.append(skops_node)
        return skops_node
    if kind != "estimator":
        raise ConfigError(f"{where}.kind: unknown node kind {kind!r}")
    _keys(where, raw, {"kind", "id", "params", "fitted"}, {"unserializable"})
    kind_id = parse_str(f"{where}.id", require(where, raw, "id"), max_len=100)
    if kind_id not in KINDS and kind_id not in context.known_ensembles:
        raise ConfigError(f"{where}.id: {kind_id!r} is not an allow-listed estimator")
    params_raw = parse_dict(f"{where}.params", raw["params"])
    fitted_raw = parse_dict(f"{where}.fitted", raw["fitted"])
    if kind_id in KINDS:
        unknown = sorted(set(fitted_raw) - KINDS[kind_id].fitted_names)
        if unknown:
            raise ConfigError(f"{where}.fitted: attribute(s) {unknown[:5]} are not allowed for {kind_id}")
    elif fitted_raw:
        raise ConfigError(f"{where}.fitted: a fitted {kind_id} is stored as an ensemble node, not here")
    unserializable = tuple(
        parse_str(f"{where}.unserializable[{i}]", v, max_len=200) for i, v in enumerate(parse_list(f"{where}.unserializable", raw.get("unserializable", [])))
    )
    params = {name: state_value(f"{where}.params.{name}", value, context) for name, value in params_raw.items()}
    fitted = {name: state_value(f"{where}.fitted.{name}", value, context) for name, value in fitted_raw.items()}
    node = EstimatorNode(kind_id, params, fitted, unserializable, where=where)
    if kind_id in KINDS:
        check_node(node)
    return node


def _keys(where: str, raw: dict[str, Any], required: set[str], optional: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    missing = sorted(required - set(raw))
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")
    unknown = sorted(set(raw) - required - optional)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown[:5]}")


def state_value(where: str, value: Any, context: _Context) -> Any:
    """Decode one state value (``docs/FORMAT.md`` 10.2)."""
    context.values += 1
    if context.values > MAX_STATE_VALUES:
        raise ConfigError(f"{where}: the record holds more than {MAX_STATE_VALUES:,} values")
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        raise ConfigError(f"{where}: untagged float {value!r} (floats are stored as {{\"float\": ...}})")
    if isinstance(value, list):
        raise ConfigError(f"{where}: untagged list (lists are stored as {{\"list\": [...]}})")
    record = parse_dict(where, value)
    if "numpy" in record or "ndarray" in record:
        return decode_value(where, record)
    if set(record) == {"objects", "shape"}:
        return _objects(where, record, context)
    if len(record) != 1:
        raise ConfigError(f"{where}: unknown state value encoding {sorted(record)[:5]}")
    tag, body = next(iter(record.items()))
    if tag == "float":
        return parse_float(where, body)
    if tag in ("list", "tuple"):
        items = [state_value(f"{where}[{i}]", v, context) for i, v in enumerate(parse_list(where, body))]
        return items if tag == "list" else tuple(items)
    if tag == "dict":
        out: dict[Any, Any] = {}
        for i, pair in enumerate(parse_list(where, body)):
            pair = parse_list(f"{where}[{i}]", pair)
            if len(pair) != 2:
                raise ConfigError(f"{where}[{i}]: expected a [key, value] pair")
            key = state_value(f"{where}[{i}][0]", pair[0], context)
            if not isinstance(key, (str, int, float)) or isinstance(key, bool):
                raise ConfigError(f"{where}[{i}][0]: a key must be a string or a number")
            if key in out:
                raise ConfigError(f"{where}[{i}][0]: duplicate key {key!r}")
            out[key] = state_value(f"{where}[{i}][1]", pair[1], context)
        return out
    if tag == "slice":
        parts = parse_list(where, body)
        if len(parts) != 3:
            raise ConfigError(f"{where}: a slice is [start, stop, step]")
        bounds = [None if p is None else parse_int(f"{where}[{i}]", p, low=-(2**62), high=2**62) for i, p in enumerate(parts)]
        if bounds[2] == 0:
            raise ConfigError(f"{where}: slice step cannot be zero")
        return slice(*bounds)
    if tag == "dtype":
        name = parse_str(where, body, max_len=16)
        if name not in DTYPES:
            raise ConfigError(f"{where}: dtype {name!r} is not allowed")
        return np.dtype(name)
    if tag == "type":
        name = parse_str(where, body, max_len=20)
        if name in TYPES:
            return TYPES[name]
        raise ConfigError(f"{where}: type {name!r} is not allowed")
    if tag == "function":
        name = parse_str(where, body, max_len=100)
        if name not in FUNCTIONS:
            raise ConfigError(f"{where}: function {name!r} is not allow-listed")
        return Function(name)
    if tag == "node":
        return _node(where, body, context)
    raise ConfigError(f"{where}: unknown state value tag {tag!r}")


def _objects(where: str, record: dict[str, Any], context: _Context) -> np.ndarray:
    items = parse_list(f"{where}.objects", record["objects"])
    shape = [parse_int(f"{where}.shape", s, low=0, high=MAX_OBJECTS) for s in parse_list(f"{where}.shape", record["shape"])]
    if len(items) > MAX_OBJECTS or math.prod(shape) != len(items) or len(shape) > 32:
        raise ConfigError(f"{where}: shape {shape} does not match {len(items)} objects")
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = state_value(f"{where}[{i}]", item, context)
    return out.reshape(shape)

