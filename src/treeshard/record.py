"""The config record: the JSON document that describes a stored model.

The record lives in the root group's attributes under the key ``"treeshard"``.
:func:`build_config` makes it when saving; :func:`parse_config` checks an
untrusted one field by field (``parse_*`` functions) before anything else is
read. ``docs/FORMAT.md`` is the specification.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError, UnsupportedFormatVersionError
from .spec import (
    MAX_CLASSES,
    MAX_FEATURES,
    MAX_JSON_DEPTH,
    MAX_NODES,
    MAX_OUTPUTS,
    MAX_TREES,
    MAX_VALUE_BYTES,
    MAX_VALUE_WIDTH,
    SUPPORTED_FORMAT_VERSIONS,
)

VALUE_ENCODINGS = ("float64", "weighted_counts", "class_counts")

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# --------------------------------------------------------------------------- JSON values
def encode_float(value: float) -> float | str:
    """A float as JSON: finite floats as numbers, others as ``"NaN"``/``"Infinity"``."""
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def parse_float(where: str, value: Any) -> float:
    """Read a float written by :func:`encode_float`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: expected a number, got {type(value).__name__}")
    if isinstance(value, str):
        if value not in _NONFINITE:
            raise ConfigError(f"{where}: expected a number, got string {value[:40]!r}")
        return _NONFINITE[value]
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range (a hostile record)
        raise ConfigError(f"{where}: {str(value)[:40]}... is out of the float range") from None


