"""The dispatcher on a real Redis with real Celery messages: order, priority, shallow
queues, canceled pending jobs, a crash mid-move, the lease."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
import redis
from kombu.exceptions import OperationalError

from scheduler.dispatcher import Dispatcher
from tasks import keys
from tasks.app import broker_lists
from tasks.app import create_app as create_celery
from tasks.settings import Settings
from tests.conftest import ApiServer, free_port, wait_until

MODEL = "piper-joe"


def queued_messages(client: redis.Redis) -> list[str]:
    """Job ids in the model's Celery lists, in the order a worker takes them."""
    ids = []
    for name in broker_lists(MODEL):  # priority lists, highest first; RPOP takes the tail
        for raw in reversed(client.lrange(name, 0, -1)):
            ids.append(json.loads(raw)["headers"]["id"])
    return ids


def dispatcher(settings: Settings, depth: int, broker: Settings | None = None) -> Dispatcher:
    return Dispatcher(
        redis.Redis.from_url(settings.redis_url, decode_responses=True),
        create_celery(broker or settings),
        [MODEL],
        depth,
    )


def submit(api: ApiServer, tenant: str, n: int, priority: str = "normal") -> list[str]:
    with api.client(tenant) as http:
        body = {"jobs": [{"text": f"{tenant} {i}.", "priority": priority} for i in range(n)]}
        return [job["id"] for job in http.post("/v1/jobs/batch", json=body).json()["jobs"]]


def test_tenants_take_turns_and_the_queue_stays_shallow(
    start_api: Callable[..., ApiServer], settings: Settings, redis_client: redis.Redis
) -> None:
    api = start_api(settings, dispatch=False)
    a = submit(api, "acme", 50)
    g = submit(api, "globex", 2)
    moved = dispatcher(settings, depth=4).dispatch_once()
    assert moved == 4
    assert queued_messages(redis_client) == [a[0], g[0], a[1], g[1]]
    assert dispatcher(settings, depth=4).dispatch_once() == 0  # full: nothing more
    for name in broker_lists(MODEL):
        redis_client.delete(name)  # a worker took them
    assert dispatcher(settings, depth=4).dispatch_once() == 4
    assert queued_messages(redis_client) == a[2:6]
    assert redis_client.hlen(keys.dispatching_key(MODEL)) == 0
    # The ring holds only tenants with pending jobs.
    assert redis_client.lrange(keys.pending_tenants_key(MODEL, "normal"), 0, -1) == ["acme"]


def test_higher_priority_goes_first_and_canceled_jobs_are_dropped(
    start_api: Callable[..., ApiServer], settings: Settings, redis_client: redis.Redis
) -> None:
    api = start_api(settings, dispatch=False)
    low = submit(api, "acme", 2, "low")
    normal = submit(api, "acme", 2)
    high = submit(api, "globex", 1, "high")
    with api.client("acme") as http:
        http.post(f"/v1/jobs/{normal[0]}/cancel")
    assert dispatcher(settings, depth=10).dispatch_once() == 4
    assert queued_messages(redis_client) == [high[0], normal[1], *low]


def test_a_crash_between_take_and_send_loses_nothing(
    start_api: Callable[..., ApiServer],
    settings: Settings,
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
) -> None:
    """The first dispatcher takes jobs but cannot send (its broker is gone, as good as
    dead mid-move); the next one sends them on start-up."""
    api = start_api(settings, dispatch=False)
    ids = submit(api, "acme", 3)
    dead = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    broken = dispatcher(settings, depth=10, broker=dead)
    broken._celery.conf.broker_connection_retry = False
    broken._celery.conf.broker_connection_max_retries = 0
    with pytest.raises(OperationalError):
        broken.dispatch_once()
    assert set(redis_client.hkeys(keys.dispatching_key(MODEL))) == set(ids)
    assert queued_messages(redis_client) == []
    successor = dispatcher(settings, depth=10)
    assert successor.recover() == 3
    assert sorted(queued_messages(redis_client)) == sorted(ids)
    assert redis_client.hlen(keys.dispatching_key(MODEL)) == 0


def test_only_one_dispatcher_holds_the_lease(settings: Settings, redis_client: redis.Redis) -> None:
    first, second = dispatcher(settings, 4), dispatcher(settings, 4)
    assert first.hold_lease() and first.hold_lease()
    assert not second.hold_lease()
    first.release_lease()
    assert second.hold_lease()


class Waits(threading.Event):
    """The dispatcher's stop event, recording each idle wait instead of sleeping; `then`
    runs after the given wait (by its index), and it stops the loop after `count`."""

    def __init__(self, count: int, then: dict[int, Callable[[], object]]) -> None:
        super().__init__()
        self.waits: list[float] = []
        self._count = count
        self._then = then

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        if (action := self._then.get(len(self.waits) - 1)) is not None:
            action()
        if len(self.waits) >= self._count:
            self.set()
        return self.is_set()


def test_an_idle_dispatcher_polls_less_and_less_until_work_arrives(
    start_api: Callable[..., ApiServer], settings: Settings, redis_client: redis.Redis
) -> None:
    api = start_api(settings, dispatch=False)
    stop = Waits(10, {5: lambda: submit(api, "acme", 1)})
    dispatcher(settings, depth=4).run(stop, idle_s=0.01, max_idle_s=0.08, wake_on_work=False)
    # Empty passes double the wait up to its cap; the pass that sends resets it.
    assert stop.waits == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08, 0.01, 0.02, 0.04, 0.08]
    assert len(queued_messages(redis_client)) == 1


def test_new_work_wakes_an_idle_dispatcher_at_once(
    start_api: Callable[..., ApiServer], settings: Settings, redis_client: redis.Redis
) -> None:
    """Polling alone would move the job after up to 30 s here: the admission's wake-up
    (keys.DISPATCH_WAKE_CHANNEL) moves it at once."""
    api = start_api(settings, dispatch=False)
    stop = threading.Event()
    idle = dispatcher(settings, depth=4)
    thread = threading.Thread(target=idle.run, args=(stop, 30.0, 30.0))
    thread.start()
    try:
        wait_until(lambda: redis_client.pubsub_numsub(keys.DISPATCH_WAKE_CHANNEL)[0][1] == 1)
        time.sleep(0.2)  # past its first empty pass: now it waits 30 s
        submit(api, "acme", 1)
        wait_until(lambda: len(queued_messages(redis_client)) == 1, timeout=10)
    finally:
        stop.set()
        redis_client.publish(keys.DISPATCH_WAKE_CHANNEL, "1")
        thread.join(35)
    assert not thread.is_alive()


def test_the_scripts_that_fill_pending_lists_publish_the_wake_channel() -> None:
    from tasks import scripts

    spelled = f"'PUBLISH', '{keys.DISPATCH_WAKE_CHANNEL}'"
    assert spelled in scripts.read("api", "admit") and spelled in scripts.read("tasks", "fan_out")
