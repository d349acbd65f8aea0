"""File size of forests of 1 to 1,000 trees in every format: where treeshard's default beats joblib compress=3.

Two datasets, both ``make_classification`` with 3 classes and ``random_state=0``:

- ``small``: 2,000 x 20 (10 informative);
- ``RF-L``: RF-L's data, 100,000 x 30 (10 informative).

On each, ``RandomForestClassifier(n_estimators=N, random_state=0)`` with fully
grown trees. The forest of the largest N is fitted once and the smaller ones
are its first N trees: sklearn draws every tree's seed from ``random_state``
in order, so the first N trees of a larger forest are exactly the trees a
forest of N would fit (and ``fit`` grows a cached smaller forest with
``warm_start``, which fits the same further trees). Fitted forests are cached (pickles we wrote) in
``$TREESHARD_BENCH_CACHE/sizes`` (default ``~/.cache/treeshard-bench/sizes``)::

    python benchmarks/sizes.py fit small 1000      # seconds
    python benchmarks/sizes.py fit RF-L 200        # about 20 min on two cores
    python benchmarks/sizes.py table small RF-L    # every format, markdown
"""

from __future__ import annotations

import argparse
import copy
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

from treeshard import bench

try:
    from . import models
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import models  # type: ignore[no-redef]

DATASETS = {"small": (2_000, 20, 10), "RF-L": (100_000, 30, 10)}
TREES = (1, 2, 5, 10, 20, 50, 100, 200, 1000)
#: Formats of the size table, in column order (those whose package is missing are left out).
SIZE_FORMATS = ("joblib", "joblib-zlib3", "joblib-lz4", "skops", "treeshard-lz4", "treeshard-zstd", "onnx", "treelite")


def _cache(dataset: str) -> Path:
    return models.cache_dir() / "sizes" / dataset


def fit(dataset: str, n_estimators: int) -> Path:
    """Fit (once) the ``n_estimators``-tree forest on ``dataset`` and cache it."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    path = _cache(dataset) / f"forest-{n_estimators}.pkl"
    if path.is_file():
        return path
    n_samples, n_features, n_informative = DATASETS[dataset]
    X, y = make_classification(
        n_samples=n_samples, n_features=n_features, n_informative=n_informative, n_classes=3, random_state=0
    )
    smaller = [p for p in _cache(dataset).glob("forest-*.pkl") if int(p.stem.split("-")[1]) < n_estimators]
    if smaller:  # grow the largest cached forest: warm_start fits the same trees a fresh fit would
        with open(max(smaller, key=lambda p: int(p.stem.split("-")[1])), "rb") as handle:
            forest = pickle.load(handle)  # noqa: S301 - our own cache file
        forest.set_params(warm_start=True, n_estimators=n_estimators, n_jobs=2).fit(X, y)
        forest.warm_start = False
    else:
        forest = RandomForestClassifier(n_estimators=n_estimators, random_state=0, n_jobs=2).fit(X, y)
    forest.n_jobs = None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        pickle.dump(forest, handle, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return path


def largest(dataset: str) -> Any:
    """The largest cached forest of ``dataset`` (we wrote the pickle: trusted)."""
    fitted = sorted(_cache(dataset).glob("forest-*.pkl"), key=lambda p: int(p.stem.split("-")[1]))
    if not fitted:
        raise SystemExit(f"no forest fitted on {dataset}: run `python benchmarks/sizes.py fit {dataset} N` first")
    with open(fitted[-1], "rb") as handle:
        return pickle.load(handle)  # noqa: S301 - our own cache file


def first_trees(forest: Any, n: int) -> Any:
    """The forest made of ``forest``'s first ``n`` trees (what fitting ``n`` trees gives)."""
    head = copy.copy(forest)
    head.estimators_ = forest.estimators_[:n]
    head.n_estimators = n
    return head


def sizes(forest: Any, trees: list[int], formats: list[str]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="treeshard-sizes-") as tmp:
        for n in trees:
            head = first_trees(forest, n)
            facts = bench.describe(head)
            written = bench.write_formats(head, Path(tmp) / str(n), formats=formats)
            rows.append({"trees": n, "nodes": facts["n_nodes"], "nbytes": facts["nbytes"], **{f: w.size for f, w in written.items()}})
    return rows


def table(rows: list[dict[str, Any]], formats: list[str]) -> str:
    """Markdown: bytes per format, and treeshard's default (lz4) / joblib compress=3."""
    header = ["trees", "nodes", "in memory", *formats, "lz4 / zlib-3", "zstd / zlib-3"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in rows:
        cells = [str(row["trees"]), f"{row['nodes']:,}", bench.human_bytes(row["nbytes"])]
        cells += [bench.human_bytes(row[f]) for f in formats]
        for codec in ("treeshard-lz4", "treeshard-zstd"):
            cells.append(f"{row[codec] / row['joblib-zlib3']:.2f}x" if codec in row and "joblib-zlib3" in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    fit_parser = sub.add_parser("fit", help="fit and cache one forest")
    fit_parser.add_argument("dataset", choices=list(DATASETS))
    fit_parser.add_argument("trees", type=int)
    table_parser = sub.add_parser("table", help="write every format of every forest size, print the sizes")
    table_parser.add_argument("datasets", nargs="+", choices=list(DATASETS))
    table_parser.add_argument("--trees", type=int, nargs="+", default=list(TREES))
    args = parser.parse_args(argv)
    if args.command == "fit":
        print(fit(args.dataset, args.trees))
        return 0
    formats = [f for f in SIZE_FORMATS if f in bench.FORMATS and not bench.FORMATS[f].missing()]
    for dataset in args.datasets:
        forest = largest(dataset)
        trees = [n for n in args.trees if n <= len(forest.estimators_)]
        print(f"\n{dataset} ({len(forest.estimators_)} trees fitted; sizes of the first N)\n")
        print(table(sizes(forest, trees, formats), formats))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
