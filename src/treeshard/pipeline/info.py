"""What ``treeshard info`` and ``open(...).info`` say about a pipeline store: its structure, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .nodes import EnsembleNode, EstimatorNode, SkopsNode
from .record import PipelineRecord


@dataclass(frozen=True)
class PipelineInfo:
    """A pipeline store's summary: ``structure`` is the estimator tree as plain JSON data."""

    estimator: str
    structure: dict[str, Any]
    ensembles: list[dict[str, Any]]
    skops: list[dict[str, Any]]
    format_version: int
    codec: str
    created: str
    versions: dict[str, str]
    metadata: dict[str, Any]
    arrays: dict[str, dict[str, Any]]

    @property
    def stored_bytes(self) -> int:
        return sum(int(a.get("stored_bytes", 0)) for a in self.arrays.values() if isinstance(a, dict))

    @property
    def nbytes(self) -> int:
        return sum(int(a.get("nbytes", 0)) for a in self.arrays.values() if isinstance(a, dict))

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["stored_bytes"], out["nbytes"] = self.stored_bytes, self.nbytes
        return out


def pipeline_info(record: PipelineRecord) -> PipelineInfo:
    return PipelineInfo(
        estimator=record.root.id,
        structure=describe(record.root),
        ensembles=[_ensemble(node) for node in record.ensembles],
        skops=[describe(node) for node in record.skops],
        format_version=1,
        codec=record.codec,
        created=record.created,
        versions=dict(record.versions),
        metadata=dict(record.metadata),
        arrays=dict(record.arrays),
    )


def _ensemble(node: EnsembleNode) -> dict[str, Any]:
    from .checks import in_width

    trees = node.config.trees
    return {"estimator": node.config.estimator, "group": node.group, "n_trees": trees.n_trees, "n_nodes": trees.n_nodes, "n_features": in_width(node)}


def describe(node: Any) -> Any:
    """A node as plain JSON data: composites with their steps and columns, ensembles with their size."""
    if isinstance(node, EnsembleNode):
        return _ensemble(node)
    if isinstance(node, SkopsNode):
        return {"estimator": node.qualname.rsplit(".", 1)[-1], "skops": node.group, "sklearn": node.sklearn}
    if not isinstance(node, EstimatorNode):
        return node if isinstance(node, str) or node is None else repr(node)
    out: dict[str, Any] = {"estimator": node.id}
    if "n_features_in_" in node.fitted:
        out["n_features_in"] = int(node.fitted["n_features_in_"])
    if node.id == "Pipeline":
        out["steps"] = [{"name": name, "step": describe(step)} for name, step in node.params.get("steps", [])]
    elif node.id == "ColumnTransformer":
        entries = node.fitted.get("transformers_", node.params.get("transformers", []))
        out["transformers"] = [{"name": name, "transformer": describe(step), "columns": _columns(columns)} for name, step, columns in entries]
        out["remainder"] = describe(node.params.get("remainder"))
    elif node.id == "FeatureUnion":
        out["transformers"] = [{"name": name, "transformer": describe(step)} for name, step in node.params.get("transformer_list", [])]
    elif node.id == "TransformedTargetRegressor":
        out["regressor"] = describe(node.fitted.get("regressor_", node.params.get("regressor")))
        transformer = node.fitted.get("transformer_")
        out["transformer"] = describe(transformer) if transformer is not None else None
    elif node.id == "SelectFromModel":
        out["estimator_"] = describe(node.fitted.get("estimator_", node.params.get("estimator")))
    return out


def _columns(columns: Any) -> Any:
    if isinstance(columns, slice):
        return f"slice({columns.start}, {columns.stop}, {columns.step})"
    if isinstance(columns, np.ndarray):
        return columns.tolist()
    if isinstance(columns, (list, tuple)):
        return [_columns(c) for c in columns]
    return columns


def format_structure(structure: Any, indent: int = 0) -> list[str]:
    """Lines of an indented tree of ``structure`` (what ``treeshard info`` prints)."""
    pad = "  " * indent
    if not isinstance(structure, dict):
        return [f"{pad}{structure}"]
    head = structure["estimator"]
    if "n_trees" in structure:
        return [f"{pad}{head} ({structure['n_trees']} trees, {structure['n_nodes']:,} nodes, {structure['n_features']} features) [{structure['group']}]"]
    if "skops" in structure:
        return [f"{pad}{head} (skops, scikit-learn {structure['sklearn']} only) [{structure['skops']}]"]
    if "n_features_in" in structure:
        head += f" ({structure['n_features_in']} features in)"
    lines = [pad + head]
    for entry in structure.get("steps", []):
        lines.append(f"{pad}  - {entry['name']}:")
        lines += format_structure(entry["step"], indent + 2)
    for entry in structure.get("transformers", []):
        columns = f" on {entry['columns']}" if "columns" in entry else ""
        lines.append(f"{pad}  - {entry['name']}{columns}:")
        lines += format_structure(entry["transformer"], indent + 2)
    for key in ("remainder", "regressor", "transformer", "estimator_"):
        if key in structure and structure[key] is not None:
            lines.append(f"{pad}  {key}:")
            lines += format_structure(structure[key], indent + 2)
    return lines


def format_pipeline_info(info: PipelineInfo, *, size: Any) -> str:
    """What ``treeshard info`` prints for a pipeline store (``size`` formats a byte count)."""
    lines = [
        f"pipeline        {info.estimator}",
        f"ensembles       {len(info.ensembles)}",
        f"format version  {info.format_version}",
        f"codec           {info.codec}",
        f"created         {info.created}",
        "versions        " + ", ".join(f"{k} {v}" for k, v in sorted(info.versions.items())),
        f"size            {size(info.stored_bytes)} stored, {size(info.nbytes)} uncompressed",
    ]
    if info.metadata:
        import json

        lines.append("metadata        " + json.dumps(info.metadata, sort_keys=True, ensure_ascii=False))
    lines.append("structure")
    lines += ["  " + line for line in format_structure(info.structure)]
    return "\n".join(lines)
