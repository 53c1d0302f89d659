"""Every fake engine of the test suite, one behaviour each (cog's fixture models, in spirit).

Two families. Worker-process engines (`ToneEngine` and its faults) are built from a
`ModelSpec`: a worker subprocess loads one with `TTSFLEET_MODELS='{"m": {"engine": "tests.engines:SlowEngine",
...}}'`. Each speaks a short tone for every text; its fault fires only on texts that contain
`options["trigger"]` (every text when the trigger is empty), so healthy jobs flow around it.
Option `batching` ("loop" or "padded") picks the worker's pool like a real engine would.

In-process engines (`HalfSecondEngine`, `RecordingEngine` and their variants) take plain
arguments and are handed straight to a runner, batcher or metrics wrapper in the test's
own process; they record what they were asked so tests can assert on it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from tasks.errors import InvalidText
from tasks.settings import ModelSpec
from tasks.store import JobStore
from worker.engines import Audio, Batching, SynthesisRequest

RATE = 16000


class ToneEngine:
    """A healthy engine: 0.2 s of a 440 Hz tone per request."""

    def __init__(self, spec: ModelSpec) -> None:
        self.options = spec.options
        self.trigger = str(spec.options.get("trigger", ""))

    @property
    def batching(self) -> Batching:
        return Batching(self.options.get("batching", "loop"))

    @property
    def version(self) -> str:
        return f"{type(self).__name__}-1"

    def load(self, device: str) -> None:
        self.device = device

    def triggered(self, request: SynthesisRequest) -> bool:
        return self.trigger in request.text

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        for request in batch:
            if self.triggered(request):
                self.fault(request)
        return [_tone(r.speed) for r in batch]

    def fault(self, request: SynthesisRequest) -> None:
        """What this engine does wrong; the healthy engine does nothing."""


def _tone(speed: float) -> Audio:
    t = np.arange(int(0.2 * RATE / speed), dtype=np.float32) / RATE
    return Audio(samples=(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate=RATE)


class RaisingEngine(ToneEngine):
    """Raises an unexpected exception: the job is retried, then fails `engine_error`."""

    def fault(self, request: SynthesisRequest) -> None:
        raise RuntimeError(f"engine_raises on {request.text!r}")


class ExitingEngine(ToneEngine):
    """Kills its own process mid-job (a segfaulting native library): `worker_lost` at last."""

    def fault(self, request: SynthesisRequest) -> None:
        os._exit(17)


class SlowEngine(ToneEngine):
    """Takes `options["seconds"]` per request, long enough to be killed mid-job. With
    `options["runs_dir"]`, it also catches two runs of one text at the same time: while a
    batch runs it holds an flock on a file named for each of its texts (the kernel drops
    them when the process dies, so a killed run never looks alive), and a batch that finds
    one taken writes that text to `parallel.log` there. The whole batch holds them, so a
    worker that synthesizes its batch one request after another still shows an overlap."""

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        with _sole_runs(self.options.get("runs_dir"), {r.text for r in batch}):
            return super().synthesize(batch)

    def fault(self, request: SynthesisRequest) -> None:
        time.sleep(float(self.options.get("seconds", 1.0)))


@contextmanager
def _sole_runs(runs_dir: str | None, texts: set[str]) -> Iterator[None]:
    if not runs_dir:
        yield
        return
    with ExitStack() as locks:
        for text in sorted(texts):
            name = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
            lock = locks.enter_context(open(Path(runs_dir) / f"{name}.lock", "a"))
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                with open(Path(runs_dir) / "parallel.log", "a") as log:
                    log.write(f"{text}\n")
        yield  # closing the files drops the locks


def _text_tone(text: str, rate: int = RATE) -> Audio:
    """Audio that depends on the text (its length and pitch), so pieces cannot be mixed up
    unnoticed: about 4 ms per character of a tone between 200 and 800 Hz."""
    pitch = 200 + zlib_crc(text) % 600
    t = np.arange(rate // 50 + 64 * len(text), dtype=np.float32) / rate
    return Audio(samples=(0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), sample_rate=rate)


def zlib_crc(text: str) -> int:
    return zlib.crc32(text.encode())


class TextToneEngine(ToneEngine):
    """A tone that depends on each text (`_text_tone`), taking `options["seconds"]` (default
    0) per request. With `options["log"]`, every text it synthesizes is appended to that file
    (one line each, O_APPEND), so a test counts what was made across worker processes."""

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        log_path = self.options.get("log")
        out = []
        for request in batch:
            time.sleep(float(self.options.get("seconds", 0)))
            out.append(_text_tone(request.text))
            if log_path:
                with open(log_path, "a") as log:
                    log.write(request.text.replace("\n", " ") + "\n")
        return out


_LEAKED: list[bytearray] = []


class LeakingEngine(ToneEngine):
    """Keeps `options["mb"]` MiB per request forever, touched so it counts in RSS."""

    def fault(self, request: SynthesisRequest) -> None:
        chunk = bytearray(int(float(self.options.get("mb", 8)) * 1024 * 1024))
        chunk[::4096] = b"\x01" * len(chunk[::4096])
        _LEAKED.append(chunk)


# In-process engines.


class HalfSecondEngine:
    """Healthy: half a second of a steady 0.25 signal per request at 16 kHz. Counts its
    batches (`calls`) and keeps every text it was asked for (`texts`)."""

    batching = Batching.PADDED
    version = "test"

    def __init__(self) -> None:
        self.calls = 0
        self.texts: list[str] = []

    def load(self, device: str) -> None: ...

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        self.calls += 1
        self.texts += [r.text for r in batch]
        return [
            Audio(samples=np.full(8000, 0.25, dtype=np.float32), sample_rate=16000) for _ in batch
        ]


class TextEngine(HalfSecondEngine):
    """Healthy, in-process: each text's own tone (`_text_tone`); counts like its parent."""

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        self.calls += 1
        self.texts += [r.text for r in batch]
        return [_text_tone(r.text) for r in batch]


