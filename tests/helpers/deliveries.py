"""Callback deliveries on real parts: the delivery object, a job whose event waits in the
outbox, its callback record, and `drain`, which runs the worker in burst mode on a clock."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from callbacks.delivery import CallbackDelivery, CallbacksWorker
from callbacks.outbox import Outbox
from tasks.jobs import CallbackInfo, Job
from tasks.settings import Settings
from tasks.ssrf import CallbackGuard
from tasks.store import Claim, JobStore
from tasks.tenants import Tenant, TenantDirectory
from tests.helpers.clock import Clock
from tests.helpers.jobs import AUDIO, make_job

SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
LOOPBACK = "127.0.0.0/8,::1/128"

TENANTS = TenantDirectory([Tenant(id="acme", api_keys=("k",), webhook_secret=SECRET)])


def delivery_for(
    settings: Settings,
    store: JobStore,
    tenants: TenantDirectory = TENANTS,
    guard: CallbackGuard | None = None,
    lease_s: float = 10,
    clock: Clock | None = None,
) -> CallbackDelivery:
    return CallbackDelivery(
        settings,
        store,
        Outbox(store.redis, lease_s=lease_s),
        tenants,
        guard or CallbackGuard.from_settings(settings),
        clock=time.time if clock is None else clock,
    )


def finished_job(store: JobStore, url: str, tenant: str = "acme") -> Job:
    """A job with a callback that ran and succeeded: its event is in the outbox."""
    job = make_job(tenant, callback=CallbackInfo(url=url))
    store.create(job)
    assert store.claim(job.id, 3).verdict is Claim.RUN
    assert store.succeed(job.id, AUDIO).applied
    return job


def callback_of(store: JobStore, job_id: str) -> CallbackInfo:
    job = store.get(job_id)
    assert job is not None and job.callback is not None
    return job.callback


def drain(worker: CallbacksWorker, clock: Clock, rounds: int = 20) -> int:
    """Run `worker` in burst mode, moving `clock` to each next due time, until the outbox
    is empty; returns the attempts made. Retries happen on the clock, not after sleeps."""
    outbox = worker.delivery.outbox
    attempts = 0
    for _ in range(rounds):
        attempts += worker.run(burst=True)
        pending = outbox.pending()
        if not pending:
            return attempts
        clock.now = max(clock.now, min(pending.values()))
    raise AssertionError(f"outbox not empty after {rounds} rounds: {outbox.pending()}")


def self_signed(tmp_path: Path, name: str) -> Path:
    """A PEM with a key and a self-signed certificate for `name`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / f"{name}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path
