"""``make compat``: build the per-version virtualenvs, write and read every golden store, print the matrix.

    python3 tests/compat/run.py                       # every version in versions.txt
    python3 tests/compat/run.py --versions 1.3.2,1.9.1   # what .ci/run does

Virtualenvs live in ``$TREESHARD_COMPAT_CACHE`` (default
``~/.cache/treeshard-compat``) and are reused. Each version writes its golden
stores into ``tests/golden/<version>/`` the first time (commit them: they are
kept forever) and recomputes its own outputs; then each version reads every
golden store of every version. Prints a writer x reader table per family and
exits 1 if any cell failed. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: Short names of the documented exceptions in table cells (docs/COMPATIBILITY.md).
CODES = {"GB-LOSS-1.4": "L", "PATH-NAN-1.8": "P", "NUMPY-LIBM": "N", "refused": "R"}
LEGEND = (
    "= exact; L: GB-LOSS-1.4, P: PATH-NAN-1.8, N: NUMPY-LIBM within their bounds "
    "(lower case: through the Predictor only); R: refused with the documented error "
    "(HGB-PREPROCESSOR-1.4, the Predictor exact; SKOPS-MINOR, the Predictor refusing as everywhere); X failed"
)


def all_versions() -> list[str]:
    lines = (HERE / "versions.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", default=",".join(all_versions()))
    parser.add_argument("--golden", default=str(ROOT / "tests" / "golden"))
    parser.add_argument("--markdown", default=None, help="also write the tables as Markdown to this file")
    args = parser.parse_args()
    versions = args.versions.split(",")
    cache = Path(os.environ.get("TREESHARD_COMPAT_CACHE", Path.home() / ".cache" / "treeshard-compat"))
    refs, results = cache / "reference", cache / "results"
    golden = Path(args.golden)
    start = time.monotonic()
    subprocess.run(["bash", str(HERE / "venvs.sh"), *versions], check=True)
    venv_seconds = time.monotonic() - start
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("PYTHONWARNINGS", None)
    for version in versions:
        (refs / version).mkdir(parents=True, exist_ok=True)
        for old in (refs / version).glob("*.npz"):
            old.unlink()
    for version in versions:
        python = cache / f"sklearn-{version}" / "bin" / "python"
        subprocess.run([str(python), str(HERE / "matrix.py"), "write", str(golden), str(refs)], check=True, env=env)
    for version in versions:
        python = cache / f"sklearn-{version}" / "bin" / "python"
        subprocess.run([str(python), str(HERE / "matrix.py"), "read", str(golden), str(refs), str(results / f"{version}.json")], check=True, env=env)
    seconds = time.monotonic() - start
    cells = [c for v in versions for c in json.loads((results / f"{v}.json").read_text())["cells"]]
    text = tables(cells, versions)
    summary = (
        f"{len(cells)} cells ({len({c['writer'] for c in cells})} writers x {len(versions)} readers x "
        f"{len({c['estimator'] for c in cells})} estimators), {sum(c['status'] == 'fail' for c in cells)} failed; "
        f"{seconds:.0f} s in all ({venv_seconds:.0f} s creating or checking virtualenvs)"
    )
    print(text)
    print(summary)
    for cell in cells:
        if cell["status"] != "exact":
            print(f"  {cell['writer']} -> {cell['reader']} {cell['estimator']}: {cell['status']}: {'; '.join(cell['details'][:4])}")
    # The plain closing line CI reads: one cell is one store of one writer read by one reader.
    print(f"compat: {sum(c['status'] != 'fail' for c in cells)} passed, {sum(c['status'] == 'fail' for c in cells)} failed")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n\n" + summary + "\n")
    return 1 if any(c["status"] == "fail" for c in cells) else 0


def tables(cells: list[dict], readers: list[str]) -> str:
    out = []
    families: dict[str, list[str]] = {}
    for cell in cells:
        families.setdefault(cell["family"], [])
        if cell["estimator"] not in families[cell["family"]]:
            families[cell["family"]].append(cell["estimator"])
    writers = sorted({c["writer"] for c in cells}, key=lambda v: tuple(int(x) for x in v.split(".")))
    for family, ids in families.items():
        out.append(f"\n{family}: rows writer, columns reader ({', '.join(ids)})\n")
        out.append("| writer \\ reader | " + " | ".join(readers) + " |")
        out.append("| --- |" + " --- |" * len(readers))
        for writer in writers:
            row = []
            for reader in readers:
                chosen = [c for c in cells if c["writer"] == writer and c["reader"] == reader and c["estimator"] in ids]
                row.append(cell_text(chosen))
            out.append(f"| {writer} | " + " | ".join(row) + " |")
    out.append("\n" + LEGEND)
    return "\n".join(out)


def cell_text(cells: list[dict]) -> str:
    if not cells:
        return " "
    if any(c["status"] == "fail" for c in cells):
        return "X"
    codes = set()
    for cell in cells:
        for detail in cell["details"]:
            mode, _, rest = detail.partition(" ")
            name = rest.split(":")[1].strip() if rest.count(":") >= 2 else ""
            code = CODES.get(name, "?")
            codes.add(code.lower() if mode == "predictor" else code)
    codes = {c for c in codes if c.upper() == c or c.upper() not in codes}
    return ",".join(sorted(codes, key=str.upper)) or "="


if __name__ == "__main__":
    sys.exit(main())
