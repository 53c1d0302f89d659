"""Micro-batching: collect queued synthesis items, run one engine call per compatible group.

Each job stays an ordinary Celery task (its own ack, retry and record) running in a
threads-pool thread; the task hands its items to the one `Batcher` thread of the process
and waits on futures (the pattern of Ray Serve's `@serve.batch`). Measured in FINDINGS.md:
15 → 103 jobs/s for a GPU-like engine. celery-batches was not used: it pins Celery < 5.7,
acks every request even when the batch raises, and has no per-request retry, which would
break DESIGN §6.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tasks import logs
from tasks.errors import EngineError, FleetError, PermanentError
from worker.engines import Audio, Engine, SynthesisRequest

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One request waiting for its audio."""

    request: SynthesisRequest
    future: Future[Audio] = field(default_factory=Future)
    # The submitting thread's log fields: context variables do not cross to the batcher.
    context: dict[str, Any] = field(default_factory=logs.current)


def collect(
    source: queue.Queue[Item],
    max_size: int,
    max_wait_s: float,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> list[Item]:
    """Up to `max_size` items: block (up to `poll_s`) for the first, then take what arrives
    within `max_wait_s` of it. Returns [] if nothing came within `poll_s`."""
    try:
        batch = [source.get(timeout=poll_s)]
    except queue.Empty:
        return []
    deadline = clock() + max_wait_s
    while len(batch) < max_size:
        remaining = deadline - clock()
        try:
            batch.append(source.get(timeout=remaining) if remaining > 0 else source.get_nowait())
        except queue.Empty:
            break
    return batch


def group(batch: Sequence[Item]) -> list[list[Item]]:
    """Compatible items share one forward pass: same voice, same speed. Order is kept."""
    groups: dict[tuple[str, float], list[Item]] = {}
    for item in batch:
        groups.setdefault((item.request.voice, item.request.speed), []).append(item)
    return list(groups.values())


def run_group(engine: Engine, items: Sequence[Item]) -> None:
    """One engine call for the group; if it fails, each item alone, so one bad text fails
    alone and its batch-mates still get their audio."""
    try:
        outputs = engine.synthesize([item.request for item in items])
        if len(outputs) != len(items):
            raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(items)} inputs")
    except Exception as exc:
        if len(items) == 1:
            items[0].future.set_exception(exc)
            return
        if not isinstance(exc, PermanentError):
            log.warning("batch of %d failed (%s); retrying its items alone", len(items), exc)
        for item in items:
            run_group(engine, [item])
        return
    for item, audio in zip(items, outputs, strict=True):
        item.future.set_result(audio)


class Batcher:
    """The process's batching thread: `submit` from any thread, results come as futures."""

    def __init__(
        self,
        engine: Engine,
        max_size: int,
        max_wait_s: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[Item] = queue.Queue()
        self._on_batch = on_batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ttsfleet-batcher", daemon=True)
        self._thread.start()

    def submit(self, requests: Sequence[SynthesisRequest]) -> list[Future[Audio]]:
        items = [Item(request) for request in requests]
        for item in items:
            self._queue.put(item)
        return [item.future for item in items]

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio | FleetError]:
        """Blocking: each request's audio, or the error that item alone raised."""
        return [_result(future) for future in self.submit(requests)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        # Whoever still waits gets an answer: the job is retried, not left hanging.
        while not self._queue.empty():
            _abandon([self._queue.get_nowait()], EngineError("the worker is shutting down"))

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = collect(self._queue, self.max_size, self.max_wait_s)
            if not batch:
                continue
            try:
                with logs.bound(**logs.batch_fields([item.context for item in batch])):
                    started = time.perf_counter()
                    for items in group(batch):
                        run_group(self.engine, items)
                    if self._on_batch is not None:
                        self._on_batch(len(batch), time.perf_counter() - started)
            except BaseException as exc:
                # This thread serves every task thread of the process: it must not die, and
                # no future of the batch may stay open (its job would hang in `running`).
                log.exception("batch failed outside the engine")
                _abandon(batch, EngineError(f"{type(exc).__name__}: {exc}"))
                if not isinstance(exc, Exception):
                    raise


def _abandon(items: Sequence[Item], error: Exception) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)


class DirectSynthesizer:
    """The same contract without a thread, for processes that run one job at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio | FleetError]:
        items = [Item(request) for request in requests]
        for items_group in group(items):
            run_group(self.engine, items_group)
        return [_result(item.future) for item in items]


def _result(future: Future[Audio]) -> Audio | FleetError:
    exc = future.exception()
    if exc is None:
        return future.result()
    if isinstance(exc, FleetError):
        return exc
    return EngineError(f"{type(exc).__name__}: {exc}")


KNEE_SENTENCE = "The meeting has been moved to half past three in the small conference room."


def find_knee(
    engine: Engine,
    max_size: int,
    repeats: int = 2,
    share: float = 0.9,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Time batch sizes 1, 2, 4, ... up to `max_size` on this engine and device, log the
    table, and return the smallest size reaching `share` of the best items per second:
    past it, bigger batches add latency without adding throughput."""
    sizes = []
    size = 1
    while size < max_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_size)
    rates: dict[int, float] = {}
    for size in sizes:
        batch = [SynthesisRequest(text=KNEE_SENTENCE, voice="")] * size
        engine.synthesize(batch)  # warm this shape
        started = clock()
        for _ in range(repeats):
            engine.synthesize(batch)
        rates[size] = size * repeats / (clock() - started)
    knee = knee_of(rates, share)
    table = "  ".join(f"{size}: {rate:.1f}/s" for size, rate in rates.items())
    log.info("batch size autotune (items/s): %s -> max batch %d", table, knee)
    return knee


def knee_of(rates: dict[int, float], share: float = 0.9) -> int:
    """The smallest batch size whose rate reaches `share` of the best rate."""
    best = max(rates.values())
    return min(size for size, rate in rates.items() if rate >= share * best)
