"""Build the one compiled kernel (validation, node layout, traversal); everything else is in pyproject.toml."""

import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# No fused multiply-add: the traversal's sums must round like sklearn's (one rounding per operation).
# -O3 (whatever Python was built with, often -O2): the comparison loops of the depth-3 path are
# only vectorised at -O3, with the baseline ISA's vectors (SSE2, NEON). No -march: a wheel runs anywhere.
FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]

setup(
    ext_modules=cythonize(
        [Extension("treeshard._kernels", ["src/treeshard/_kernels.pyx"], include_dirs=[numpy.get_include()], extra_compile_args=FLAGS)],
        compiler_directives={"language_level": "3"},
    )
)
