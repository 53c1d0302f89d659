"""The engine contract and the registry of engine families.

A new model family is one new module here with a class that satisfies `Engine`, named
in `ENGINES`; modules are imported only when a worker serves a model of that family.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tasks.settings import ModelSpec


@dataclass(frozen=True)
class SynthesisRequest:
    """One item of a batch: what to say, in which voice, how fast."""

    text: str
    voice: str
    speed: float = 1.0


@dataclass(frozen=True)
class Word:
    """When a word of the request is spoken, in seconds from the start of its audio."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1] at the engine's native rate; `words` when the engine
    knows its durations (VITS predicts one per token), None when it does not."""

    samples: npt.NDArray[np.float32]
    sample_rate: int
    words: tuple[Word, ...] | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


class Batching(StrEnum):
    """How an engine runs a batch best on its device; the worker's pool follows it."""

    # One forward pass over padded inputs: pays on GPUs. Worker: threads pool + batcher.
    PADDED = "padded"
    # Item by item (padding costs more than it saves, or lengths are not recoverable).
    # Worker: one single-threaded process per core.
    LOOP = "loop"


class Engine(Protocol):
    """A loaded model that turns a batch of compatible requests into audio, in order."""

    @property
    def batching(self) -> Batching:
        """Decided per device at load time."""
        ...

    @property
    def version(self) -> str:
        """Changes whenever the weights or output-affecting options change (cache key)."""
        ...

    def load(self, device: str) -> None:
        """Load weights onto `device` and warm up; called in the process that synthesizes."""
        ...

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        """One output per input, trimmed to its true length. Raises InvalidText for text
        the model cannot speak."""
        ...


ENGINES: dict[str, str] = {
    "piper": "worker.engines.piper:PiperEngine",
    "transformers": "worker.engines.transformers:TransformersEngine",
}


def build_engine(spec: ModelSpec) -> Engine:
    """Instantiate (not load) the engine a model spec names."""
    target = ENGINES.get(spec.engine) or (spec.engine if ":" in spec.engine else None)
    if target is None:
        raise ValueError(
            f"unknown engine {spec.engine!r}; known: {', '.join(sorted(ENGINES))}, "
            "or a dotted module:Class"
        )
    module_name, _, class_name = target.partition(":")
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    engine: Engine = cls(spec)
    return engine
