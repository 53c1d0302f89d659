"""Standard Webhooks signatures: how the fleet signs a callback and how a receiver checks it.

Signing uses the `standardwebhooks` package (from the spec's authors). Verifying does not
call its `Webhook.verify`: that one fixes the tolerance at 5 minutes and lets a malformed
header escape as ValueError/binascii.Error; here the tolerance is a parameter and every
failure is one `WebhookVerificationError` with a stable `code`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook


class WebhookVerificationError(Exception):
    """The request is not a fresh callback signed with the receiver's secret."""

    code = "webhook_invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidSignature(WebhookVerificationError):
    code = "webhook_bad_signature"


class StaleTimestamp(WebhookVerificationError):
    code = "webhook_stale_timestamp"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` with a `whsec_` secret."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body.decode())


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per secret, space-separated: during a rotation both keys verify."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = 300,
    now: float | None = None,
) -> None:
    """Raise `WebhookVerificationError` unless one of the `webhook-signature` entries is
    the `secret`'s signature of this body and the timestamp is within `tolerance` seconds."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not unix seconds") from exc
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise StaleTimestamp(f"webhook-timestamp is more than {tolerance} s from now")
    try:
        expected = base64.b64decode(sign(secret, msg_id, timestamp, body).split(",", 1)[1])
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise WebhookVerificationError("the secret or body cannot be used") from exc
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(expected, candidate):
            return
    raise InvalidSignature("no webhook-signature matches this body and secret")
