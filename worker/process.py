"""Whether a process of this host still exists: the one fact that both job leases
(worker.lease) and per-process metric files (worker.metric_files) need about a pid."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while `pid` exists (a zombie not yet reaped counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
