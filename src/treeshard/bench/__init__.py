"""``treeshard bench``: compare storage strategies on one model, in fresh processes.

A *format* is a file on disk (pickle, joblib with each compression, skops,
treeshard with each codec, and the peers' ONNX and treelite files). A
*strategy* is a way to get a working model from one: ``joblib.load``,
``treeshard.load(lazy=False)``, ``treeshard.load(lazy=True)``,
``treeshard.Predictor``, an onnxruntime session... Strategies that need a
package that is not installed (the reason names the extra that adds it) are
listed with the reason and skipped.

Every strategy is measured in fresh Python processes (``sys.executable -c``),
which import every module from cached bytecode (see :func:`child_env`):

- **cold start**: wall time from spawning the interpreter to receiving the
  first one-row prediction, timed by the parent (so interpreter start-up is
  included, process exit is not); the child prints ``perf_counter``
  checkpoints that split it into *interpreter* (the rest), *import* (numpy,
  the library, and the estimator's sklearn module when the strategy returns
  a sklearn estimator), *load* and *first predict*;
- **load peak memory**: the child's peak resident memory after loading minus
  its resident memory just before (Linux: ``VmHWM``, reset with
  ``/proc/self/clear_refs`` before loading; elsewhere ``ru_maxrss``). On Linux
  ``ru_maxrss`` would also count the spawning parent's pages, since ``exec``
  records the old address space's peak;
- **predict 1 / 1000 rows**: medians of repeated calls after the first one;
- **partial load**: loading the first ``k`` trees (gradient boosting: stages).
  Formats that cannot do that report a full load (marked ``*``);
- **mismatch**: how many ``predict`` outputs on the rows differ from the
  original estimator's (the peers are not exact).

Size and save time are measured by the parent while writing the files.
Reported figures are medians over ``repeat`` runs; the runs of all strategies
are interleaved, so slow drift on a shared machine hits them alike. Ratios
are *strategy / joblib uncompressed*, measured in the same run: below 1 is
better in every column (0.20x = five times faster, or smaller).

Loading a pickle or joblib file runs any code it contains: the CLI asks for
``--trust-pickle`` before unpickling MODEL, exactly like ``treeshard convert``.
This subpackage is the benchmark harness; the read path never imports it.
Its rooms, imports flowing down: ``command`` (the CLI subcommand), ``report``
(tables, chart), ``run`` (model facts, files, a comparison), ``child`` (the
measuring process), ``strategies`` (loaders, peers), ``formats`` (writers).
"""

from .child import BYTECODE_MODES, CACHE_ENV, CHILD_TIMEOUT, ChildError, cache_dir, child_code, child_env, run_child
from .command import add_parser, main, selected_strategies
from .formats import FORMATS, PACKAGES, Format, importable, missing_packages
from .report import AFTER_COLUMNS, COLD_COLUMNS, environment_line, format_tables, human_bytes, human_seconds, plot
from .run import (
    BenchResult,
    RowsError,
    SavedFile,
    bench_estimator,
    describe,
    environment,
    file_size,
    installation,
    is_treeshard_store,
    model_nbytes,
    n_units,
    run_comparison,
    sklearn_module_of,
    sub_estimators,
    warm_file,
    write_expected,
    write_formats,
)
from .strategies import BASELINE, N_ROWS, PARTIAL_TREES, STRATEGY_NAMES, Strategy, get_strategy, strategies

__all__ = [
    "AFTER_COLUMNS",
    "BASELINE",
    "BYTECODE_MODES",
    "BenchResult",
    "CACHE_ENV",
    "CHILD_TIMEOUT",
    "COLD_COLUMNS",
    "ChildError",
    "FORMATS",
    "Format",
    "N_ROWS",
    "PACKAGES",
    "PARTIAL_TREES",
    "RowsError",
    "STRATEGY_NAMES",
    "SavedFile",
    "Strategy",
    "add_parser",
    "bench_estimator",
    "cache_dir",
    "child_code",
    "child_env",
    "describe",
    "environment",
    "environment_line",
    "file_size",
    "format_tables",
    "get_strategy",
    "human_bytes",
    "human_seconds",
    "importable",
    "installation",
    "is_treeshard_store",
    "main",
    "missing_packages",
    "model_nbytes",
    "n_units",
    "plot",
    "run_child",
    "run_comparison",
    "selected_strategies",
    "sklearn_module_of",
    "strategies",
    "sub_estimators",
    "warm_file",
    "write_expected",
    "write_formats",
]
