"""``treeshard bench``: the subcommand's arguments and what it runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .child import BYTECODE_MODES, ChildError
from .formats import FORMATS, missing_packages
from .report import format_tables, plot
from .run import RowsError, bench_estimator, is_treeshard_store
from .strategies import BASELINE, STRATEGY_NAMES, strategies


def add_parser(commands: Any) -> None:
    """Register ``treeshard bench`` on the CLI's subparsers."""
    parser = commands.add_parser(
        "bench",
        help="compare pickle, joblib, skops, onnxruntime, treelite and treeshard on your model",
        description=(
            "Save MODEL as pickle, joblib (uncompressed, zlib, lz4), skops, ONNX, treelite and treeshard "
            "(lz4, zstd), then time cold start, load, predict, size and peak memory in "
            "fresh processes. Ratios are relative to joblib uncompressed. A strategy whose "
            "package is not installed is skipped, with the extra that adds it."
        ),
    )
    parser.add_argument("model", help="a treeshard store, or a joblib/pickle file (with --trust-pickle)")
    parser.add_argument("--trust-pickle", action="store_true", help="confirm MODEL is a pickle/joblib file you trust")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per strategy (default 3; figures are medians)")
    parser.add_argument(
        "--save-repeat", type=int, default=1, help="saves per format (default 1): the table shows their median, --json every one"
    )
    parser.add_argument("--rows", help=".npy file of input rows, a 2-D numeric array (default: random normal rows; a model that selects DataFrame columns by name cannot be benchmarked)")
    parser.add_argument("--strategies", help="comma-separated subset (default: all): " + ",".join(STRATEGY_NAMES))
    parser.add_argument(
        "--formats", help="comma-separated file formats; runs every strategy reading them: " + ",".join(FORMATS)
    )
    parser.add_argument(
        "--bytecode",
        choices=sorted(BYTECODE_MODES),
        default="warm",
        help="warm (default): children import every module from cached bytecode, as an installed package does; "
        "inherit: this environment as it is",
    )
    parser.add_argument("--workdir", help="keep the written files here (default: a temporary directory)")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart (needs matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="write every figure and sample as JSON")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    parser.add_argument("--label", help="the model's name in the tables and chart (default: MODEL's file name)")
    parser.add_argument("--no-warmup", action="store_true", help="skip warming the page cache and imports first (quicker, noisier)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib: pip install 'treeshard[bench]' (or pip install matplotlib)", file=sys.stderr)
            return 2
    for option, value in (("--json", args.json), ("--plot", args.plot)):
        # checked before the run, which may take many minutes, instead of when writing after it
        if value and not Path(value).resolve().parent.is_dir():
            print(f"error: {option} {value}: the directory {str(Path(value).parent)!r} does not exist", file=sys.stderr)
            return 2
    for option, value in (("--repeat", args.repeat), ("--save-repeat", args.save_repeat)):
        if value < 1:
            print(f"error: {option} must be at least 1", file=sys.stderr)
            return 2
    try:
        only = selected_strategies(args.strategies, args.formats)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    estimator = _load_model(args)
    if estimator is None:
        return 2
    rows = None
    if args.rows:
        import numpy as np

        try:
            rows = np.load(args.rows, allow_pickle=False)
        except (OSError, ValueError) as exc:
            print(f"error: --rows {args.rows}: not a readable .npy file of numeric rows ({exc})", file=sys.stderr)
            return 2
        if not isinstance(rows, np.ndarray) or rows.ndim != 2:
            print(f"error: --rows {args.rows}: expected a 2-D array of rows, got {type(rows).__name__} {getattr(rows, 'shape', '')}", file=sys.stderr)
            return 2
    try:
        result = bench_estimator(
            estimator,
            repeat=args.repeat,
            save_repeat=args.save_repeat,
            rows=rows,
            workdir=args.workdir,
            only=only,
            progress=not args.quiet,
            label=args.label or Path(args.model).name,
            warmup=not args.no_warmup,
            bytecode=args.bytecode,
        )
    except RowsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ChildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_tables(result, markdown=args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
    if args.plot:
        plot(result, args.plot)
        print(f"chart written to {args.plot}")
    return 0


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def selected_strategies(strategy_names: str | None, format_names: str | None) -> list[str] | None:
    """The strategies ``--strategies``/``--formats`` ask for (None: all), plus the baseline.

    Raises ValueError for an unknown name, and for a name whose package is not
    installed (the message names the extra): asked for explicitly, it is an
    error rather than a skipped row.
    """
    wanted, formats = _names(strategy_names), _names(format_names)
    if not wanted and not formats:
        return None
    unknown = sorted(set(wanted) - set(STRATEGY_NAMES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {STRATEGY_NAMES}")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown formats {unknown}; choose from {list(FORMATS)}")
    by_name = {s.name: s for s in strategies(packages=False)}
    only = wanted + [name for name, s in by_name.items() if s.format in formats and name not in wanted]
    for name in only:
        strategy = by_name[name]
        reason = missing_packages(FORMATS[strategy.format].requires + strategy.requires)
        if reason:
            raise ValueError(f"strategy {name} ({strategy.format} format) {reason}")
    if BASELINE not in only:
        only.append(BASELINE)
    return only


def _load_model(args: argparse.Namespace) -> Any:
    if not Path(args.model).exists():
        print(f"error: {args.model}: no such file or directory", file=sys.stderr)
        return None
    if is_treeshard_store(args.model):
        from ..api import load

        return load(args.model, lazy=False)
    if not args.trust_pickle:
        print(
            "error: MODEL is not a treeshard store, so it is read as a pickle/joblib file, and loading one\n"
            "runs any code it contains. Only benchmark files you created or fully trust, then pass --trust-pickle.",
            file=sys.stderr,
        )
        return None
    from ..convert import load_trusted_pickle

    return load_trusted_pickle(args.model)
