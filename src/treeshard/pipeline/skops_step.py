"""The skops fallback: a pipeline step treeshard has no schema for, stored by ``skops.io``.

Saving warns which step fell back and why; loading needs ``treeshard[skops]``,
the writer's scikit-learn minor version, and refuses any type skops does not
trust by default unless it is in :data:`TRUSTED` (never ``trusted=True``).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingDependencyError, UnsupportedEstimatorError
from .nodes import SkopsNode

#: Types beyond skops' own default trust that a skops step may hold (an explicit allow-list; empty:
#: only what skops trusts by default, i.e. scikit-learn's and numpy's own types).
TRUSTED: frozenset[str] = frozenset()


class SkopsFallbackWarning(UserWarning):
    """A pipeline step was stored with skops: it loads under the same scikit-learn minor version only."""


def _skops_io() -> Any:
    try:
        import skops.io
    except ImportError:
        raise MissingDependencyError("this pipeline step needs skops: pip install 'treeshard[skops]'") from None
    return skops.io


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def dump_step(estimator: Any, where: str, group: str) -> tuple[dict[str, Any], bytes]:
    """The node and bytes of ``estimator`` stored with skops, warning that it fell back."""
    import sklearn

    cls = type(estimator)
    try:
        sio = _skops_io()
    except MissingDependencyError:
        raise UnsupportedEstimatorError(
            f"{where}: {cls.__module__}.{cls.__qualname__} has no treeshard schema; install treeshard[skops] to store it with skops"
        ) from None
    data = sio.dumps(estimator)
    refused = sorted(set(sio.get_untrusted_types(data=data)) - TRUSTED)
    if refused:
        raise UnsupportedEstimatorError(f"{where}: skops does not trust {refused}; treeshard will not store a step it could only load with trust")
    warnings.warn(
        SkopsFallbackWarning(
            f"{where}: {cls.__qualname__} has no treeshard schema, so it is stored with skops: it loads under "
            f"scikit-learn {minor(sklearn.__version__)}.x only, and the Predictor cannot serve this pipeline"
        ),
        stacklevel=4,
    )
    node = {"kind": "skops", "group": group, "nbytes": len(data), "sklearn": sklearn.__version__, "qualname": f"{cls.__module__}.{cls.__qualname__}"}
    return node, data


def load_step(node: SkopsNode, data: bytes) -> Any:
    """Rebuild a skops step (the same scikit-learn minor version, trusted types only)."""
    import sklearn

    if minor(node.sklearn) != minor(sklearn.__version__):
        raise UnsupportedEstimatorError(
            f"{node.where}: {node.qualname} was stored with skops under scikit-learn {node.sklearn}; "
            f"it loads under scikit-learn {minor(node.sklearn)}.x only (installed: {sklearn.__version__})"
        )
    sio = _skops_io()
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)))
        refused = [t for t in untrusted if t not in TRUSTED]
        if refused:
            raise ConfigError(f"{node.where}: the skops step holds types treeshard does not trust: {refused[:5]}")
        return sio.loads(data, trusted=untrusted)
    except (zipfile.BadZipFile, json.JSONDecodeError, KeyError, IndexError, AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{node.where}: the skops step does not load ({type(exc).__name__}: {str(exc)[:200]})") from None


def read_bytes(reader: Any, node: SkopsNode) -> bytes:
    return reader.read(node.group, np.dtype("uint8"), (node.nbytes,)).tobytes()
