"""Keeps a non-forking worker (threads pool) running across its own recycling.

With the threads pool the worker process itself runs the engine, so recycling it
(worker.recycle) means a warm shutdown of that process and a fresh one that loads the
model before it consumes. `ttsfleet worker` therefore runs such a worker as a child and
starts it again whenever it exits, until the supervisor itself is told to stop (SIGTERM
or SIGINT are passed on to the child, whose warm shutdown then finishes its jobs).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger(__name__)


def supervise(argv: list[str], restart_delay_s: float = 0.5) -> int:
    """Run `python -m worker.main <argv>` again each time it exits, until stopped; `argv`
    carries `--supervised`, so that child runs the worker itself."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        child = subprocess.Popen([sys.executable, "-m", "worker.main", *argv])
        code = child.wait()
        if not stopping:
            print(f"worker {child.pid} exited ({code}); starting a fresh one", flush=True)
            time.sleep(restart_delay_s)
    return code
