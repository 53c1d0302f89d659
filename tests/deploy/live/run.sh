#!/usr/bin/env bash
# `make test-deploy`: start a dockerd if none answers, build the images, run the live
# compose tests, then remove what the test built (the base tarball and the wheelhouse stay
# cached in .cache/deploy and deploy/docker/wheels) and stop the dockerd it started.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHON
started=
cleanup() {
  /usr/bin/docker image rm -f ttsfleet-test/app:piper ttsfleet-test/redis:bookworm \
    ttsfleet-test/s3:moto ttsfleet-test/base:bookworm >/dev/null 2>&1 || true
  # Older builds of the same tags, left untagged (images.sh labels all it makes).
  /usr/bin/docker image prune -af --filter label=ttsfleet-test=1 >/dev/null 2>&1 || true
  /usr/bin/docker builder prune -af >/dev/null 2>&1 || true
  [ -z "$started" ] || tests/deploy/live/dockerd.sh stop
}
if ! /usr/bin/docker info >/dev/null 2>&1; then
  tests/deploy/live/dockerd.sh start
  started=1
fi
trap cleanup EXIT
SECONDS=0
tests/deploy/live/images.sh
echo "images built in ${SECONDS} s"
"$PYTHON" -m pytest -m deploy -o timeout=1800 -s -p no:cacheprovider tests/deploy/live "$@"
echo "make test-deploy: ${SECONDS} s in all"
