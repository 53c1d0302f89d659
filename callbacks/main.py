"""`ttsfleet callbacks`: the callbacks worker process, run until SIGTERM/SIGINT.

Several may run: each delivery leases its event in the outbox (callbacks.outbox).
"""

from __future__ import annotations

import logging
import signal

from callbacks.delivery import CallbackDelivery, CallbacksWorker, outbox_lease_s
from callbacks.outbox import Outbox
from tasks.presence import Presence
from tasks.settings import Settings
from tasks.ssrf import CallbackGuard
from tasks.store import JobStore
from tasks.tenants import TenantDirectory, refuse_weak_secrets

log = logging.getLogger(__name__)


def build_worker(settings: Settings) -> CallbacksWorker:
    tenants = TenantDirectory.from_settings(settings)
    refuse_weak_secrets(settings, tenants)
    store = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    outbox = Outbox(store.redis, lease_s=outbox_lease_s(settings.callback_timeout_s))
    delivery = CallbackDelivery(
        settings,
        store,
        outbox,
        tenants,
        CallbackGuard.from_settings(settings),
    )
    return CallbacksWorker(delivery, presence=Presence(store.redis, "callbacks"))


def main(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; in-flight deliveries finish (each is bounded by its deadline)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    worker = build_worker(settings)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    log.info("callbacks worker ready.")
    worker.run()
    log.info("callbacks worker stopped.")
    return 0