def parse_int(where: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Read an integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{where}: {value} is out of range [{low}, {high}]")
    return value


def parse_str(where: str, value: Any, *, max_len: int = 10_000) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ConfigError(f"{where}: string of {len(value)} characters is too long")
    return value


def parse_bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {type(value).__name__}")
    return value


def parse_dict(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def parse_list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def require(where: str, mapping: dict[str, Any], key: str) -> Any:
    """``mapping[key]``, or a :class:`ConfigError` naming the missing key."""
    try:
        return mapping[key]
    except KeyError:
        raise ConfigError(f"{where}: missing required key {key!r}") from None


def check_json_depth(value: Any, where: str = "config", depth: int = 0, *, error: type[Exception] = ConfigError) -> None:
    """Reject documents nested deeper than :data:`MAX_JSON_DEPTH` (raising ``error``)."""
    if depth > MAX_JSON_DEPTH:
        raise error(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for item in value.values():
            check_json_depth(item, where, depth + 1, error=error)
    elif isinstance(value, list):
        for item in value:
            check_json_depth(item, where, depth + 1, error=error)


def to_json_safe(value: Any) -> tuple[bool, Any]:
    """``(True, json_value)`` if ``value`` is plain JSON data, else ``(False, None)``.

    Used for constructor params: tuples become lists, numpy scalars become
    Python numbers; anything else (a RandomState, an estimator, a callable)
    is reported as not representable.
    """
    if value is None or isinstance(value, (bool, str)):
        return True, value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return True, int(value)
    if isinstance(value, np.bool_):
        return True, bool(value)
    if isinstance(value, (float, np.floating)):
        # Non-finite floats are not JSON; callers tag a top-level one themselves.
        return (True, float(value)) if math.isfinite(value) else (False, None)
    if isinstance(value, (list, tuple)):
        items = [to_json_safe(v) for v in value]
        if all(ok for ok, _ in items):
            return True, [v for _, v in items]
        return False, None
    if isinstance(value, dict) and all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
        items = {str(k): to_json_safe(v) for k, v in value.items()}
        if all(ok for ok, _ in items.values()):
            return True, {k: v for k, (_, v) in items.items()}
        return False, None
    return False, None


# --------------------------------------------------------------------------- the record
@dataclass(frozen=True)
class TreeLayout:
    """What every stored tree shares: the arguments of sklearn's ``Tree(...)``."""

    n_trees: int
    n_nodes: int
    n_features: int
    n_outputs: int
    n_classes: tuple[int, ...]  # per output; all 1 for regression trees
    #: How ``nodes/value`` is stored: "float64" (as sklearn has it) or
    #: "weighted_counts" (int32 weighted class counts; value = counts / weighted_n_node_samples,
    #: chosen at save time only when that reproduces every value bit for bit) or
    #: "class_counts" (float64 weighted class counts, as sklearn < 1.4 keeps classifier values).
    value_encoding: str = "float64"

    @property
    def value_width(self) -> int:
        """Number of float64 values per node: ``n_outputs * max(n_classes)``."""
        return self.n_outputs * max(self.n_classes)

    def to_json(self) -> dict[str, Any]:
        return {
            "n_trees": self.n_trees,
            "n_nodes": self.n_nodes,
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "n_classes": list(self.n_classes),
            "value_encoding": self.value_encoding,
        }

    @classmethod
    def parse(cls, record: Any) -> TreeLayout:
        where = "config.trees"
        record = parse_dict(where, record)
        n_outputs = parse_int(f"{where}.n_outputs", require(where, record, "n_outputs"), low=1, high=MAX_OUTPUTS)
        n_classes = parse_list(f"{where}.n_classes", require(where, record, "n_classes"))
        if len(n_classes) != n_outputs:
            raise ConfigError(f"{where}.n_classes: {len(n_classes)} entries for {n_outputs} outputs")
        layout = cls(
            n_trees=parse_int(f"{where}.n_trees", require(where, record, "n_trees"), low=1, high=MAX_TREES),
            n_nodes=parse_int(f"{where}.n_nodes", require(where, record, "n_nodes"), low=1, high=MAX_NODES),
            n_features=parse_int(f"{where}.n_features", require(where, record, "n_features"), low=1, high=MAX_FEATURES),
            n_outputs=n_outputs,
            n_classes=tuple(
                parse_int(f"{where}.n_classes[{i}]", v, low=1, high=MAX_CLASSES) for i, v in enumerate(n_classes)
            ),
            value_encoding=parse_str(f"{where}.value_encoding", require(where, record, "value_encoding"), max_len=40),
        )
        if layout.value_encoding not in VALUE_ENCODINGS:
            raise ConfigError(f"{where}.value_encoding: unknown encoding {layout.value_encoding!r}")
        if layout.value_width > MAX_VALUE_WIDTH:
            raise ConfigError(f"{where}: {layout.value_width} values per node is too many")
        if layout.n_nodes * layout.value_width * 8 > MAX_VALUE_BYTES:
            raise ConfigError(
                f"{where}: {layout.n_nodes} nodes x {layout.value_width} values would need more than "
                f"{MAX_VALUE_BYTES} bytes"
            )
        if layout.n_nodes < layout.n_trees:
            raise ConfigError(f"{where}: {layout.n_nodes} nodes cannot hold {layout.n_trees} trees")
        return layout


@dataclass(frozen=True)
class Config:
    """A parsed, checked config record. See ``docs/FORMAT.md``."""

    format_version: int
    estimator: str
    params: dict[str, Any]
    unserializable_params: tuple[str, ...]
    fitted: dict[str, Any]
    trees: TreeLayout
    codec: str
    versions: dict[str, str]
    created: str
    metadata: dict[str, Any]
    arrays: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "estimator": self.estimator,
            "params": self.params,
            "unserializable_params": list(self.unserializable_params),
            "fitted": self.fitted,
            "trees": self.trees.to_json(),
            "codec": self.codec,
            "versions": self.versions,
            "created": self.created,
            "metadata": self.metadata,
            "arrays": self.arrays,
        }


def parse_record_header(raw: Any) -> tuple[dict[str, Any], int]:
    """An untrusted root record as a dict, its depth bounded and its ``format_version`` supported.

    Shared by the estimator config and the pipeline record.
    """
    where = "config"
    raw = parse_dict(where, raw)
    check_json_depth(raw)
    version = parse_int(f"{where}.format_version", require(where, raw, "format_version"))
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise UnsupportedFormatVersionError(
            f"{where}.format_version: {version} is not supported "
            f"(this treeshard reads {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))})" + _upgrade_hint(raw, version)
        )
    return raw, version


def _upgrade_hint(raw: dict[str, Any], version: int) -> str:
    """What to do about a store of a newer format: upgrade (naming the writer's version, when the record has one)."""
    if version < max(SUPPORTED_FORMAT_VERSIONS):
        return ""
    versions = raw.get("versions")
    writer = versions.get("treeshard") if isinstance(versions, dict) else None
    named = f" (versions.treeshard: {writer!r})" if isinstance(writer, str) and len(writer) <= 100 else ""
    return f": a newer treeshard wrote it{named}; upgrade treeshard (pip install --upgrade treeshard) to read it"


def parse_versions(raw: dict[str, Any]) -> dict[str, str]:
    """A root record's ``versions`` (library name -> version string)."""
    versions = parse_dict("config.versions", require("config", raw, "versions"))
    for key, value in versions.items():
        parse_str(f"config.versions.{key}", value, max_len=100)
    return versions


def parse_config(raw: Any, *, known_estimators: frozenset[str]) -> Config:
    """Check an untrusted config record and return it as a :class:`Config`.

    Only the record's own structure is checked here; relations with the
    arrays are checked by :mod:`treeshard.validate`.
    """
    where = "config"
    raw, version = parse_record_header(raw)
    estimator = parse_str(f"{where}.estimator", require(where, raw, "estimator"), max_len=100)
    if estimator not in known_estimators:
        raise ConfigError(f"{where}.estimator: unknown estimator id {estimator!r}")
    unserializable = parse_list(f"{where}.unserializable_params", raw.get("unserializable_params", []))
    versions = parse_versions(raw)
    return Config(
        format_version=version,
        estimator=estimator,
        params=parse_dict(f"{where}.params", require(where, raw, "params")),
        unserializable_params=tuple(
            parse_str(f"{where}.unserializable_params[{i}]", v, max_len=200) for i, v in enumerate(unserializable)
        ),
        fitted=parse_dict(f"{where}.fitted", require(where, raw, "fitted")),
        trees=TreeLayout.parse(require(where, raw, "trees")),
        codec=parse_str(f"{where}.codec", require(where, raw, "codec"), max_len=100),
        versions=versions,
        created=parse_str(f"{where}.created", require(where, raw, "created"), max_len=100),
        metadata=parse_dict(f"{where}.metadata", raw.get("metadata", {})),
        arrays=parse_dict(f"{where}.arrays", raw.get("arrays", {})),
    )
