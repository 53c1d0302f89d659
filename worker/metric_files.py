"""The directory where a worker's processes write their Prometheus samples.

prometheus_client picks memory or files for every value when it is first imported, so
`prepare` runs in `ttsfleet worker` before anything imports it (worker.metrics does).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
from pathlib import Path

from worker.process import alive

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_DIR_PREFIX = "prometheus-worker-"


def prepare(home: Path, serving: bool) -> Path | None:
    """Point prometheus_client at an empty directory of this worker's own and return it:
    `PROMETHEUS_MULTIPROC_DIR` where a deployment sets it, else `<home>/prometheus-worker-
    <pid>`, removed at exit (as are those of workers no longer running). A worker that
    serves no metrics keeps its samples in memory, whatever the environment says."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its directory was set")
    if not serving:
        os.environ.pop(MULTIPROC_ENV, None)
        return None
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
    else:
        home = home.resolve()
        directory = home / f"{_DIR_PREFIX}{os.getpid()}"
        for stale in home.glob(f"{_DIR_PREFIX}*"):
            pid = stale.name.removeprefix(_DIR_PREFIX)
            if pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        atexit.register(_remove, directory, os.getpid())
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def _remove(directory: Path, owner: int) -> None:
    # Forked children inherit atexit handlers; only the main process owns the directory.
    if os.getpid() == owner:
        shutil.rmtree(directory, ignore_errors=True)


def forget_dead_children(directory: Path) -> None:
    """Drop the live gauges of processes that are gone (a recycled or killed child)."""
    from prometheus_client import multiprocess

    for path in directory.glob("gauge_live*.db"):
        match = re.search(r"_(\d+)\.db$", path.name)
        if match and not alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), str(directory))  # type: ignore[no-untyped-call]
