"""The long fuzz campaign: many mutated stores, each loaded in its own subprocess.

Uses the mutations and the oracle of ``tests/test_fuzz.py``. The parent
process fits and saves the base models once, then for each run mutates a
copy of a store and forks a child that loads it (eagerly or lazily),
predicts, and checks the content digest, under a memory limit
(``RLIMIT_AS``) and a time limit (``SIGALRM``). A child that dies by a
signal is a crash (SIGSEGV, SIGABRT, ...) or a hang (SIGALRM); a child that
reports an exception other than a TreeshardError is an escape. Stores that
escape, crash or hang are written to ``--out`` as directory stores, with the
mutations that made them, for reproduction.

Usage (niced, one process)::

    nice -n 19 .venv/bin/python scripts/fuzz_long.py --runs 10000 --out /tmp/fuzz

Exit code 0 when there were no escapes, crashes, hangs or digest misses.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
# Each load runs in a forked child. OpenMP (libgomp) is not fork-safe: a child forked after the
# parent ran a parallel region (the HistGradientBoosting fits of the base models) hangs in its
# own first one (sklearn's HGB predict), which would count as a hang of the store. One OpenMP
# thread, set before sklearn loads libgomp, creates no thread pool to lose in the fork.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import test_fuzz as fuzz  # noqa: E402

from treeshard import integrity
from treeshard.errors import TreeshardError


def child(files, base, lazy, changed, memory, seconds, out_fd, container, predictor) -> None:  # type: ignore[no-untyped-def]
    """Runs in the forked child; reports one JSON line and exits.

    ``container`` is None (a memory store) or the path of a zip file or a
    directory holding the mutated store.
    """
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    signal.alarm(seconds)
    report: dict[str, object] = {}
    try:
        try:
            if container is None:
                outcome = fuzz.check_store(files, base, lazy=lazy)
            else:
                outcome = fuzz.check_path(container, base, lazy=lazy)
            report.update(loaded=outcome.loaded, same=outcome.same, error=outcome.error)
            if predictor:
                fast = fuzz.check_predictor(files if container is None else container, base)
                report.update(predictor_loaded=fast.loaded, predictor_error=fast.error)
                if fast.loaded and outcome.loaded:
                    report["predictor_agrees"] = fast.same == outcome.same
        except AssertionError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the point: anything that is not a TreeshardError
            report.update(escape=f"{type(exc).__name__}: {exc}"[:2000], traceback=traceback.format_exc()[-4000:])
        if container is None:
            verified = fuzz.check_digest(files, base)
        else:
            try:
                integrity.verify_path(container)
                verified = True
            except TreeshardError:
                verified = False
        report["digest_ok"] = True if changed is None else verified is not changed
    except BaseException as exc:  # noqa: BLE001
        report.update(escape=f"harness: {type(exc).__name__}: {exc}"[:2000], traceback=traceback.format_exc()[-4000:])
    os.write(out_fd, (json.dumps(report) + "\n").encode())
    os._exit(0)


def run_one(files, base, lazy, changed, memory, seconds, container=None, predictor=False) -> dict:  # type: ignore[no-untyped-def]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            child(files, base, lazy, changed, memory, seconds, write_fd, container, predictor)
        finally:
            os._exit(3)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 1 << 16):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {"signal": signal.Signals(sig).name, "hang": sig == signal.SIGALRM}
    try:
        return json.loads(b"".join(chunks) or b"{}") or {"escape": f"child exited {os.WEXITSTATUS(status)} without a report"}
    except ValueError:
        return {"escape": "unreadable child report"}


def save_case(out: Path, index: int, files: dict[str, bytes], done: list[str], result: dict) -> None:
    folder = out / f"case-{index:06d}"
    for key, value in files.items():
        path = folder / "store" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value)
    (folder / "case.json").write_text(json.dumps({"mutations": done, "result": result}, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"))
    parser.add_argument("--memory-mb", type=int, default=3072, help="RLIMIT_AS of each child")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per load before it counts as a hang")
    parser.add_argument("--predictor", action="store_true", help="also load each store with treeshard.Predictor")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    bases = fuzz.make_bases()
    names = sorted(bases)
    counts: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    mutations: collections.Counter[str] = collections.Counter()
    start = time.monotonic()
    for i in range(args.runs):
        r = random.Random(f"{args.seed}-{i}")
        base = bases[r.choice(names)]
        lazy = r.random() < 0.5
        files, done = fuzz.mutate(base.files, r)
        mutations.update(d.split(" ")[0].split(":")[0] for d in done)
        changed = files != base.files
        container = None
        kind_of_store = r.choice(["memory"] * 6 + ["zip", "zip", "directory", "damaged-zip"])
        counts[f"store:{kind_of_store}"] += 1
        if kind_of_store != "memory":
            scratch = args.out / "scratch"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            if kind_of_store == "directory":
                container = scratch / "model"
                fuzz.write_directory(files, container)
            else:
                container = scratch / "model.zip"
                fuzz.write_zip(files, container)
                if kind_of_store == "damaged-zip":
                    clean = container.read_bytes()
                    container.write_bytes(fuzz.damage_zip(clean, r))
                    done.append("damage the zip file")
                    # What verify must catch is changed content: damage to zip headers
                    # alone (timestamps, attributes) leaves every member intact.
                    # None: intact members in a damaged container, which verify may refuse.
                    changed = True if fuzz.zip_contents(container) != base.files else None
        result = run_one(files, base, lazy, changed, args.memory_mb << 20, args.timeout, container, args.predictor)
        if "signal" in result:
            kind = "hang" if result["hang"] else "crash"
        elif "escape" in result:
            kind = "escape"
        elif result.get("digest_ok") is False:
            kind = "digest_miss"
        elif result.get("loaded"):
            kind = "loaded_same" if result.get("same") else "loaded_changed"
        else:
            kind = "rejected"
            errors[str(result.get("error"))] += 1
        counts[kind] += 1
        if result.get("predictor_loaded") is not None:
            counts["predictor_loaded" if result["predictor_loaded"] else "predictor_rejected"] += 1
            counts["predictor_disagrees"] += result.get("predictor_agrees") is False
        counts["changed_bytes"] += changed is not False
        if kind in ("hang", "crash", "escape", "digest_miss"):
            save_case(args.out, i, files, done, result)
            print(f"[{i}] {kind}: {done} -> {result.get('escape') or result.get('signal') or result}", flush=True)
        if (i + 1) % 500 == 0:
            print(f"{i + 1} runs, {time.monotonic() - start:.0f} s: {dict(counts)}", flush=True)
    elapsed = time.monotonic() - start
    summary = {
        "runs": args.runs,
        "seconds": round(elapsed, 1),
        "outcomes": dict(counts),
        "rejections": dict(errors.most_common()),
        "mutations": dict(mutations.most_common()),
        "memory_limit_mb": args.memory_mb,
        "timeout_s": args.timeout,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    bad = sum(counts[k] for k in ("hang", "crash", "escape", "digest_miss"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
