"""Saving a pipeline: the estimator tree as a pipeline record, each fitted ensemble as node columns.

``encode_pipeline_files`` walks the estimator depth first (:class:`SaveContext`
carries what the walk collects), encodes every param and fitted attribute as
a state value (``docs/FORMAT.md`` 10.2) and makes one store's files (written by
:func:`treeshard.save`): the ensembles' arrays under ``models/<k>/`` and the
record in the root ``zarr.json``.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..adapters.base import encode_value
from ..errors import UnsupportedEstimatorError
from ..record import encode_float
from .nodes import DTYPES
from .record import MODELS_GROUP, PIPELINE_KEY, SKOPS_GROUP
from .table import FUNCTION_PARAMS, FUNCTIONS, KINDS, PIPELINE_FAMILIES, function_of, kind_class


class _Unrepresentable(Exception):
    """A param value JSON cannot hold (stored as null, like the adapters do)."""


@dataclass
class SaveContext:
    ensembles: list[tuple[str, Any]] = field(default_factory=list)  # (group, estimator), in walk order
    groups: dict[int, str] = field(default_factory=dict)  # id(estimator) -> group
    #: id(column selector) -> the columns it selected at fit time (ColumnTransformer).
    selected: dict[int, Any] = field(default_factory=dict)
    skops: list[tuple[str, bytes]] = field(default_factory=list)  # (array path, skops bytes)


def kind_id_of(estimator: Any) -> str | None:
    """The allow-list id of ``estimator``'s exact class (composites, transformers, ensembles), else None."""
    from ..adapters import ADAPTERS
    from ..adapters.families import family_of

    cls = type(estimator)
    name = cls.__name__
    if not cls.__module__.startswith("sklearn.") or (name not in KINDS and name not in ADAPTERS):
        return None
    if name not in KINDS and family_of(name) not in PIPELINE_FAMILIES:
        return None
    return name if kind_class(name) is cls else None


def is_pipeline(estimator: Any) -> bool:
    """Whether :func:`treeshard.save` stores ``estimator`` as a pipeline store (a composite or transformer)."""
    return type(estimator).__name__ in KINDS and kind_id_of(estimator) is not None


def encode_node(estimator: Any, where: str, context: SaveContext) -> dict[str, Any]:
    from ..adapters import ADAPTERS

    kind_id = kind_id_of(estimator)
    if kind_id is None:
        from .skops_step import dump_step

        node, data = dump_step(estimator, where, f"{SKOPS_GROUP}/{len(context.skops)}")
        context.skops.append((node["group"], data))
        return node
    if kind_id in ADAPTERS and _is_fitted(estimator):
        group = context.groups.get(id(estimator))
        if group is not None:
            return {"kind": "ensemble", "group": group}
        group = f"{MODELS_GROUP}/{len(context.ensembles)}"
        context.groups[id(estimator)] = group
        context.ensembles.append((group, estimator))
        return {"kind": "ensemble", "group": group, "config": None}  # filled in once its arrays are encoded
    if kind_id == "ColumnTransformer" and hasattr(estimator, "_columns"):
        for (_, _, columns), resolved in zip(estimator.transformers, estimator._columns, strict=False):
            if callable(columns):
                context.selected[id(columns)] = resolved
    params: dict[str, Any] = {}
    unserializable: list[str] = []
    for name, value in estimator.get_params(deep=False).items():
        try:
            params[name] = encode_state(f"{where}.params.{name}", value, context)
        except _Unrepresentable:
            params[name] = None
            unserializable.append(name)
    fitted: dict[str, Any] = {}
    allowed = KINDS[kind_id].fitted_names if kind_id in KINDS else frozenset()
    for name, value in vars(estimator).items():
        if name in params or kind_id not in KINDS:  # an unfitted ensemble template: its params are all
            continue
        if name not in allowed:
            raise UnsupportedEstimatorError(f"{where}: {kind_id} has a fitted attribute {name!r} treeshard does not know how to store")
        try:
            fitted[name] = encode_state(f"{where}.fitted.{name}", value, context)
        except _Unrepresentable:
            raise UnsupportedEstimatorError(f"{where}.fitted.{name}: cannot store a value of type {type(value).__name__}") from None
    allowed, names = FUNCTION_PARAMS.get(kind_id, ({}, ()))
    for name in names:
        function_id = params[name].get("function") if isinstance(params.get(name), dict) else None
        if function_id is not None and function_id not in allowed:  # a load would refuse it (checks._function_params)
            raise UnsupportedEstimatorError(f"{where}.params.{name}: the function {function_id!r} cannot be stored here; allowed: {', '.join(allowed)}")
    node: dict[str, Any] = {"kind": "estimator", "id": kind_id, "params": params, "fitted": fitted}
    if unserializable:
        node["unserializable"] = unserializable
    return node


