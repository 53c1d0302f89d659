"""What a worker tells operators, wired into Celery's life: logs, metrics, heartbeat.

`install` runs in `ttsfleet worker`'s main process before Celery starts (after
`worker.metric_files.prepare`), so the log format and the node name are set before the
pool forks and the children inherit them.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from celery import signals

from tasks import logs, redis_url
from tasks.settings import Settings
from worker import heartbeat


def install(settings: Settings, node: str, queue: str, pool: str, concurrency: int) -> None:
    port = settings.worker_metrics_port
    heartbeat.configure(node, settings.redis_url)
    # Now, for what Celery says before it sets logging up (its root-user warning).
    logs.configure(settings.log_format, "INFO", {"worker": node})
    stop = threading.Event()
    beats: list[heartbeat.Heartbeat] = []

    @signals.setup_logging.connect(weak=False)
    def _configure_logging(loglevel: Any = None, **_: Any) -> None:
        # Connected, this replaces Celery's own set-up (in the main process and each child).
        logs.configure(settings.log_format, loglevel or "INFO", {"worker": node})

    if port is not None:
        from worker import metrics

        # Here rather than once ready: a port already taken stops the worker at start.
        metrics.serve(port, queue)

    @signals.worker_ready.connect(weak=False)
    def _start(**_: Any) -> None:
        client = redis_url.client(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        beat = heartbeat.Heartbeat(
            client,
            node,
            {
                "node": node,
                "model": settings.serving_model(),
                "device": settings.worker_device,
                "queue": queue,
                "pool": pool,
                "concurrency": concurrency,
                "pid": os.getpid(),
                "started": time.time(),
                "metrics_port": port or "",
            },
            interval_s=settings.worker_heartbeat_s,
        )
        beats.append(beat)
        threading.Thread(
            target=beat.run, args=(stop,), name="ttsfleet-heartbeat", daemon=True
        ).start()

    @signals.worker_shutdown.connect(weak=False)
    def _leave(**_: Any) -> None:
        stop.set()
        for beat in beats:
            beat.leave()
