"""Running a test in a fresh process with numpy's SIMD dispatch off."""

from __future__ import annotations

from pathlib import Path

import pytest


def run_without_simd(test_file: str, select: str) -> None:
    """Run ``pytest -k select test_file`` in a fresh process with numpy's SIMD dispatch off
    (``NPY_DISABLE_CPU_FEATURES``), where ``np.exp``/``np.log`` round as on a CPU without
    AVX2/AVX-512; skip where numpy dispatches nothing beyond its baseline."""
    import os
    import subprocess
    import sys

    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # type: ignore[no-redef]
    found = [feature for feature in __cpu_dispatch__ if __cpu_features__.get(feature)]
    if not found:
        pytest.skip("numpy dispatches no SIMD extension beyond its baseline on this CPU")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(found), "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select, test_file]
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]  # 5 if nothing was collected
