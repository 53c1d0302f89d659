"""The contract both sides share: Celery app, queues, job model, job store, settings.

Imports no torch. `celery -A tasks worker` finds `tasks.app`.
"""

from tasks.app import app

__all__ = ["app"]
