"""The Python client, the `ttsfleet` CLI and the embedded fleet of `make up`."""

from client.client import ApiError, Client

__all__ = ["ApiError", "Client"]
