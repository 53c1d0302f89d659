"""The receiver's verifier (client.webhooks) against the fleet's signer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from client.webhooks import (
    InvalidSignature,
    StaleTimestamp,
    WebhookVerificationError,
    signature_header,
    verify_webhook,
)

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"type":"job.succeeded","timestamp":"2026-11-26T23:00:00.000Z","data":{"id":"J1"}}'


def headers(secrets: list[str], body: bytes = BODY, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {
        "Webhook-Id": "msg_J1_succeeded",
        "Webhook-Timestamp": str(ts),
        "Webhook-Signature": signature_header(secrets, "msg_J1_succeeded", ts, body),
    }


def test_signature_is_the_spec_hmac_and_verifies() -> None:
    h = headers([SECRET], ts=1_700_000_000)
    mac = hmac.new(b"k" * 32, b"msg_J1_succeeded.1700000000." + BODY, hashlib.sha256).digest()
    assert h["Webhook-Signature"] == "v1," + base64.b64encode(mac).decode()
    verify_webhook(SECRET, h, BODY, now=1_700_000_010)


def test_tampered_body_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_webhook(SECRET, headers([SECRET]), BODY.replace(b"J1", b"J2"))


def test_rotation_sends_both_signatures_and_either_secret_verifies() -> None:
    h = headers([SECRET, OLD_SECRET])
    assert len(h["Webhook-Signature"].split(" ")) == 2
    verify_webhook(SECRET, h, BODY)
    verify_webhook(OLD_SECRET, h, BODY)
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(InvalidSignature):
        verify_webhook(other, h, BODY)


def test_stale_or_future_timestamp_is_rejected() -> None:
    now = time.time()
    with pytest.raises(StaleTimestamp):
        verify_webhook(SECRET, headers([SECRET], ts=int(now) - 301), BODY, now=now)
    with pytest.raises(StaleTimestamp):
        verify_webhook(SECRET, headers([SECRET], ts=int(now) + 400), BODY, now=now)
    verify_webhook(SECRET, headers([SECRET], ts=int(now) - 1000), BODY, tolerance=1200)


@pytest.mark.parametrize(
    "bad",
    [
        {"Webhook-Signature": "garbage"},
        {"Webhook-Signature": "v1,not-base64!!"},
        {"Webhook-Signature": "v2,AAAA"},
        {"Webhook-Timestamp": "yesterday"},
        {"Webhook-Id": ""},
    ],
)
def test_malformed_headers_raise_the_one_error_type(bad: dict[str, str]) -> None:
    with pytest.raises(WebhookVerificationError) as err:
        verify_webhook(SECRET, {**headers([SECRET]), **bad}, BODY)
    assert err.value.code.startswith("webhook_")
