#!/usr/bin/env bash
# start|stop a dockerd for `make test-deploy` when none answers. Debian's docker.io on vfs
# (no overlay in this kind of sandbox) and without iptables: containers reach only each other,
# the host and ports published to the host (docker-proxy); nothing routes them further.
set -euo pipefail
cd "$(dirname "$0")/../../.."
STATE=${DEPLOY_CACHE:-.cache/deploy}
PIDFILE=$STATE/dockerd.pid
DOCKER=/usr/bin/docker
case "${1:-}" in
start)
  mkdir -p "$STATE"
  if $DOCKER info >/dev/null 2>&1; then echo "dockerd already running: left as it is"; exit 0; fi
  [ "$(id -u)" = 0 ] || { echo "starting dockerd needs root (or start one yourself)" >&2; exit 1; }
  setsid dockerd --storage-driver=vfs --iptables=false >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 60); do $DOCKER info >/dev/null 2>&1 && { echo "dockerd started (pid $(cat "$PIDFILE"))"; exit 0; }; sleep 1; done
  echo "dockerd did not answer within 60 s; see $STATE/dockerd.log" >&2; exit 1 ;;
stop)
  [ -f "$PIDFILE" ] || exit 0
  pid=$(cat "$PIDFILE"); rm -f "$PIDFILE"
  kill "$pid" 2>/dev/null || exit 0
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || { echo "dockerd stopped"; exit 0; }; sleep 1; done
  echo "dockerd (pid $pid) still running after 30 s" >&2; exit 1 ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
