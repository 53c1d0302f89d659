#!/usr/bin/env bash
# Builds the images `make test-deploy` runs, with no image registry: a Debian base made by
# debootstrap (cached as a tarball in .cache/deploy), stand-ins for Redis and S3 on it, and
# the Piper-only ttsfleet CPU image from a wheelhouse resolved on the host for the base's
# Python (3.11.2). Builds use the host network only to reach Debian's apt mirror.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CACHE=.cache/deploy
DOCKER=/usr/bin/docker
PYTHON=${PYTHON:-.venv/bin/python}
PIP="$PYTHON -m pip"
BASE=ttsfleet-test/base:bookworm
# On every image this script makes, so that run.sh removes them all (a rebuilt tag leaves
# the old image untagged) and nothing else.
LABEL=ttsfleet-test=1
# BuildKit (built into dockerd 20.10): the classic builder snapshots every step, and on vfs
# each snapshot is a full copy of the image (minutes per Dockerfile).
export DOCKER_BUILDKIT=1
mkdir -p "$CACHE"
step() { printf '%s %s\n' "$(date +%T)" "$*"; }

if [ ! -s "$CACHE/base.tar" ]; then
  step "debootstrap: Debian bookworm with python3.11 (~1 min)"
  rm -rf "$CACHE/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$CACHE/rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log"
  tar -C "$CACHE/rootfs" -c . >"$CACHE/base.tar.part"
  mv "$CACHE/base.tar.part" "$CACHE/base.tar"
  rm -rf "$CACHE/rootfs"
fi
if ! $DOCKER image inspect "$BASE" >/dev/null 2>&1; then
  step "import the base"
  $DOCKER import --change "LABEL $LABEL" "$CACHE/base.tar" "$BASE" >/dev/null
fi

# Wheels for the image's interpreter: Debian's 3.11.2 (redis-py then needs async-timeout,
# which a host on 3.11.3+ skips by marker, so it is named here).
pip_download() {
  local dest=$1; shift
  $PIP download -q -d "$dest" --only-binary=:all: --python-version 3.11.2 --implementation cp \
    --abi cp311 --platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux2014_x86_64 --platform any "$@" 2>&1 | grep -v '^WARNING: Location' || true
}
step "wheelhouse (deploy/docker/wheels, .cache/deploy/wheels-s3)"
mapfile -t requirements < <($PYTHON - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + extras["server"] + extras["piper"]))
PY
)
pip_download deploy/docker/wheels "${requirements[@]}" async-timeout setuptools wheel
pip_download "$CACHE/wheels-s3" 'moto[server]' async-timeout
[ -n "$(ls deploy/docker/wheels/*.whl 2>/dev/null)" ] || { echo "no wheels downloaded" >&2; exit 1; }

build() {  # build TAG DOCKERFILE CONTEXT [ARGS...]
  local tag=$1 file=$2 context=$3 log; shift 3
  log="$CACHE/build-$(tr '/:' '--' <<<"$tag").log"
  step "build $tag (log: $log)"
  if ! $DOCKER build --progress plain --network host --label "$LABEL" \
      --build-arg BASE_IMAGE="$BASE" -t "$tag" \
      -f "$file" "$@" "$context" >"$log" 2>&1; then
    tail -30 "$log" >&2
    exit 1
  fi
}
build ttsfleet-test/redis:bookworm tests/deploy/live/Dockerfile.redis tests/deploy/live
build ttsfleet-test/s3:moto tests/deploy/live/Dockerfile.s3 "$CACHE/wheels-s3"
[ -n "${SKIP_APP:-}" ] || build ttsfleet-test/app:piper deploy/docker/Dockerfile.cpu . \
  --build-arg EXTRAS=server,piper --build-arg PIP_NO_INDEX=1
step "images built"
