"""Bytes of a store's ``zarr.json`` documents and of its ``.zip``, for RF-L and small forests.

Run once per source tree to compare writers (BENCHMARKS.md, "One-line metadata documents")::

    PYTHONPATH=OLD_SRC python benchmarks/metadata_bytes.py
    PYTHONPATH=NEW_SRC python benchmarks/metadata_bytes.py

RF-L's joblib file comes from the benchmark cache (``python benchmarks/models.py build RF-L``),
read only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import joblib
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import treeshard
from treeshard import bench


def sizes(model: object) -> tuple[int, int]:
    """``(bytes of every zarr.json of a directory store, bytes of the .zip store)``."""
    with tempfile.TemporaryDirectory() as folder:
        treeshard.save(model, f"{folder}/store")
        treeshard.save(model, f"{folder}/store.zip")
        metadata = sum(path.stat().st_size for path in Path(folder, "store").rglob("zarr.json"))
        return metadata, os.path.getsize(f"{folder}/store.zip")


def main() -> None:
    X, y = make_classification(n_samples=2000, n_features=20, n_informative=10, n_classes=3, random_state=0)
    cases = {f"small data, {n} tree(s)": RandomForestClassifier(n_estimators=n, random_state=0).fit(X, y) for n in (1, 10)}
    cases["RF-L"] = joblib.load(bench.cache_dir() / "RF-L" / "model.joblib")
    print(f"treeshard from {treeshard.__file__}")
    for name, model in cases.items():
        metadata, zipped = sizes(model)
        print(f"{name:22s} zarr.json {metadata:>9,d}  .zip {zipped:>12,d}")


if __name__ == "__main__":
    main()
