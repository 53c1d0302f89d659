"""The Celery app both sides share, and how a job is routed to its model's queue."""

from __future__ import annotations

from typing import Any

from celery import Celery

from tasks import keys, redis_url
from tasks.jobs import JobMessage, Priority
from tasks.settings import Settings, get_settings

# Kombu's Redis transport emulates priorities with one list per step; lower is served first.
PRIORITY_STEPS = [0, 3, 6]


def create_app(settings: Settings) -> Celery:
    """A Celery app configured from `settings`; the worker's task module is included lazily."""
    # A sentinel:// URL becomes kombu's own form of it, and the master's name an option.
    broker, sentinel_options = redis_url.broker(settings.redis_url)
    app = Celery("ttsfleet", broker=broker, include=["worker.task"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Outcomes live in the job store; Celery results would be a second, unread copy.
        task_ignore_result=True,
        # Ack only once the job's outcome is recorded, and requeue if the child dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=keys.synth_queue(next(iter(settings.models))),
        task_default_priority=3,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for expired unacked messages at a fraction of the visibility timeout
            # (kombu's default sweep, ~100 s, is longer than a short timeout itself).
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
            "unacked_restore_throttle": 1 if settings.visibility_timeout_s < 100 else 10,
            "priority_steps": PRIORITY_STEPS,
            "sep": ":",
            "queue_order_strategy": "priority",
            **sentinel_options,
        },
        broker_connection_retry_on_startup=True,
        # A job running when the broker connection drops would be redelivered: stop it.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Events feed Flower. No "sent" event: it is one more Redis write on every submit
        # (measured 0.25 ms of 0.74), and the job store already says a job is queued.
        worker_send_task_events=True,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )
    return app


def broker_lists(model: str) -> list[str]:
    """The Redis lists kombu keeps for a model's queue, one per priority step."""
    queue = keys.synth_queue(model)
    return [queue if step == 0 else f"{queue}:{step}" for step in PRIORITY_STEPS]


def send_synthesis(
    app: Celery, job_id: str, tenant: str, model: str, priority: Priority, producer: Any = None
) -> None:
    """The message of one job, as the dispatcher (scheduler.dispatcher) sends it."""
    app.send_task(
        keys.SYNTHESIZE_TASK,
        args=[JobMessage(job_id=job_id, tenant=tenant).encode()],
        queue=keys.synth_queue(model),
        priority=priority.celery_priority,
        task_id=job_id,
        producer=producer,
    )


# `celery -A tasks worker` finds this.
app = create_app(get_settings())
