"""Keeps a non-forking worker (threads pool) running across its own recycling.

With the threads pool the worker process itself runs the engine, so recycling it
(worker.recycle) means a warm shutdown of that process and a fresh one that loads the
model before it consumes. `ttsfleet worker` therefore runs such a worker as a child and
starts it again whenever it exits, until the supervisor itself is told to stop (SIGTERM
or SIGINT are passed on to the child, whose warm shutdown then finishes its jobs).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger(__name__)

# Set in the child's environment: it runs the worker itself instead of supervising.
SUPERVISED_ENV = "TTSFLEET_WORKER_SUPERVISED"


def supervise(argv: list[str], restart_delay_s: float = 0.5) -> int:
    """Run `python -m client.cli <argv>` again each time it exits, until stopped."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    env = {**os.environ, SUPERVISED_ENV: "1"}
    code = 0
    while not stopping:
        child = subprocess.Popen([sys.executable, "-m", "client.cli", *argv], env=env)
        code = child.wait()
        if not stopping:
            print(f"worker {child.pid} exited ({code}); starting a fresh one", flush=True)
            time.sleep(restart_delay_s)
    return code
