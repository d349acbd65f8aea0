"""The ``treeshard`` command line: info, convert (and the subcommands other modules add)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def _info(args: argparse.Namespace) -> int:
    from .api import open as open_store

    with open_store(args.store) as handle:
        info = handle.info
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, sort_keys=True))
        return 0
    print(format_info(info))
    return 0


def format_info(info) -> str:  # type: ignore[no-untyped-def]
    """A human-readable summary of a :class:`~treeshard.ModelInfo` (or of a pipeline store's info)."""
    if hasattr(info, "structure"):
        from .pipeline.info import format_pipeline_info

        return format_pipeline_info(info, size=_human)
    lines = [
        f"estimator       {info.estimator} ({info.estimator_type})",
        f"estimators      {_estimators(info)}",
        f"nodes           {info.n_nodes:,}",
        f"features        {info.n_features}",
        f"outputs         {info.n_outputs}",
        f"format version  {info.format_version}",
        f"codec           {info.codec}",
        f"created         {info.created}",
        "versions        " + ", ".join(f"{k} {v}" for k, v in sorted(info.versions.items())),
        f"size            {_human(info.stored_bytes)} stored, {_human(info.nbytes)} uncompressed",
    ]
    details = getattr(info, "details", None) or {}
    if "iterations" in details:
        lines.append(f"iterations      {details['iterations']} x {details['trees_per_iteration']} tree(s) per iteration")
        lines.append(f"loss            {details['loss']} ({details['loss_class']})")
        shown = ", ".join(map(str, details["categorical_features"])) or "none"
        lines.append(f"categorical     {details['n_categorical_features']}: {shown}")
        lines.append(f"early stopping  {'on' if details['early_stopping'] else 'off'}")
    if "offset_" in details:  # IsolationForest
        lines += [f"{name.replace('_', ' ').strip():<15} {value}" for name, value in details.items() if name != "n_features_in_"]
    if info.unserializable_params:
        lines.append("not stored      " + ", ".join(info.unserializable_params) + " (saved as null)")
    if info.metadata:
        lines.append("metadata        " + json.dumps(info.metadata, sort_keys=True, ensure_ascii=False))
    lines.append("arrays")
    width = max(len(name) for name in info.arrays) if info.arrays else 0
    for name, stats in info.arrays.items():
        lines.append(f"  {name:<{width}}  {_human(stats.get('stored_bytes', 0)):>10} stored  {_human(stats.get('nbytes', 0)):>10} raw")
    return "\n".join(lines)


def _estimators(info) -> str:  # type: ignore[no-untyped-def]
    """``"3 trees"``, ``"1 tree"`` or, for gradient boosting, ``"2 stages (8 trees)"``."""

    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" + ("" if n == 1 else "s")

    if info.n_trees != info.n_estimators:
        return f"{count(info.n_estimators, 'stage')} ({count(info.n_trees, 'tree')})"
    return count(info.n_trees, "tree")


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _convert(args: argparse.Namespace) -> int:
    if not args.trust_pickle:
        print(
            "error: MODEL is a pickle/joblib file, and loading one runs any code it contains.\n"
            "Only convert files you created or fully trust, then pass --trust-pickle.",
            file=sys.stderr,
        )
        return 2
    from .convert import convert_pickle
    from .errors import StoreExistsError

    try:
        convert_pickle(args.model, args.store, codec=args.codec, overwrite=args.overwrite, progress=not args.quiet)
    except StoreExistsError as exc:
        print(f"error: {exc}".replace("pass overwrite=True", "pass --overwrite"), file=sys.stderr)
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .errors import IntegrityError
    from .integrity import verify_path

    try:
        summary = verify_path(args.store, public_key=args.public_key)
    except IntegrityError as exc:
        print(f"CORRUPT {args.store}: {exc}")
        return 1
    print(f"OK {args.store}: {summary}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from .integrity import sign_store

    print(f"signed {args.store} with key {sign_store(args.store, args.key)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="treeshard", description="Inspect, convert, verify and sign treeshard stores; version them in a repository (log, alias, rollback, diff, delete, gc).")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="describe a store without loading its trees")
    info.add_argument("store", help="store directory, .zip file, URL (s3://..., https://...), or REPOSITORY@REF (a version: v3, an alias or latest)")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(run=_info)

    convert = commands.add_parser("convert", help="convert a TRUSTED joblib/pickle file to a store")
    convert.add_argument("model", help="joblib or pickle file (loading it runs code: trusted files only)")
    convert.add_argument("store", help="output directory or .zip file")
    convert.add_argument("--trust-pickle", action="store_true", help="confirm MODEL is trusted (required)")
    convert.add_argument("--codec", default="lz4", choices=["lz4", "zstd", "none"])
    convert.add_argument("--overwrite", action="store_true", help="replace an existing store")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(run=_convert)

    from .bench.command import add_parser as add_bench_parser  # treeshard bench

    add_bench_parser(commands)

    verify = commands.add_parser("verify", help="check a store against its content digest (and signature)")
    verify.add_argument("store", help="store directory, .zip file, or REPOSITORY@REF (a version: v3, an alias or latest)")
    verify.add_argument("--public-key", metavar="PEM", help="also require a valid Ed25519 signature by this key")
    verify.set_defaults(run=_verify)

    sign = commands.add_parser("sign", help="sign a store's content digest with an Ed25519 key")
    sign.add_argument("store", help="store directory or .zip file")
    sign.add_argument("--key", required=True, metavar="PEM", help="Ed25519 private key (PEM)")
    sign.set_defaults(run=_sign)

    from .repository.cli import add_parsers as add_repository_parsers  # log, alias, rollback, diff, delete, gc (issue 16)

    add_repository_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import TreeshardError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader of stdout left (`treeshard info --json | head`): not an error to report. Point
        # stdout at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (TreeshardError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
