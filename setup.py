"""Build the one compiled kernel (validation + node layout); everything else is in pyproject.toml."""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("treeshard._kernels", ["src/treeshard/_kernels.pyx"], include_dirs=[numpy.get_include()])],
        compiler_directives={"language_level": "3"},
    )
)
