"""The batch collector as a pure function of a queue, a size and a wait; per-item failure."""

from __future__ import annotations

import queue
import threading

import pytest

from tasks.errors import EngineError, InvalidText
from tests.engines import RecordingEngine, SaturatingEngine, ShortCountEngine
from worker.batcher import Batcher, DirectSynthesizer, Item, collect, group, run_group
from worker.engines import Audio, SynthesisRequest


def items(*texts: str, speed: float = 1.0, voice: str = "v") -> list[Item]:
    return [Item(SynthesisRequest(text=t, voice=voice, speed=speed)) for t in texts]


def test_collect_takes_at_most_max_size() -> None:
    source: queue.Queue[Item] = queue.Queue()
    for item in items(*"abcdefg"):
        source.put(item)
    assert [i.request.text for i in collect(source, 4, 0.01)] == list("abcd")
    assert [i.request.text for i in collect(source, 4, 0.01)] == list("efg")


def test_collect_waits_no_longer_than_max_wait_for_more() -> None:
    now = [0.0]
    source: queue.Queue[Item] = queue.Queue()
    source.put(items("a")[0])
    batch = collect(source, 8, max_wait_s=0.0, clock=lambda: now[0])
    assert len(batch) == 1


def test_collect_returns_empty_when_idle() -> None:
    assert collect(queue.Queue(), 8, 0.01, poll_s=0.01) == []


def test_group_by_voice_and_speed_keeps_order() -> None:
    batch = items("a", "b") + items("c", speed=2.0) + items("d") + items("e", voice="w")
    assert [[i.request.text for i in g] for g in group(batch)] == [["a", "b", "d"], ["c"], ["e"]]


def test_bad_item_fails_alone_and_its_batch_mates_succeed() -> None:
    engine = RecordingEngine()
    batch = items("one", "BAD", "three")
    run_group(engine, batch)
    assert engine.batches == [["one", "BAD", "three"], ["one"], ["BAD"], ["three"]]
    assert batch[0].future.result().samples.size == 3
    assert isinstance(batch[1].future.exception(), InvalidText)
    assert batch[2].future.result().samples.size == 5


def test_direct_synthesizer_reports_errors_per_item() -> None:
    results = DirectSynthesizer(RecordingEngine(fail_with=RuntimeError)).synthesize(
        [SynthesisRequest("fine", "v"), SynthesisRequest("BAD", "v")]
    )
    assert isinstance(results[0], Audio)
    assert isinstance(results[1], EngineError) and "RuntimeError" in results[1].message


def test_batcher_batches_concurrent_submissions() -> None:
    engine = RecordingEngine()
    sizes: list[int] = []
    batcher = Batcher(engine, max_size=8, max_wait_s=0.2, on_batch=lambda n, _: sizes.append(n))
    barrier = threading.Barrier(8)
    results: list[object] = [None] * 8

    def submit(i: int) -> None:
        barrier.wait()
        results[i] = batcher.synthesize([SynthesisRequest(f"text {i}", "v")])[0]

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    batcher.stop()
    assert all(isinstance(r, Audio) for r in results)
    assert sum(sizes) == 8 and max(sizes) > 1


@pytest.mark.parametrize("count", [1, 3])
def test_engine_returning_wrong_count_fails_items_not_silently(count: int) -> None:
    batch = items(*["x"] * count)
    run_group(ShortCountEngine(), batch)
    assert all(item.future.exception() is not None for item in batch)


def test_autotune_caps_the_batch_at_the_knee(caplog: pytest.LogCaptureFixture) -> None:
    """An engine whose throughput stops growing past 4 items: the knee is 4."""
    from worker.batcher import find_knee

    engine = SaturatingEngine()
    caplog.set_level("INFO")
    knee = find_knee(engine, max_size=16, repeats=2, share=0.8, clock=engine.clock)
    assert knee == 4
    assert "batch size autotune" in caplog.text and "16:" in caplog.text


def test_a_failure_outside_the_engine_fails_the_batch_and_the_thread_lives_on() -> None:
    """A broken callback must not kill the batcher and leave task threads waiting forever."""
    calls: list[int] = []

    def explode(size: int, _: float) -> None:
        calls.append(size)
        if len(calls) == 1:
            raise RuntimeError("metrics backend down")

    batcher = Batcher(RecordingEngine(), max_size=4, max_wait_s=0.01, on_batch=explode)
    first = batcher.synthesize([SynthesisRequest("one", "v")])
    second = batcher.synthesize([SynthesisRequest("two", "v")])
    batcher.stop()
    # The first batch's audio was made before its callback blew up: it stands. The thread
    # survived and served the next batch.
    assert isinstance(first[0], Audio) and isinstance(second[0], Audio)
    assert calls == [1, 1]


def test_items_left_at_stop_are_answered_not_left_waiting() -> None:
    batcher = Batcher(RecordingEngine(), max_size=4, max_wait_s=0.01)
    batcher.stop()
    (future,) = batcher.submit([SynthesisRequest("too late", "v")])
    batcher.stop()
    assert isinstance(future.exception(timeout=1), EngineError)