class CrashingEngine(HalfSecondEngine):
    """Every batch raises an unexpected error (a CUDA fault): retried, then `engine_error`."""

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        self.calls += 1
        raise RuntimeError("CUDA error: an illegal memory access")


class RejectingEngine(HalfSecondEngine):
    """Rejects a batch as unpronounceable (`InvalidText`): every batch, or with `text`
    only a batch holding exactly that text."""

    def __init__(self, text: str | None = None) -> None:
        super().__init__()
        self.text = text

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        if self.text is None or any(r.text == self.text for r in batch):
            self.calls += 1
            raise InvalidText("nothing to pronounce")
        return super().synthesize(batch)


class CancelingEngine(HalfSecondEngine):
    """Cancels its own job while 'synthesizing', as a client racing the worker would."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        super().__init__()
        self.store, self.job_id = store, job_id

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        self.store.cancel(self.job_id)
        return super().synthesize(batch)


class DelayedEngine(HalfSecondEngine):
    """Healthy but takes `seconds` per batch, so two requests overlap in flight."""

    def __init__(self, seconds: float = 0.3) -> None:
        super().__init__()
        self.seconds = seconds

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        time.sleep(self.seconds)
        return super().synthesize(batch)


class RecordingEngine:
    """Records each batch's texts and returns len(text) samples per item; a text holding
    BAD makes the whole batch raise `fail_with` (the batcher then splits it)."""

    batching = Batching.PADDED
    version = "test"

    def __init__(self, fail_with: type[Exception] = InvalidText) -> None:
        self.batches: list[list[str]] = []
        self.fail_with = fail_with
        self.lock = threading.Lock()

    def load(self, device: str) -> None: ...

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        with self.lock:
            self.batches.append([r.text for r in batch])
        if any("BAD" in r.text for r in batch):
            raise self.fail_with("cannot say that")
        return [Audio(np.full(len(r.text), 0.1, np.float32), 16000) for r in batch]


class ShortCountEngine(RecordingEngine):
    """Returns one audio fewer than it was asked for."""

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        return super().synthesize(batch)[:-1]


class SaturatingEngine(RecordingEngine):
    """Throughput stops growing past 4 items: a fixed cost up to 4, linear after. Its time
    passes on its own clock (`clock`), so what it measures does not depend on the box."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        self.now += 0.002 * max(len(batch), 4)
        return super().synthesize(batch)


class LoggingEngine:
    """Logs once per batch (from whatever thread runs it) and returns a little silence."""

    batching = Batching.PADDED
    version = "test"

    def load(self, device: str) -> None: ...

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        logging.getLogger("test.engine").info("synthesizing %d", len(batch))
        return [Audio(np.zeros(10, np.float32), 16000) for _ in batch]
