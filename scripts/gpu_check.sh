#!/usr/bin/env bash
# The GPU check in one command (no network): installs the carried wheels the GPU image lacks, then runs
# scripts/gpu_check.py (LRW bridging + GRID bridging speech in bf16 on synthetic shards, a resume, the loader per
# crop codec; prints samples/s, peak memory, data wait vs compute). Arguments go to gpu_check.py, e.g.
#   scripts/gpu_check.sh                         # CUDA, ~3-5 min on an H100/H200
#   scripts/gpu_check.sh --device cpu --steps 2  # the dry run of the test suite
# Wheels: `make gpu-wheels` (on a machine with PyPI) fills wheels/ for CPython 3.12 x86_64 (GPU_PYTHONS=...); carry that folder.
# PYTHON picks the interpreter (default python3); results go to $OUT when set (the device tool's folder).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
REQS="$ROOT/scripts/gpu_requirements.txt"
NEEDED="import webdataset, pydantic, typer, rich, yaml, PIL, tensorboard"

if ! "$PY" -c "$NEEDED" 2>/dev/null; then
  if ! compgen -G "$ROOT/wheels/*.whl" >/dev/null; then
    echo "error: $("$PY" -c "$NEEDED" 2>&1 | tail -1); no wheels in $ROOT/wheels to install from." >&2
    echo "       Run 'make gpu-wheels' where PyPI is reachable and carry the wheels/ folder." >&2
    exit 2
  fi
  SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXX")
  echo "installing the carried wheels into $SITE ($("$PY" -c 'import platform; print(platform.python_version())'))"
  # --no-deps: gpu_requirements.txt is the closure; torch and numpy stay the image's own
  "$PY" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$ROOT/wheels" --no-deps \
    --target "$SITE" -r "$REQS"
  if compgen -G "$ROOT/wheels/av-*.whl" >/dev/null; then
    "$PY" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$ROOT/wheels" --no-deps \
      --target "$SITE" av || echo "PyAV wheel does not fit this Python: the loader check skips mp4"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "$NEEDED"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
