"""A hand-driven clock for code that takes `clock=` (reconciler, callback delivery)."""

from __future__ import annotations


class Clock:
    """Stands still until a test moves it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
