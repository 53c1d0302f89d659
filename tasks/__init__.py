"""The contract every process shares, running none: the Celery app and routing, settings,
the job model, keys, errors, the job store, quota, storage, tenants, the SSRF guard.

Imports no torch and none of the processes' packages. Importing the package imports
nothing else, so `tasks.settings` costs no Celery; `celery -A tasks worker` finds the app
in `tasks.celery`, Celery's own convention.
"""
