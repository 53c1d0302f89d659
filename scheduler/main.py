"""`ttsfleet dispatcher`: run the dispatcher (and its reconciler) until SIGTERM/SIGINT.

Two or more may run: a lease in Redis lets one move jobs while the others wait to take over.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from tasks import logs
from tasks.settings import Settings
from tasks.tenants import refuse_weak_secrets

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="INFO", help="log level (default: INFO)")


def run(settings: Settings, loglevel: str) -> int:
    from scheduler.dispatcher import Dispatcher
    from tasks.app import app

    logs.configure(settings.log_format, loglevel)
    refuse_weak_secrets(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("dispatcher running")
    Dispatcher.from_settings(settings, app).run(stop)
    return 0
