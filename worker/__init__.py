"""The synth worker process (`ttsfleet worker`, `celery -A tasks worker`): its start-up, the
Celery task, runner, micro-batcher, engines, audio encoding, cache, leases, recycling."""
