"""The contract every process shares, running none: the Celery app and routing, settings,
the job model, keys, errors, the job store, quota, storage, tenants, the SSRF guard.

Imports no torch and none of the processes' packages. `celery -A tasks worker` finds
`tasks.app`.
"""

from tasks.app import app

__all__ = ["app"]
