"""Serving the API with one or several processes on one shared socket.

Stock `uvicorn --workers N` was measured slower than one worker here (flat 44 ms per
request): the accepted sockets lack TCP_NODELAY when uvicorn hands a pre-bound socket to
its workers (uvicorn#3149). Linux copies TCP_NODELAY from a listening socket to the
sockets it accepts, so we bind the socket ourselves with it set.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from tasks.settings import Settings


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, host: str, port: int, workers: int, log_level: str = "info") -> None:
    """Run the API until interrupted; `workers` processes share one listening socket."""
    from tasks import logs
    from tasks.tenants import refuse_weak_secrets

    # Before binding: a refusal names the setting once, not once per worker process; a
    # warning (dev mode) comes out in the API's log format.
    logs.configure(settings.log_format, log_level.upper())
    refuse_weak_secrets(settings)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = Path(settings.home).resolve() / "prometheus-api"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG
    from uvicorn.supervisors import Multiprocess

    from tasks.logs import dict_config

    # uvicorn's own format unless JSON is asked for (its loggers then reach our handler).
    json_logs = settings.log_format == "json"
    log_config = dict_config("json", log_level.upper()) if json_logs else LOGGING_CONFIG
    config = uvicorn.Config(
        "api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=log_config,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    sock = bind(host, port)
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
