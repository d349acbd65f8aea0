#!/usr/bin/env bash
# Create (or reuse) one virtualenv per sklearn minor under $TREESHARD_COMPAT_CACHE
# (default ~/.cache/treeshard-compat). treeshard itself is not installed: the
# matrix runs it from the work tree with PYTHONPATH, so one build serves every venv.
# Usage: tests/compat/venvs.sh [VERSION...]   (default: every version in versions.txt)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${TREESHARD_COMPAT_CACHE:-$HOME/.cache/treeshard-compat}"
python="${COMPAT_PYTHON:-$(command -v python3.11 || command -v python3)}"
# Installed beside each version's own spec: skops for the pipeline cases with a skops step
# (COMPAT_EXTRAS= to leave them out: those cases are then not written, and read as failed).
extras="${COMPAT_EXTRAS-skops==0.16.0}"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one creator at a time: a second run waits instead of removing a venv being built
if [ "$#" -eq 0 ]; then
    set -- $(grep -v '^#' "$here/versions.txt" | awk 'NF {print $1}')
fi
for version in "$@"; do
    spec="$(grep -v '^#' "$here/versions.txt" | awk -v v="$version" '$1 == v {$1=""; print}')"
    [ -n "$spec" ] || { echo "unknown sklearn version $version (tests/compat/versions.txt)" >&2; exit 2; }
    venv="$cache/sklearn-$version"
    stamp="$venv/.compat-stamp"
    want="$spec"
    if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "compat: creating $venv ($spec)" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv"
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install -q $spec
        echo "$want" > "$stamp"
    fi
    # Optional extras (the skops pipeline cases) are added to a venv in place, never rebuilding it.
    extras_stamp="$venv/.compat-extras"
    if [ -n "$extras" ] && { ! [ -f "$extras_stamp" ] || [ "$(cat "$extras_stamp")" != "$extras" ]; }; then
        echo "compat: adding $extras to $venv" >&2
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install -q $extras
        echo "$extras" > "$extras_stamp"
    fi
done
