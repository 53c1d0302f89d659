"""Operator tools: the `ttsfleet` server verbs (`up`, `api`, `worker`, `dispatcher`,
`callbacks`, `fleet`, `health`), `make up`'s embedded fleet, the fleet view and the
containers' health checks."""
