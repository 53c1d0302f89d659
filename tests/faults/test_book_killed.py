"""A worker killed mid-book: the book still succeeds once, and the units whose parts were
recorded before the kill are not synthesized again (tasks.units)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from tasks import units
from tasks.text import group_pieces, split_text
from tests.conftest import wait_until
from tests.faults.conftest import HOOK, VOICE, Fleet, elapsed

BOOK = " ".join(
    f"Part {i} of the night train story: the conductor walked past carriage {i} again."
    for i in range(40)
)
UNIT = 900


def test_a_book_survives_its_worker_killed_and_keeps_what_was_done(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    log = tmp_path / "synthesized.log"
    fleet = make_fleet(
        "TextToneEngine",
        options={"seconds": 0.1, "log": str(log)},
        max_text_chars=600,
        unit_chars=UNIT,
        max_attempts=5,
    )
    client = redis.Redis.from_url(fleet.settings.redis_url, decode_responses=True)
    pieces = split_text(BOOK)
    count = len(group_pieces(pieces, UNIT))
    worker = fleet.start_worker(concurrency=2)
    with fleet.api.client() as http:
        response = http.post("/v1/jobs", json={"text": BOOK, "voice": VOICE, "callback_url": HOOK})
        assert response.status_code == 202, response.text
        book_id = response.json()["id"]
        start = time.monotonic()
        # Some units done, not all: then the whole worker dies at once.
        wait_until(lambda: 2 <= client.hlen(units.parts_key(book_id)) < count - 2, timeout=60,
                   interval=0.02)  # fmt: skip
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()
        kept = {int(i) for i in client.hkeys(units.parts_key(book_id))}
        fleet.start_worker(concurrency=2)
        final = fleet.wait_all_terminal(http, [book_id])[0]
    assert final["status"] == "succeeded"
    assert final["progress"]["pieces_done"] == final["progress"]["pieces_total"] == len(pieces)
    made = Counter(log.read_text().splitlines())
    groups = group_pieces(pieces, UNIT)
    # What a recorded part held was made once; only what the killed worker held is redone.
    for index in kept:
        assert all(made[piece] == 1 for piece in groups[index]), index
    assert set(made) == set(pieces)
    redone = sum(made.values()) - len(pieces)
    # One terminal event, one audio object: the parts were removed once joined.
    assert fleet.callback_events(book_id) == [f"msg_{book_id}_succeeded"]
    assert len(fleet.objects()) == 1
    print(
        f"\nbook of {len(pieces)} pieces in {count} units, worker SIGKILLed with "
        f"{len(kept)} parts recorded: {redone} pieces made twice, done in {elapsed(start)} s"
    )
