#!/usr/bin/env python3
"""Container health check of a Celery worker: exit 0 when a node on this host answers ping.

`ttsfleet worker` names its node `<model>-<device>@<hostname>`, and a container's hostname
is its own, so a reply from any node ending in `@<hostname>` is this container's worker.
Used as the HEALTHCHECK of worker containers and as the liveness probe on Kubernetes.
"""

from __future__ import annotations

import socket
import sys


def main(timeout: float = 10.0) -> int:
    from tasks.app import app

    suffix = "@" + socket.gethostname()
    replies = app.control.ping(timeout=timeout) or []
    alive = any(node.endswith(suffix) for reply in replies for node in reply)
    if not alive:
        print(f"no Celery node *{suffix} answered ping within {timeout:.0f} s", file=sys.stderr)
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0))
