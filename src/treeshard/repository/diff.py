"""What differs between two versions: params, metadata, metrics and trees."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .versions import VersionRef, version_id


def tree_digests(ref: VersionRef) -> list[str]:
    """A sha256 of each tree's node columns, in storage order (a pipeline's ensembles one after the other)."""
    from ..reader import StoreReader

    reader = StoreReader(ref)
    try:
        if reader.pipeline is None:
            return _digests(reader, "")
        out = []
        for node in reader.pipeline.ensembles:
            model = reader.for_model(node.group, node.config)
            try:
                out += _digests(model, f"{node.group}:")
            finally:
                model.close()
        return out
    finally:
        reader.close()


def _digests(reader: Any, prefix: str) -> list[str]:
    from ..adapters.families import HIST_BOOSTING, family_of
    from ..columns import NODE_COLUMNS

    if family_of(reader.config.estimator) == HIST_BOOSTING:  # its own node columns, and each tree's bitsets
        from ..hist_columns import BITSET_ARRAYS, HIST_NODE_COLUMNS, read_hist_columns

        cols = read_hist_columns(reader, reader.config.trees.n_trees)
        ptr, columns, names = cols.tree_ptr, dict(cols.nodes), list(HIST_NODE_COLUMNS)
        bitsets = [(cols.bitset_ptr, getattr(cols, name)) for name in BITSET_ARRAYS]
    else:
        ptr = reader.tree_ptr
        columns, names, bitsets = reader.read_columns(list(NODE_COLUMNS), [(0, int(ptr[-1]))]), list(NODE_COLUMNS), []
    out = []
    for i in range(len(ptr) - 1):
        digest = hashlib.sha256(prefix.encode())
        for name in names:
            digest.update(np.ascontiguousarray(columns[name][ptr[i] : ptr[i + 1]]).tobytes())
        for bitset_ptr, array in bitsets:
            digest.update(np.ascontiguousarray(array[bitset_ptr[i] : bitset_ptr[i + 1]]).tobytes())
        out.append(digest.hexdigest())
    return out


def _changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    return {key: [a.get(key), b.get(key)] for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def diff_versions(repository: Any, a: VersionRef, b: VersionRef) -> dict[str, Any]:
    from .versions import read_manifest

    first = read_manifest(repository._backend, a.version).document
    second = read_manifest(repository._backend, b.version).document
    model_a, model_b = first.get("model", {}), second.get("model", {})
    meta_a, meta_b = dict(first.get("metadata") or {}), dict(second.get("metadata") or {})
    metrics_a, metrics_b = meta_a.get("metrics", {}), meta_b.get("metrics", {})
    if isinstance(metrics_a, dict) and isinstance(metrics_b, dict):  # else compared as any other metadata
        meta_a.pop("metrics", None)
        meta_b.pop("metrics", None)
    else:
        metrics_a = metrics_b = {}
    trees_a, trees_b = tree_digests(a), tree_digests(b)
    common = min(len(trees_a), len(trees_b))
    changed = sum(trees_a[i] != trees_b[i] for i in range(common))
    return {
        "from": version_id(a.version),
        "to": version_id(b.version),
        "estimator": [model_a.get("estimator"), model_b.get("estimator")],
        "params": _changed(model_a.get("params", {}), model_b.get("params", {})),
        "metrics": _changed(metrics_a, metrics_b),
        "metadata": _changed(meta_a, meta_b),
        "versions": _changed(first.get("versions", {}), second.get("versions", {})),
        "trees": {
            "from": len(trees_a),
            "to": len(trees_b),
            "added": max(0, len(trees_b) - len(trees_a)),
            "removed": max(0, len(trees_a) - len(trees_b)),
            "changed": changed,
            "unchanged": common - changed,
        },
    }
