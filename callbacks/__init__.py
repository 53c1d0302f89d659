"""The callbacks worker process (`ttsfleet callbacks`): delivers each job's signed webhook
from the outbox, retrying on its schedule. No Celery, no model, no GPU."""
