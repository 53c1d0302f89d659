"""The Celery task: decode the message, run the job, ask for redelivery when told to."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from tasks import keys, logs
from tasks.errors import InvalidJob
from tasks.jobs import JobMessage
from worker import metrics, startup

log = logging.getLogger(__name__)


@shared_task(name=keys.SYNTHESIZE_TASK, bind=True, max_retries=None)
def synthesize(self: Any, message: object) -> str | None:
    try:
        job = JobMessage.decode(message)
    except InvalidJob as exc:
        log.error("dropping message: %s", exc)
        return None
    with logs.bound(job_id=job.job_id, tenant=job.tenant):
        outcome = startup.runner().run(job.job_id)
        log.info("job %s: %s", job.job_id, outcome.status or "not run")
    metrics.record_outcome(outcome)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status.value if outcome.status else None
