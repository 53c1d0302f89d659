"""Operator tools: the `ttsfleet` server verbs (`up`, `api`, `worker`, `dispatcher`,
`callbacks`, `fleet`), `make up`'s embedded fleet and the fleet view."""
