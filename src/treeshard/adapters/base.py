"""What every adapter shares: the adapter interface and exact JSON encodings.

An adapter turns one family of fitted estimators into a :class:`SavedModel`
(JSON-safe params and fitted attributes, extra arrays, sklearn trees) and
back. Fitted attributes are stored as *tagged values* so that their Python
and numpy types survive the round trip exactly (``np.int64(3)`` stays
``np.int64``, a ``<U5`` label array stays ``<U5``).
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compat import translate_params
from ..errors import ConfigError, UnsupportedEstimatorError
from ..record import (
    TreeLayout,
    encode_float,
    parse_bool,
    parse_dict,
    parse_float,
    parse_int,
    parse_list,
    parse_str,
    require,
    to_json_safe,
)

#: Largest inline (JSON) array readers accept; writers refuse larger ones.
MAX_INLINE_ELEMENTS = 1_000_000
MAX_INLINE_NDIM = 64  # numpy's own limit
MAX_INLINE_STRING = 100_000  # characters of a string in an inline array
_ARRAY_DTYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64", "object"]
)


@dataclass
class SavedModel:
    """An estimator taken apart: everything a store holds about it."""

    params: dict[str, Any]
    unserializable_params: list[str]
    fitted: dict[str, Any]
    layout: TreeLayout
    trees: Sequence  # sklearn Tree objects, in storage order (when saving)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    #: When loading: global ids of the trees to load (partial loads), or None for all.
    selection: np.ndarray | None = None
    #: When loading: ``build_estimators(factory)`` returns the sequence of
    #: sub-estimators, calling ``factory(tree, tree_index)`` for each sklearn
    #: ``Tree`` (a plain list, or a lazy sequence that builds trees on demand).
    build_estimators: Callable[[Callable[[Any, int], Any]], Sequence] | None = None
    #: Families whose trees are not sklearn ``Tree`` objects: their node arrays by name
    #: (written under ``nodes/`` as they are; ``trees`` is then empty).
    node_arrays: dict[str, np.ndarray] | None = None
    #: When loading: node offsets of every stored tree (``nodes/tree_ptr``), for per-node fitted arrays.
    tree_ptr: np.ndarray | None = None

    def estimators(self, factory: Callable[[Any, int], Any]) -> Sequence:
        """The loaded sub-estimators, built by ``factory(tree, tree_index)``."""
        if self.build_estimators is None:
            return [factory(tree, i) for i, tree in enumerate(self.trees)]
        return self.build_estimators(factory)

    @property
    def is_partial(self) -> bool:
        return self.selection is not None and len(self.selection) != self.layout.n_trees


@dataclass(frozen=True)
class Adapter:
    """One estimator class: its id in stores and how to take it apart and rebuild it.

    ``array_names`` lists the optional fitted arrays stored outside the JSON
    record (under ``fitted/`` in the store), with their dtype.
    """

    estimator_id: str
    class_path: tuple[str, str]  # (module, class name): only for importing the allow-listed class
    to_saved: Callable[[Any], SavedModel]
    from_saved: Callable[[type, SavedModel], Any]
    array_names: dict[str, str] = field(default_factory=dict)
    #: ``check_saved(cls, saved)`` runs every check ``from_saved`` runs, building no
    #: tree: save calls it so that it never writes a store that load refuses.
    check_saved: Callable[[type, SavedModel], Any] | None = None
    #: ``read_saved(reader, selection, *, budget)``: for families with their own node arrays, the
    #: :class:`SavedModel` of the selected trees read from an open store.
    read_saved: Callable[[Any, np.ndarray], SavedModel] | None = None
    #: ``describe(config)``: what ``open().info`` shows about this family (informative, never raises).
    describe: Callable[[Any], dict[str, Any]] | None = None

    def estimator_class(self) -> type:
        return _class_at(self.class_path)


@functools.lru_cache(maxsize=None)
def _class_at(class_path: tuple[str, str]) -> type:
    """The allow-listed class at ``(module, name)``, imported once (every save asks for it)."""
    import importlib

    module, name = class_path
    return getattr(importlib.import_module(module), name)


# --------------------------------------------------------------------------- tagged values
def encode_value(value: Any, where: str = "value") -> Any:
    """A fitted attribute as JSON, tagged with its exact type.

    ``where`` names the value in errors (:class:`UnsupportedEstimatorError`).

    >>> encode_value(np.int64(3))
    {'numpy': 'int64', 'value': 3}
    >>> decode_value("x", encode_value(np.array(["a", "b"])))
    array(['a', 'b'], dtype='<U1')
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    # numpy scalars first: np.float64 is a subclass of float and must stay np.float64.
    if isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.name not in _ARRAY_DTYPES or array.dtype.kind == "O":
            raise UnsupportedEstimatorError(f"{where}: cannot store a numpy scalar of dtype {array.dtype}")
        return {"numpy": array.dtype.name, "value": _encode_items(where, array.reshape(1))[0]}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"float": encode_float(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            dtype = f"<U{value.dtype.itemsize // 4}"
            if value.dtype.itemsize // 4 > MAX_INLINE_STRING:
                raise UnsupportedEstimatorError(f"{where}: cannot store strings of dtype {dtype} (at most <U{MAX_INLINE_STRING})")
        else:
            dtype = value.dtype.name
            if dtype not in _ARRAY_DTYPES:
                raise UnsupportedEstimatorError(f"{where}: cannot store an array of dtype {value.dtype}")
        problem = inline_shape_problem(value.shape)
        if problem:
            raise UnsupportedEstimatorError(f"{where}: cannot store {problem}")
        return {"ndarray": dtype, "shape": list(value.shape), "data": _encode_items(where, value.reshape(-1))}
    if isinstance(value, (list, tuple)):
        items = [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return {"list" if isinstance(value, list) else "tuple": items}
    raise UnsupportedEstimatorError(f"{where}: cannot store a value of type {type(value).__name__}")


def inline_shape_problem(shape: Sequence[int]) -> str | None:
    """Why readers refuse an inline array of ``shape`` (``None`` if they accept it).

    Writers check with this too, so that they never write what a reader refuses.
    """
    if len(shape) > MAX_INLINE_NDIM:
        return f"an inline array of {len(shape)} dimensions (at most {MAX_INLINE_NDIM})"
    if any(n > MAX_INLINE_ELEMENTS for n in shape) or math.prod(shape) > MAX_INLINE_ELEMENTS:
        return f"an inline array of shape {tuple(shape)}: inline arrays hold at most {MAX_INLINE_ELEMENTS:,} elements"
    return None


def _encode_items(where: str, flat: np.ndarray) -> list[Any]:
    kind = flat.dtype.kind
    if kind == "f":
        return [encode_float(v) for v in flat.tolist()]
    if kind == "O":
        if not all(isinstance(v, str) for v in flat):
            raise UnsupportedEstimatorError(f"{where}: object arrays may only hold strings")
        if any(len(v) > MAX_INLINE_STRING for v in flat):
            raise UnsupportedEstimatorError(f"{where}: cannot store a string longer than {MAX_INLINE_STRING:,} characters")
        return list(flat)
    return flat.tolist()


def decode_value(where: str, value: Any) -> Any:
    """Rebuild a value written by :func:`encode_value`, checking every element."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        raise ConfigError(f"{where}: untagged float {value!r} (floats are stored as {{\"float\": ...}})")
    record = parse_dict(where, value)
    if len(record) == 1 and "float" in record:
        return parse_float(where, record["float"])
    if len(record) == 1 and ("list" in record or "tuple" in record):
        items = [decode_value(f"{where}[{i}]", v) for i, v in enumerate(parse_list(where, next(iter(record.values()))))]
        return items if "list" in record else tuple(items)
    if "numpy" in record:
        dtype = _parse_dtype(where, record["numpy"])
        if dtype.kind in "OU":
            raise ConfigError(f"{where}: numpy scalar of dtype {dtype} is not supported")
        return _decode_items(where, [require(where, record, "value")], dtype)[0]
    if "ndarray" in record:
        dtype = _parse_dtype(where, record["ndarray"])
        shape = [parse_int(f"{where}.shape", s, low=0, high=MAX_INLINE_ELEMENTS) for s in parse_list(f"{where}.shape", require(where, record, "shape"))]
        problem = inline_shape_problem(shape)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        data = parse_list(f"{where}.data", require(where, record, "data"))
        if math.prod(shape) != len(data):
            raise ConfigError(f"{where}: shape {shape} does not match {len(data)} values")
        return _decode_items(where, data, dtype).reshape(shape)
    raise ConfigError(f"{where}: unknown value encoding {sorted(record)[:5]}")


def _parse_dtype(where: str, name: Any) -> np.dtype:
    name = parse_str(f"{where}.dtype", name, max_len=16)
    if name in _ARRAY_DTYPES:
        return np.dtype(name)
    if name.startswith("<U") and name[2:].isdigit() and 0 < int(name[2:]) <= MAX_INLINE_STRING:
        return np.dtype(name)
    raise ConfigError(f"{where}: unsupported dtype {name!r}")


def _decode_items(where: str, data: list[Any], dtype: np.dtype) -> np.ndarray:
    kind = dtype.kind
    if kind in "OU":
        items = [parse_str(f"{where}[{i}]", v, max_len=MAX_INLINE_STRING) for i, v in enumerate(data)]
        if kind == "U" and items and max(map(len, items)) > dtype.itemsize // 4:
            raise ConfigError(f"{where}: a string is longer than its dtype {dtype}")
        out = np.empty(len(items), dtype=dtype)
        out[:] = items
        return out
    if kind == "b":
        return np.array([parse_bool(f"{where}[{i}]", v) for i, v in enumerate(data)], dtype=dtype)
    if kind in "iu":
        info = np.iinfo(dtype)
        ints = [parse_int(f"{where}[{i}]", v, low=int(info.min), high=int(info.max)) for i, v in enumerate(data)]
        return np.array(ints, dtype=dtype)
    return np.array([parse_float(f"{where}[{i}]", v) for i, v in enumerate(data)], dtype=dtype)


# --------------------------------------------------------------------------- params
# String-keyed dicts with these keys would read back as a tagged value: written as dict_items.
_PARAM_TAGS = ({"dict_items"}, {"float"}, {"numpy", "value"}, {"ndarray", "shape", "data"})


def encode_params(estimator: Any) -> tuple[dict[str, Any], list[str]]:
    """``get_params(deep=False)`` as JSON; params JSON cannot hold are ``null`` and listed.

    Dicts with non-string keys (``class_weight={0: 1, 1: 5}``) are kept as
    ``{"dict_items": [[key, value], ...]}``, and so are string-keyed dicts that
    would read back as a tagged value (``class_weight={"float": 2.0}``).
    numpy scalars and arrays are tagged values (``random_state=np.int64(3)``
    reads back as ``np.int64(3)``).
    """
    params: dict[str, Any] = {}
    unserializable: list[str] = []
    for name, value in shallow_params(estimator).items():
        if isinstance(value, dict) and value and (not all(isinstance(k, str) for k in value) or set(value) in _PARAM_TAGS):
            encoded = encode_params_dict(value)
            ok = encoded is not None
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            encoded = [encode_params_dict(v) for v in value]  # multi-output class_weight
            ok = all(e is not None for e in encoded)
        elif isinstance(value, float) and not isinstance(value, np.floating) and not math.isfinite(value):
            ok, encoded = True, {"float": encode_float(value)}
        else:
            ok, encoded = _param_json(value)
        params[name] = encoded if ok else None
        if not ok:
            unserializable.append(name)
    return params, unserializable


def shallow_params(estimator: Any) -> dict[str, Any]:
    """``estimator.get_params(deep=False)``, without the ``inspect.signature`` sklearn runs on
    every call: for sklearn's own ``get_params``, which reads each constructor param with
    ``getattr``, the names are taken once per class (in sklearn's order)."""
    from sklearn.base import BaseEstimator

    cls = type(estimator)
    if getattr(cls, "get_params", None) is not BaseEstimator.get_params or not hasattr(cls, "_get_param_names"):
        return estimator.get_params(deep=False)
    return {name: getattr(estimator, name) for name in _param_order(cls)}


@functools.lru_cache(maxsize=256)
def _param_order(cls: type) -> tuple[str, ...]:
    return tuple(cls._get_param_names())


def encode_params_dict(value: dict) -> Any:
    ok, encoded = _param_json([[k, v] for k, v in value.items()])
    return {"dict_items": encoded} if ok else None


def _param_json(value: Any) -> tuple[bool, Any]:
    """:func:`to_json_safe`, with numpy scalars and arrays as tagged values."""
    if isinstance(value, (np.generic, np.ndarray)) and not isinstance(value, np.str_):
        try:
            return True, encode_value(value)
        except UnsupportedEstimatorError:
            pass  # np.float16, a huge array, ...: a plain number as before, or not representable
    if isinstance(value, (list, tuple)):
        items = [_param_json(v) for v in value]
        return (True, [v for _, v in items]) if all(ok for ok, _ in items) else (False, None)
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and set(value) not in _PARAM_TAGS:
        entries = {k: _param_json(v) for k, v in value.items()}
        return (True, {k: v for k, (_, v) in entries.items()}) if all(ok for ok, _ in entries.values()) else (False, None)
    return to_json_safe(value)


def _is_numpy_tag(value: dict) -> bool:
    """A tagged numpy scalar or array (the tag names its dtype: a string)."""
    keys = set(value)
    if keys == {"numpy", "value"}:
        return isinstance(value["numpy"], str)
    return keys == {"ndarray", "shape", "data"} and isinstance(value["ndarray"], str)


def decode_param(where: str, value: Any) -> Any:
    """Rebuild a param written by :func:`encode_params`."""
    if isinstance(value, dict):
        if set(value) == {"dict_items"}:
            out = {}
            for i, pair in enumerate(parse_list(where, value["dict_items"])):
                pair = parse_list(f"{where}[{i}]", pair)
                if len(pair) != 2 or isinstance(pair[0], list):
                    raise ConfigError(f"{where}[{i}]: expected a [key, value] pair")
                key = decode_param(f"{where}[{i}][0]", pair[0])
                if isinstance(key, (dict, list, np.ndarray)):
                    raise ConfigError(f"{where}[{i}]: a key must be a scalar")
                out[key] = decode_param(f"{where}[{i}][1]", pair[1])
            return out
        if set(value) == {"float"}:
            return parse_float(where, value["float"])
        if _is_numpy_tag(value):
            return decode_value(where, value)
        return {key: decode_param(f"{where}.{key}", item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_param(f"{where}[{i}]", v) for i, v in enumerate(value)]
    return value


@functools.lru_cache(maxsize=64)
def _param_names(cls: type) -> frozenset[str]:
    """The constructor params of an estimator class (sklearn inspects the signature on every call)."""
    return frozenset(cls().get_params(deep=False))


def build_estimator(cls: type, params: dict[str, Any], unserializable: Sequence[str] = ()) -> Any:
    """``cls(**params)`` after checking names and values against sklearn's own constraints.

    Params listed in ``unserializable`` (stored as ``null``) take the
    constructor's default: ``null`` is not a valid value for every param
    (``oob_score=<callable>`` becomes the default ``False``, not ``None``).
    """
    known = _param_names(cls)
    key = (cls, json.dumps([params, sorted(unserializable)], sort_keys=True, allow_nan=True))
    translated = translate_params(cls, params, installed=known)  # stored under another sklearn version
    unserializable = [name for name in unserializable if name in translated or name not in params]
    params = translated
    unknown = sorted((set(params) | set(unserializable)) - known)
    if unknown:
        raise ConfigError(f"config.params: unknown parameter(s) {unknown} for {cls.__name__}")
    decoded = {
        name: decode_param(f"config.params.{name}", value) for name, value in params.items() if name not in unserializable
    }
    for name, value in decoded.items():
        _check_param_integers(f"config.params.{name}", value)
    n_jobs = decoded.get("n_jobs")
    if not isinstance(n_jobs, np.ndarray) and n_jobs == 0:  # passes sklearn's constraints, but joblib refuses it at predict time
        raise ConfigError("config.params.n_jobs: 0 is not a number of jobs (use null, a positive or a negative integer)")
    estimator = cls(**decoded)
    if key not in _VALID_PARAMS:  # the same stored params always validate alike: checked once
        try:
            estimator._validate_params()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"config.params: {exc}") from None
        with _VALID_PARAMS_LOCK:
            if len(_VALID_PARAMS) >= _MAX_VALID_PARAMS:
                _VALID_PARAMS.clear()
            _VALID_PARAMS.add(key)
    return estimator


#: ``(class, params as stored)`` that passed sklearn's parameter validation in this process.
_VALID_PARAMS: set[tuple[type, str]] = set()
_VALID_PARAMS_LOCK = threading.Lock()
_MAX_VALID_PARAMS = 256


def _check_param_integers(where: str, value: Any) -> None:
    """Integers in params fit in int64 (sklearn hands some to C code)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise ConfigError(f"{where}: integer {value} is out of the int64 range")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_param_integers(f"{where}[{i}]", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_param_integers(f"{where}[{key!r}]", item)


# --------------------------------------------------------------------------- fitted attributes
def encode_fitted(estimator: Any, names: Sequence[str], prefix: str = "") -> dict[str, Any]:
    """The named attributes (those present) as tagged JSON values.

    ``prefix`` names the estimator in errors (``"estimators_[0]."``).
    """
    return {
        name: encode_value(getattr(estimator, name), f"fitted attribute {prefix}{name}")
        for name in names
        if hasattr(estimator, name)
    }


def decode_fitted(fitted: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    unknown = sorted(set(fitted) - set(names))
    if unknown:
        raise ConfigError(f"config.fitted: unknown attribute(s) {unknown[:10]}")
    return {name: decode_value(f"config.fitted.{name}", value) for name, value in fitted.items()}


def new_like(cls: type, attributes: dict[str, Any]) -> Any:
    """An instance of ``cls`` with exactly ``attributes``, without calling ``__init__``.

    Building thousands of sub-estimators through their constructors (or
    ``clone``) costs more than reading their trees; this is what unpickling does.
    """
    obj = cls.__new__(cls)
    obj.__dict__.update(attributes)
    return obj


# --------------------------------------------------------------------------- per-tree params
#: Fitted attributes of a sub-estimator that may differ from tree to tree.
TREE_RUN_FITTED = ("max_features_",)


def encode_tree_params(
    sub_estimators: Sequence, expected: dict[str, Any], *, fitted_names: Sequence[str] = (), first: Any = None
) -> list[dict[str, Any]] | None:
    """Runs of consecutive sub-estimators whose params differ from ``expected``.

    An ensemble makes each tree with its own params at the time (a warm start
    with a new ``max_depth`` leaves the earlier trees as they were). Returns
    ``None`` when every tree has the ``expected`` params (and, for
    ``fitted_names``, the fitted attributes of ``first``), else a list of
    ``{"n_trees": n, "params": {...}, "fitted": {...}}`` covering every tree
    in order, each holding only what differs.
    """
    runs: list[dict[str, Any]] = []
    previous = None
    for estimator in sub_estimators:
        key = _tree_overrides(estimator, expected, fitted_names, first)
        if runs and key == previous:
            runs[-1]["n_trees"] += 1
        else:
            params, fitted = key
            runs.append({"n_trees": 1, "params": params, "fitted": fitted})
            previous = key
    if all(not run["params"] and not run["fitted"] for run in runs):
        return None
    return runs


def _tree_overrides(estimator: Any, expected: dict[str, Any], fitted_names: Sequence[str], first: Any) -> tuple[dict, dict]:
    params: dict[str, Any] = {}
    for name, value in expected.items():
        actual = getattr(estimator, name)
        if actual is value:
            continue
        ok_actual, encoded = _param_json(actual)
        if not ok_actual:
            raise UnsupportedEstimatorError(f"sub-estimator param {name}={actual!r} cannot be stored")
        if encoded != _param_json(value)[1] or type(actual) is not type(value):
            params[name] = encoded
    fitted = {}
    for name in fitted_names:
        actual, reference = getattr(estimator, name, None), getattr(first, name, None)
        if actual is not reference and encode_value(actual, name) != encode_value(reference, name):
            fitted[name] = encode_value(actual, f"fitted attribute {name}")
    return params, fitted


@dataclass(frozen=True)
class TreeParamRuns:
    """Decoded :func:`encode_tree_params`: per-tree attribute overrides."""

    stops: np.ndarray  # cumulative tree counts, one per run
    overrides: list[dict[str, Any]]  # attributes to set on the trees of each run

    def for_tree(self, index: int) -> dict[str, Any]:
        return self.overrides[int(np.searchsorted(self.stops, index, side="right"))]


def attach_bagged_trees(ensemble: Any, saved: SavedModel, sub_fitted: dict[str, Any], runs: TreeParamRuns | None, random_states: Any) -> None:
    """Set a bagging ensemble's ``estimators_``: one sub-estimator per stored tree.

    Each is built like ``ensemble._make_estimator`` would, without ``__init__``:
    the template's attributes, the stored sub-estimator fitted attributes, the
    tree's own param overrides, its seed and its tree.
    """
    template = ensemble._make_estimator(append=False)
    base = {**vars(template), **sub_fitted}
    tree_cls = type(template)

    def make_estimator(tree: Any, index: int) -> Any:
        overrides = runs.for_tree(index) if runs is not None else {}
        return new_like(tree_cls, {**base, **overrides, "random_state": random_states[index], "tree_": tree})

    ensemble.estimators_ = saved.estimators(make_estimator)


def decode_tree_params(
    where: str, record: Any, *, tree_cls: type, expected: dict[str, Any], n_trees: int, fitted_check: Callable[[dict[str, Any]], None]
) -> TreeParamRuns | None:
    """Check and decode a ``tree_params`` record (see :func:`encode_tree_params`).

    Each run's params must pass the tree class's own constraints together
    with ``expected``; ``fitted_check`` checks each run's fitted overrides.
    """
    if record is None:
        return None
    runs = parse_list(where, record)
    if not runs:
        raise ConfigError(f"{where}: expected at least one run")
    counts, overrides = [], []
    valid: set[str] = set()  # params already checked (a hostile record may repeat them in many runs)
    for i, run in enumerate(runs):
        at = f"{where}[{i}]"
        run = parse_dict(at, run)
        unknown = sorted(set(run) - {"n_trees", "params", "fitted"})
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {unknown}")
        counts.append(parse_int(f"{at}.n_trees", require(at, run, "n_trees"), low=1, high=n_trees))
        params = parse_dict(f"{at}.params", require(at, run, "params"))
        unknown = sorted(set(params) - set(expected))
        if unknown:
            raise ConfigError(f"{at}.params: unknown tree parameter(s) {unknown}")
        decoded = {name: decode_param(f"{at}.params.{name}", value) for name, value in params.items()}
        for name, value in decoded.items():
            _check_param_integers(f"{at}.params.{name}", value)
        key = json.dumps(params, sort_keys=True)
        if key not in valid:
            try:
                tree_cls(**{**expected, **decoded})._validate_params()
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{at}.params: {exc}") from None
            valid.add(key)
        fitted = decode_fitted(parse_dict(f"{at}.fitted", require(at, run, "fitted")), TREE_RUN_FITTED)
        fitted_check(fitted)
        overrides.append({**decoded, **fitted})
    stops = np.cumsum(counts)
    if stops[-1] != n_trees:
        raise ConfigError(f"{where}: runs cover {int(stops[-1])} trees, but {n_trees} trees are stored")
    return TreeParamRuns(stops, overrides)
