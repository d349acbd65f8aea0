"""``treeshard log | alias | rollback | diff | delete | gc``: a repository from the command line."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any


def _repository(args: argparse.Namespace) -> Any:
    from .core import Repository

    repo = Repository(args.repository)
    repo._require_repository()  # a mistyped path is an error, not an empty history
    return repo


def _log(args: argparse.Namespace) -> int:
    repo = _repository(args)
    versions = repo.versions()
    if args.json:
        print(json.dumps({"aliases": {k: f"v{v}" for k, v in repo.aliases().items()}, "versions": [v.to_dict() for v in versions]}, indent=2, sort_keys=True))
        return 0
    if not versions:
        print(f"{repo.location}: no versions (every one was deleted)")
    for info in reversed(versions):
        names = f" ({', '.join(info.aliases)})" if info.aliases else ""
        if info.damaged is not None:
            print(f"{info.id}{names}  DAMAGED: {info.damaged}")
            continue
        print(f"{info.id}{names}  {info.created}  {info.model.get('estimator')} {info.model.get('n_trees')} trees  digest {info.digest[:12]}")
        if info.signer:
            print(f"    signed by {info.signer}")
        if info.message:
            print(f"    {info.message}")
        if info.metadata:
            print(f"    metadata {json.dumps(info.metadata, sort_keys=True, ensure_ascii=False)}")
    return 0


def _alias(args: argparse.Namespace) -> int:
    if args.delete:
        if args.version is not None:
            print("error: --delete takes no VERSION", file=sys.stderr)
            return 2
        print(f"deleted alias {args.name} (it named {_repository(args).delete_alias(args.name, expect=args.expect)})")
        return 0
    if args.version is None and args.expect is not None:
        print("error: --expect needs a VERSION to move the alias to", file=sys.stderr)
        return 2
    repo = _repository(args)
    if args.version is None:  # show it: what it names, and what it named before (newest first)
        *before, now = repo.alias_history(args.name)
        earlier = f" (before: {', '.join(f'v{n}' for n in reversed(before))})" if before else ""
        print(f"{args.name} -> v{now}{earlier}")
        return 0
    print(f"{args.name} -> {repo.set_alias(args.name, args.version, expect=args.expect)}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    print(f"{args.alias} -> {_repository(args).rollback(args.alias, expect=args.expect)}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    diff = _repository(args).diff(args.a, args.b)
    if args.json:
        print(json.dumps(diff, indent=2, sort_keys=True))
        return 0
    print(f"{diff['from']} -> {diff['to']}")
    if diff["estimator"][0] != diff["estimator"][1]:
        print(f"  estimator: {diff['estimator'][0]} -> {diff['estimator'][1]}")
    for section in ("params", "metrics", "metadata", "versions"):
        for name, (before, after) in diff[section].items():
            print(f"  {_SINGULAR[section]} {name}: {json.dumps(before)} -> {json.dumps(after)}")
    trees = diff["trees"]
    print(f"  trees: {trees['from']} -> {trees['to']} (+{trees['added']} added, -{trees['removed']} removed, {trees['changed']} changed, {trees['unchanged']} unchanged)")
    return 0


def _delete(args: argparse.Namespace) -> int:
    repo = _repository(args)
    repo.delete(args.version)
    print(f"deleted {args.version}; `treeshard gc {shlex.quote(args.repository)}` frees the chunks no other version uses")
    return 0


_SINGULAR = {"params": "param", "metrics": "metric", "metadata": "metadata", "versions": "version"}


def _gc(args: argparse.Namespace) -> int:
    report = _repository(args).gc()
    print(f"deleted {report.objects_deleted} objects ({report.bytes_freed:,} bytes), {len(report.keys_deleted) - report.objects_deleted} scratch files")
    return 0


_REPOSITORY_HELP = "repository directory or s3:// URL"


def add_parsers(commands: Any) -> None:
    """The repository subcommands of ``treeshard``."""
    log = commands.add_parser("log", help="a repository's versions, aliases and metadata")
    log.add_argument("repository", help=_REPOSITORY_HELP)
    log.add_argument("--json", action="store_true", help="print machine-readable JSON")
    log.set_defaults(run=_log)

    alias = commands.add_parser("alias", help="point an alias at a version (compare-and-swap), or show it and its history")
    alias.add_argument("repository", help=_REPOSITORY_HELP)
    alias.add_argument("name", help="the alias: a letter, then up to 63 letters, digits, '_' or '-'")
    alias.add_argument("version", nargs="?", help="a version id (v3), another alias or 'latest'; without it, show the alias and its history")
    alias.add_argument("--expect", metavar="VERSION", help="refuse unless the alias names this version now ('' : must not exist)")
    alias.add_argument("--delete", action="store_true", help="remove the alias (the versions it named stay)")
    alias.set_defaults(run=_alias)

    rollback = commands.add_parser("rollback", help="move an alias back to the version it named before")
    rollback.add_argument("repository", help=_REPOSITORY_HELP)
    rollback.add_argument("alias", help="the alias to move back")
    rollback.add_argument("--expect", metavar="VERSION", help="refuse unless the alias names this version now")
    rollback.set_defaults(run=_rollback)

    diff = commands.add_parser("diff", help="params, metrics and trees that differ between two versions")
    diff.add_argument("repository", help=_REPOSITORY_HELP)
    diff.add_argument("a", metavar="V1", help="a version id (v3), an alias or 'latest'")
    diff.add_argument("b", metavar="V2", help="the version to compare it with")
    diff.add_argument("--json", action="store_true", help="print machine-readable JSON")
    diff.set_defaults(run=_diff)

    delete = commands.add_parser("delete", help="delete a version no alias names (then gc frees its chunks)")
    delete.add_argument("repository", help=_REPOSITORY_HELP)
    delete.add_argument("version", help="a version id (v3)")
    delete.set_defaults(run=_delete)

    gc = commands.add_parser("gc", help="delete chunks no version uses")
    gc.add_argument("repository", help=_REPOSITORY_HELP)
    gc.set_defaults(run=_gc)
