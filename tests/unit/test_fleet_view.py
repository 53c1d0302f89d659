"""`ttsfleet fleet`'s arithmetic: durations and how many workers clear a backlog."""

from __future__ import annotations

import argparse

import pytest

from fleet.cli import parse_duration
from fleet.view import WorkerView, plan


def worker(model: str, rate: float) -> WorkerView:
    return WorkerView("n@h", model, "cpu", f"synth.{model}", 1, 0.0, 0, rate, 0, 0, 0.0, False)


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "10m", "2h")] == [90, 90, 600, 7200]
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        parse_duration("ten minutes")


def test_workers_needed_uses_the_mean_rate_of_the_models_workers() -> None:
    workers = [worker("a", 2.0), worker("a", 4.0), worker("b", 100.0)]
    # 3 jobs/s per worker, 600 s: one worker clears 1800 jobs.
    assert plan("a", 1800, workers, 600).workers_needed == 1
    assert plan("a", 1801, workers, 600).workers_needed == 2
    assert plan("a", 0, workers, 600).workers_needed == 0
    unknown = plan("c", 5, workers, 600)
    assert unknown.workers == 0 and unknown.workers_needed is None
