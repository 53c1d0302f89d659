#!/usr/bin/env bash
# Everything the lent GPU machine runs, in one call (`make gpu-bundle` prints it):
#   bash bench/gpu_run.sh BUNDLE OUT [bench.gpu options...]
# Installs BUNDLE's wheels beside the image's packages (--target, never into the image),
# unpacks Debian's redis-server under a temporary root (never `/`), then runs the engine
# benchmark and the fleet benchmark, writing gpu.json, fleet.json and gpu.log into OUT.
# PYTHON (default python3) picks the interpreter; tests/integration/test_gpu_bundle.py runs
# this same script on the CPU with smoke sizes.
set -euo pipefail
bundle=$(realpath "$1")
out=$(realpath -m "$2")
shift 2
py=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
  local started=$SECONDS
  "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
    --no-cache-dir --target "$work/site" "$bundle"/wheels/*.whl
  export PYTHONPATH="$work/site:$PWD" PYTHONUNBUFFERED=1

  mkdir -p "$work/redis/bin"
  for deb in "$bundle"/debs/*.deb; do
    if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$deb" "$work/redis"
    else "$py" -m bench.bundle --unpack "$deb" "$work/redis"; fi
  done
  local libs="$work/redis/usr/lib/x86_64-linux-gnu:$work/redis/lib/x86_64-linux-gnu"
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libs" \
    "$work/redis/usr/bin/redis-server" >"$work/redis/bin/redis-server"
  chmod +x "$work/redis/bin/redis-server"
  export PATH="$work/redis/bin:$PATH"
  echo "redis-server: $(command -v redis-server), $(redis-server --version)"
  echo "bundle installed in $((SECONDS - started)) s"

  "$py" -m bench.gpu --corpus "$bundle/sentences.txt" --out "$out" "$@"
  "$py" -m bench.gpu --fleet --corpus "$bundle/sentences.txt" --out "$out" "$@"
  echo "whole run: $((SECONDS - started)) s"
}

mkdir -p "$out"
run "$@" 2>&1 | tee "$out/gpu.log"
