"""Cold start with and without cached bytecode, side by side in one run.

``treeshard bench`` runs its fresh processes with cached bytecode for every
module (``--bytecode warm``, the default), as an installed package runs. This
script measures what that changes: the same children with ``--bytecode
inherit`` take this shell's environment as it is (here
``PYTHONDONTWRITEBYTECODE=1`` with treeshard imported from its source tree,
so treeshard's modules are compiled in every process while sklearn's and
joblib's come from the ``.pyc`` files pip wrote at install).

The model: ``RandomForestClassifier(n_estimators=50, random_state=0)`` on
``make_classification(2_000, 20 features, 10 informative, 3 classes,
random_state=0)``. Modes and strategies alternate; medians of ``--repeat``.
``--wheel-python`` adds a third mode, *wheel*: the children run that
interpreter (a virtual environment with treeshard installed from a wheel,
non-editable, whose ``.pyc`` files pip wrote at install) in this environment
less ``PYTHONPATH``::

    python benchmarks/bytecode.py --repeat 7 --markdown
    python -m venv /tmp/wheel && /tmp/wheel/bin/pip install .   # (dependencies: see BENCHMARKS.md)
    python benchmarks/bytecode.py --repeat 7 --markdown --wheel-python /tmp/wheel/bin/python
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from treeshard import bench

STRATEGIES = ("joblib", "treeshard-lz4", "treeshard-lz4-lazy", "treeshard-lz4-predictor")
MODES = ("inherit", "warm")
COLUMNS = (("cold_start", "cold start"), ("import", "import"), ("load", "load"), ("first_predict", "1st predict"))


def fit(n_estimators: int) -> tuple[object, np.ndarray]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=2_000, n_features=20, n_informative=10, n_classes=3, random_state=0)
    return RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(X, y), X


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--wheel-python", help="an interpreter with treeshard installed from a wheel: adds the mode 'wheel'")
    args = parser.parse_args(argv)
    modes = MODES + (("wheel",) if args.wheel_python else ())
    pythons = {mode: sys.executable for mode in modes}
    estimator, X = fit(args.trees)
    facts = bench.describe(estimator)
    chosen = [bench.get_strategy(name) for name in STRATEGIES]
    chosen = [s for s in chosen if s.available]
    with tempfile.TemporaryDirectory(prefix="treeshard-bytecode-") as tmp:
        rows = Path(tmp) / "rows.npy"
        np.save(rows, X[: bench.N_ROWS])
        files = bench.write_formats(estimator, tmp, formats=sorted({s.format for s in chosen}))
        envs = {mode: bench.child_env(mode) for mode in MODES}
        if args.wheel_python:
            envs["wheel"] = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            pythons["wheel"] = args.wheel_python

        def run(strategy: bench.Strategy, mode: str) -> dict[str, float]:
            return bench.run_child(
                strategy,
                files[strategy.format].path,
                rows,
                sklearn_module=facts["sklearn_module"],
                after=False,
                env=envs[mode],
                python=pythons[mode],
            )

        for strategy in chosen:  # untimed: fills the bytecode cache, warms the page cache
            run(strategy, "warm")
        samples: dict[tuple[str, str], list[dict[str, float]]] = {(s.name, m): [] for s in chosen for m in modes}
        for i in range(args.repeat):
            for strategy in chosen:
                shift = i % len(modes)
                for mode in modes[shift:] + modes[:shift]:
                    samples[strategy.name, mode].append(run(strategy, mode))
    env = bench.environment()
    print(
        f"{args.trees}-tree RandomForestClassifier, {facts['n_nodes']:,} nodes; fresh process to first one-row "
        f"prediction, medians of {args.repeat}; ratio = mode / warm"
    )
    print(bench.environment_line({**env, "bytecode": " vs ".join(modes) + " (see BENCHMARKS.md)"}))
    print()
    header = ["strategy", "bytecode"] + [title for _, title in COLUMNS]
    body = []
    for strategy in chosen:
        medians = {m: {k: statistics.median(s[k] for s in samples[strategy.name, m]) for k, _ in COLUMNS} for m in modes}
        for mode in modes:
            cells = [bench.human_seconds(medians[mode][k]) for k, _ in COLUMNS]
            if mode != "warm":
                cells = [f"{c} ({medians[mode][k] / medians['warm'][k]:.2f}x)" for c, (k, _) in zip(cells, COLUMNS)]
            body.append([strategy.name, mode, *cells])
    print("\n".join(bench.report._render(header, body, markdown=args.markdown)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
