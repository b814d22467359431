#!/usr/bin/env bash
# `make lock`: write requirements/lock-<stack>.txt afresh for each stack.
#
# For each stack (MMET_LOCK_STACKS, default "upstream onedl"), a fresh venv
# outside the clone is set up by tools/setup_env.sh from the unlocked inputs
# (MMET_UNLOCKED=1: requirements/constraints*.txt and the top-level packages
# named in the set-up, resolved by pip against today's releases), and what
# it holds is written as the stack's lock. mmcv comes from the wheel cache
# when one was compiled for the same key. What changed is printed; then run
# the suite on each stack against the new locks (docs/development.md,
# "Locks") before committing them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MMET_CACHE:-$HOME/.cache/mmet}"
STACKS="${MMET_LOCK_STACKS:-upstream onedl}"
PY="${PYTHON:-python3}"

for STACK in $STACKS; do
    case "$STACK" in
        upstream) CONSTRAINTS=requirements/constraints.txt ;;
        onedl) CONSTRAINTS=requirements/constraints-onedl.txt ;;
        *) echo "[lock] unknown stack $STACK (upstream or onedl)" >&2; exit 2 ;;
    esac
    VENV="$CACHE/lock-venv-$STACK"
    LOCK="$ROOT/requirements/lock-$STACK.txt"
    echo "[lock] $STACK: a fresh venv in $VENV from $CONSTRAINTS"
    rm -rf "$VENV"
    MMET_STACK="$STACK" MMET_UNLOCKED=1 MMET_SKIP_DATA=1 MMET_VENV="$VENV" \
        PYTHON="$PY" bash "$ROOT/tools/setup_env.sh"
    NEW="$(mktemp)"
    (cd "$ROOT" && "$VENV/bin/python" tools/lock.py write --stack "$STACK" \
        --constraints "$CONSTRAINTS") > "$NEW"
    echo "[lock] $STACK: changes to requirements/lock-$STACK.txt:"
    "$VENV/bin/python" "$ROOT/tools/lock.py" diff "$LOCK" "$NEW"
    cat "$NEW" > "$LOCK" && rm -f "$NEW"
    rm -rf "$VENV"
done
echo "[lock] done. Now run the suite against the new locks (this brings the"
echo "[lock] venvs to them): make test; MMET_STACK=onedl make test"
