"""Tiny engines for fault tests, one behaviour each (cog's fixture models, in spirit).

A worker subprocess loads one with `TTSFLEET_MODELS='{"m": {"engine": "tests.engines:SlowEngine",
...}}'`. Each speaks a short tone for every text; its fault fires only on texts that contain
`options["trigger"]` (every text when the trigger is empty), so healthy jobs flow around it.
Option `batching` ("loop" or "padded") picks the worker's pool like a real engine would.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from tasks.settings import ModelSpec
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


_LEAKED: list[bytearray] = []


class LeakingEngine(ToneEngine):
    """Keeps `options["mb"]` MiB per request forever, touched so it counts in RSS."""

    def fault(self, request: SynthesisRequest) -> None:
        chunk = bytearray(int(float(self.options.get("mb", 8)) * 1024 * 1024))
        chunk[::4096] = b"\x01" * len(chunk[::4096])
        _LEAKED.append(chunk)
