"""What an API user installs: the Python client (sync and async), `verify_webhook`, and the
user verbs of the `ttsfleet` command. Imports nothing of the server."""

from client.client import ApiError, AsyncClient, Client, NotConfigured
from client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "NotConfigured",
    "WebhookVerificationError",
    "verify_webhook",
]
