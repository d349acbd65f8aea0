"""Save the same models with two source trees and compare every file's bytes.

Usage::

    python scripts/same_bytes.py OLD_SRC NEW_SRC

Each side runs in a fresh interpreter with ``PYTHONPATH`` set to its ``src``;
the clocks behind ``created`` and the zip member timestamps are fixed, so two
trees that write the same format give byte-identical stores (directories and
``.zip`` files, for a forest, gradient boosting and a single tree).
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import datetime, sys, time
import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
import importlib
import treeshard

class Fixed(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.datetime(2026, 1, 1, tzinfo=tz)

clock = type("M", (), {"datetime": Fixed, "timezone": datetime.timezone})
for name in ("treeshard.api", "treeshard.saving"):  # wherever save's clock lives in that tree
    try:
        module = importlib.import_module(name)
    except ImportError:
        continue
    if getattr(module, "datetime", None) is datetime:
        module.datetime = clock
time.localtime = lambda *a: time.struct_time((2026, 1, 1, 0, 0, 0, 3, 1, 0))
rng = np.random.RandomState(0)
X = rng.normal(size=(300, 5))
y = (X[:, 0] > 0).astype(int)
models = {
    "rf": RandomForestClassifier(8, random_state=0).fit(X, y),
    "gb": GradientBoostingRegressor(n_estimators=20, random_state=0).fit(X, X[:, 1]),
    "dt": DecisionTreeClassifier(random_state=0).fit(X, y),
}
for name, model in models.items():
    treeshard.save(model, f"{sys.argv[1]}/{name}", metadata={"k": 1})
    treeshard.save(model, f"{sys.argv[1]}/{name}.zip")
"""


def main() -> int:
    old_src, new_src = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        for side, src in (("old", old_src), ("new", new_src)):
            env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
            subprocess.run([sys.executable, "-c", CHILD, f"{tmp}/{side}"], env=env, check=True)
        old, new = Path(tmp, "old"), Path(tmp, "new")
        files = sorted(p.relative_to(old) for p in old.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(new) for p in new.rglob("*") if p.is_file()), "different file sets"
        differ = [str(f) for f in files if not filecmp.cmp(old / f, new / f, shallow=False)]
    print(f"{len(files)} files compared; {len(differ)} differ" + (": " + ", ".join(differ) if differ else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
