"""The dispatcher process (`ttsfleet dispatcher`): hands jobs from tenants' pending lists to
the Celery queues fairly, and re-sends the jobs whose worker died (the reconciler)."""
