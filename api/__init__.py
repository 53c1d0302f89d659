"""The submit API: validates jobs, records them in Redis, enqueues them. Imports no torch."""
