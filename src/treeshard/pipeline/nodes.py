"""The decoded pipeline record's building blocks: nodes, functions, and the types and dtypes a record may name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..record import Config

#: Dtypes a ``{"dtype": ...}`` state value may name.
DTYPES = frozenset(["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64", "object"])

#: Types a ``{"type": ...}`` state value may name (an encoder's ``dtype`` param).
TYPES: dict[str, type] = {
    **{name: np.dtype(name).type for name in DTYPES if name != "object"},
    **{f"builtins.{t.__name__}": t for t in (float, int, bool, object, str)},
}


@dataclass(frozen=True)
class Function:
    """An allow-listed function, by id (``numpy.log1p``)."""

    id: str


@dataclass
class EstimatorNode:
    """An allow-listed estimator: its params and fitted attributes as decoded state values."""

    id: str
    params: dict[str, Any]
    fitted: dict[str, Any]
    unserializable: tuple[str, ...] = ()
    where: str = "pipeline"

    @property
    def is_fitted(self) -> bool:
        """Whether the node holds fitted state (``set_output``'s choice alone marks an unfitted template too)."""
        return any(name != "_sklearn_output_config" for name in self.fitted)


@dataclass
class EnsembleNode:
    """A fitted ensemble stored as node columns under ``group``; ``first`` is False for a
    repeated reference to an ensemble met earlier (the same object)."""

    group: str
    config: Config
    first: bool = True
    where: str = "pipeline"


@dataclass
class SkopsNode:
    """A step with no treeshard schema, stored by skops.io as the bytes of array ``group``.

    ``sklearn`` is the writer's scikit-learn version (it loads under the same
    minor version only); ``qualname`` names the class for ``info``, and is
    never imported.
    """

    group: str
    nbytes: int
    sklearn: str
    qualname: str
    where: str = "pipeline"