def check_fitted(estimator: Any) -> None:
    """Refuse an unfitted composite or transformer (``UnsupportedEstimatorError``)."""
    if not _is_fitted(estimator):
        raise UnsupportedEstimatorError(f"cannot save an unfitted {type(estimator).__name__}")


def _is_fitted(estimator: Any) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def encode_state(where: str, value: Any, context: SaveContext) -> Any:
    """One param or fitted attribute as a state value (``docs/FORMAT.md`` 10.2)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.generic, np.ndarray)) and not isinstance(value, np.str_):
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":
            return {"objects": [encode_state(f"{where}[{i}]", v, context) for i, v in enumerate(value.reshape(-1))], "shape": list(value.shape)}
        try:
            return encode_value(value, where)
        except UnsupportedEstimatorError:
            raise _Unrepresentable from None
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"float": encode_float(value)}
    if isinstance(value, (list, tuple)):
        items = [encode_state(f"{where}[{i}]", v, context) for i, v in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    if isinstance(value, dict):
        return {"dict": [[encode_state(f"{where}[{k!r}]", k, context), encode_state(f"{where}[{k!r}]", v, context)] for k, v in value.items()]}
    if isinstance(value, slice):
        for part in (value.start, value.stop, value.step):
            if part is not None and (isinstance(part, bool) or not isinstance(part, (int, np.integer))):
                raise _Unrepresentable
        return {"slice": [None if p is None else int(p) for p in (value.start, value.stop, value.step)]}
    if isinstance(value, np.dtype):
        if value.name not in DTYPES or value.byteorder == ">":
            raise _Unrepresentable
        return {"dtype": value.name}
    if isinstance(value, type) and value in _TYPES:
        return {"type": _TYPES[value]}
    if id(value) in context.selected:
        return encode_state(where, context.selected[id(value)], context)
    if hasattr(value, "get_params") and not isinstance(value, type):
        return {"node": encode_node(value, where, context)}
    if callable(value):
        for function_id in FUNCTIONS:
            if value is function_of(function_id):
                return {"function": function_id}
        raise UnsupportedEstimatorError(
            f"{where}: the function {getattr(value, '__qualname__', value)!r} cannot be stored; allowed: {', '.join(FUNCTIONS)}"
        )
    raise _Unrepresentable


_TYPES = {**{np.dtype(name).type: name for name in DTYPES if name != "object"}, **{t: f"builtins.{t.__name__}" for t in (float, int, bool, object, str)}}


def encode_pipeline_files(
    estimator: Any, *, codec: str, metadata: dict[str, Any], checks: Any, node_rows: int | None = None
) -> dict[str, bytes | list[bytes]]:
    """The files of ``estimator``'s pipeline store (``{key: bytes or a shard's parts}``), written nowhere.

    ``node_rows`` caps each ensemble's node-column chunk length (a repository's finer chunks).
    """
    import sklearn

    from .. import __version__
    from ..adapters import adapter_for
    from ..codecs import node_chunk_rows
    from ..columns import TreeNodeRows
    from ..compat import leaf_counts_for
    from ..integrity import digest_file
    from ..reader import FITTED_GROUP, NODES_GROUP
    from ..record import Config
    from ..spec import CONFIG_KEY, DIGEST_KEY, FORMAT_VERSION
    from ..writer import dumps_member, encode_specs, in_memory, node_column_specs, store_files

    context = SaveContext()
    root = encode_node(estimator, PIPELINE_KEY, context)
    specs = []
    saved_models = []
    for group, model in context.ensembles:
        adapter = adapter_for(model)
        saved = adapter.to_saved(model)
        checks.check_loadable(adapter, model, saved)
        leaf_counts = False
        if saved.node_arrays is not None:  # a family with its own node arrays (histogram boosting)
            specs += [in_memory(f"{group}/{NODES_GROUP}/{name}", array) for name, array in saved.node_arrays.items()]
        else:
            # Under sklearn < 1.4 classifier leaves hold class counts: encoded as a single model's are.
            nodes = TreeNodeRows(saved.trees, saved.layout, leaf_counts=leaf_counts_for(adapter.estimator_id))
            specs.append(in_memory(f"{group}/{NODES_GROUP}/tree_ptr", nodes.tree_ptr))
            rows = node_chunk_rows(saved.layout.value_width)
            specs += node_column_specs(nodes, f"{group}/{NODES_GROUP}", rows=rows if node_rows is None else min(rows, node_rows))
            leaf_counts = nodes.leaf_counts
        specs += [in_memory(f"{group}/{FITTED_GROUP}/{name}", array) for name, array in saved.arrays.items()]
        saved_models.append((group, adapter, saved, leaf_counts))
    specs += [in_memory(group, np.frombuffer(data, dtype=np.uint8)) for group, data in context.skops]
    encoded = encode_specs(specs, codec=codec)
    stored = {array.path: {"nbytes": array.nbytes, "stored_bytes": array.stored_bytes} for array in encoded}
    versions = {
        "treeshard": __version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "zarr": checks.zarr_version(),
        "python": platform.python_version(),
    }
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    configs = {}
    for group, adapter, saved, leaf_counts in saved_models:
        value = next(array for array in encoded if array.path == f"{group}/{NODES_GROUP}/value")
        encoding = "weighted_counts" if value.metadata["data_type"] == "int32" else "class_counts" if leaf_counts else "float64"
        layout = dataclasses.replace(saved.layout, value_encoding=encoding)
        configs[group] = Config(
            format_version=FORMAT_VERSION,
            estimator=adapter.estimator_id,
            params=saved.params,
            unserializable_params=tuple(saved.unserializable_params),
            fitted=saved.fitted,
            trees=layout,
            codec=codec,
            versions=versions,
            created=created,
            metadata={},
            arrays={path: sizes for path, sizes in stored.items() if path.startswith(f"{group}/")},
        ).to_json()
    _fill_configs(root, configs)
    record = {
        "format_version": FORMAT_VERSION,
        PIPELINE_KEY: root,
        "codec": codec,
        "versions": versions,
        "created": created,
        "metadata": metadata,
        "arrays": stored,
    }
    text = checks.check_record(record)
    _check_parses(estimator, record)
    files = store_files(encoded, dumps_member(CONFIG_KEY, text))
    shards = {array.path: {key: (array.shard_sha256[key], array.inner[key]) for key in array.shards} for array in encoded}
    files[DIGEST_KEY] = digest_file(files, config=record, arrays=shards)
    return files


def _check_parses(estimator: Any, record: dict[str, Any]) -> None:
    """Run load's record checks on what save is about to write (as JSON reads it back): a pipeline
    that load would refuse (a state no check accepts, such as numbers among object categories)
    is refused now, naming the field."""
    import json

    from ..errors import ArrayError, ConfigError
    from .record import parse_pipeline_record

    try:
        parse_pipeline_record(json.loads(json.dumps(record)))
    except (ConfigError, ArrayError) as exc:
        raise UnsupportedEstimatorError(f"cannot save this {type(estimator).__name__}: a load would refuse it ({exc})") from None


def _fill_configs(value: Any, configs: dict[str, Any]) -> None:
    """Put each ensemble's config record into its (first) node."""
    if isinstance(value, dict):
        if value.get("kind") == "ensemble" and "config" in value:
            value["config"] = configs[value["group"]]
            return
        for item in value.values():
            _fill_configs(item, configs)
    elif isinstance(value, list):
        for item in value:
            _fill_configs(item, configs)


