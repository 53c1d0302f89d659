"""RFC 7240 `Prefer: wait=N` parsing (api.waiters.prefer_wait)."""

from __future__ import annotations

import pytest

from api.waiters import WAIT_MAX_S, prefer_wait


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        (["wait=10"], 10),
        (["respond-async, wait=5"], 5),
        (["WAIT = 7"], 7),
        (['wait="3"'], 3),
        (["wait=0"], 0),
        (["wait=61"], WAIT_MAX_S),
        (["wait=999999999"], WAIT_MAX_S),
        (["wait=99999999999999999999999"], WAIT_MAX_S),
        (["wait=" + "9" * 5000], WAIT_MAX_S),  # past int()'s 4,300 digits
        (['wait="1000000000000"'], WAIT_MAX_S),
        (["wait=007"], 7),
        (["wait=" + "0" * 30 + "5"], 5),
        (["wait=-99999999999999999999"], None),
        (["wait=1e30"], None),
        (["return=minimal", "wait=2"], 2),
        (["wait=4;foo=bar"], 4),
        (["wait=soon"], None),
        (["wait=-1"], None),
        (["wait=1.5"], None),
        (["wait"], None),
        (["handling=strict"], None),
    ],
)
def test_prefer_wait(headers: list[str], expected: int | None) -> None:
    assert prefer_wait(headers) == expected
