"""File formats the benchmark writes a model to, and the packages each needs.

A *format* is a file on disk: pickle, joblib with each compression, skops,
treeshard with each codec, and the peers' ONNX and treelite files.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _save_pickle(estimator: Any, path: Path) -> None:
    import pickle

    with open(path, "wb") as handle:
        pickle.dump(estimator, handle, protocol=pickle.HIGHEST_PROTOCOL)


def _save_joblib(compress: Any) -> Callable[[Any, Path], None]:
    def save(estimator: Any, path: Path) -> None:
        import joblib

        joblib.dump(estimator, path, compress=compress)

    return save


def _save_skops(estimator: Any, path: Path) -> None:
    import skops.io

    skops.io.dump(estimator, path)


def _save_treeshard(codec: str) -> Callable[[Any, Path], None]:
    def save(estimator: Any, path: Path) -> None:
        from ..api import save as treeshard_save

        treeshard_save(estimator, path, codec=codec, overwrite=True)

    return save


def _save_onnx(estimator: Any, path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    # Labels and probabilities as plain tensors (no ZipMap of dicts), as a server would want them.
    options = {type(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    onx = convert_sklearn(
        estimator, initial_types=[("X", FloatTensorType([None, int(estimator.n_features_in_)]))], options=options
    )
    path.write_bytes(onx.SerializeToString())


def _save_treelite(estimator: Any, path: Path) -> None:
    import treelite.sklearn

    try:
        model = treelite.sklearn.import_model(estimator)
    except treelite.TreeliteError as exc:  # an Exception only: a model it cannot import (a Pipeline...)
        raise RuntimeError(f"treelite: {exc}") from None
    model.serialize(os.fspath(path))


#: Import name -> (distribution, treeshard extra that installs it), for the packages formats need.
PACKAGES: dict[str, tuple[str, str]] = {
    "joblib": ("joblib", "bench"),
    "lz4.frame": ("lz4", "bench"),
    "skops.io": ("skops", "bench"),
    "skl2onnx": ("skl2onnx", "peers"),
    "onnxruntime": ("onnxruntime", "peers"),
    "treelite": ("treelite", "peers"),
}


@functools.cache
def importable(module: str) -> bool:
    """Whether ``module`` imports in this process (installed *and* working)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def missing_packages(requires: Sequence[str]) -> str:
    """``""`` when every module of ``requires`` imports, else which package is missing and the extra that adds it."""
    missing = [module for module in requires if not importable(module)]
    if not missing:
        return ""
    names = sorted({PACKAGES.get(m, (m.split(".")[0], ""))[0] for m in missing})
    extras = sorted({PACKAGES[m][1] for m in missing if m in PACKAGES})
    hint = f": pip install 'treeshard[{','.join(extras)}]'" if extras else ""
    return f"needs {', '.join(names)}, not installed{hint}"


@dataclass(frozen=True)
class Format:
    """A file format: how to write a model to one file.

    ``requires`` are the modules ``save`` imports; ``convert_errors`` the
    exceptions a converter raises for a model it cannot represent (a peer
    format is then skipped with the message, not the whole run).
    """

    name: str
    suffix: str  # the file is model<suffix>
    save: Callable[[Any, Path], None]
    description: str
    requires: tuple[str, ...] = ()
    convert_errors: tuple[type[BaseException], ...] = ()

    def filename(self, stem: str = "model") -> str:
        return stem + self.suffix

    def missing(self) -> str:
        """Why this install cannot write the format (``""``: it can)."""
        return missing_packages(self.requires)


_PEER_ERRORS = (RuntimeError, NotImplementedError, ValueError, TypeError, KeyError)

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("pickle", ".pkl", _save_pickle, "pickle.dump, highest protocol"),
        Format("joblib", ".joblib", _save_joblib(0), "joblib.dump, uncompressed", ("joblib",)),
        Format("joblib-zlib3", ".zlib3.joblib", _save_joblib(3), "joblib.dump(compress=3), zlib", ("joblib",)),
        Format("joblib-lz4", ".lz4.joblib", _save_joblib("lz4"), "joblib.dump(compress='lz4')", ("joblib", "lz4.frame")),
        Format("skops", ".skops", _save_skops, "skops.io.dump", ("skops.io",)),
        Format("treeshard-lz4", ".lz4.zip", _save_treeshard("lz4"), "treeshard.save(codec='lz4'), one .zip file"),
        Format("treeshard-zstd", ".zstd.zip", _save_treeshard("zstd"), "treeshard.save(codec='zstd'), one .zip file"),
        Format("onnx", ".onnx", _save_onnx, "skl2onnx.convert_sklearn, float32 input", ("skl2onnx",), _PEER_ERRORS),
        Format("treelite", ".treelite", _save_treelite, "treelite.sklearn.import_model(...).serialize", ("treelite",), _PEER_ERRORS),
    )
}
