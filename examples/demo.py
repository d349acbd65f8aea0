"""End-to-end demo: fit a forest, save it with treeshard, open, load, predict,
and compare file size and load time with joblib side by side."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

import treeshard


def median_seconds(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=2).fit(X_train, y_train)
    accuracy = model.score(X_test, y_test)
    print(f"fitted RandomForestClassifier(200 trees) on digits: test accuracy {accuracy:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = tmp / "digits-forest.zip"
        treeshard.save(model, store, metadata={"dataset": "sklearn digits", "test_accuracy": accuracy})

        with treeshard.open(store) as handle:
            info = handle.info
        print(f"\nopened {store.name} without loading trees:")
        print(f"  {info.estimator}, {info.n_estimators} trees, {info.n_nodes:,} nodes, metadata {info.metadata}")

        loaded = treeshard.load(store)
        same = np.array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))
        print(f"  loaded model's predict_proba identical to the original's: {same}")
        if not same:
            raise SystemExit("demo failed: predictions differ")

        rows = []
        for label, compress in (("joblib", 0), ("joblib compress=3", 3)):
            path = tmp / f"model-{compress}.joblib"
            joblib.dump(model, path, compress=compress)
            rows.append((label, path.stat().st_size, median_seconds(lambda p=path: joblib.load(p))))
        for codec in ("lz4", "zstd"):
            path = tmp / f"model-{codec}.zip"
            treeshard.save(model, path, codec=codec)
            size = path.stat().st_size
            rows.append((f"treeshard {codec}", size, median_seconds(lambda p=path: treeshard.load(p, lazy=False))))
            rows.append((f"treeshard {codec} lazy", size, median_seconds(lambda p=path: treeshard.load(p))))

    base_size, base_time = rows[0][1], rows[0][2]
    print(f"\n{'format':<24}{'file size':>12}{'vs joblib':>11}{'load (median of 5)':>21}{'vs joblib':>11}")
    for label, size, seconds in rows:
        print(f"{label:<24}{size / 1e6:>9.2f} MB{size / base_size:>10.2f}x{seconds * 1e3:>18.1f} ms{base_time / seconds:>10.2f}x")
    print("\n(vs joblib: size as a fraction of joblib's, load as a speed-up over joblib's;")
    print(" 'lazy' reads the config and tree offsets only: trees are read when first used)")


if __name__ == "__main__":
    main()
