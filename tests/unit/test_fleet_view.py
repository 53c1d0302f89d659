"""`ttsfleet fleet`'s arithmetic: durations and how many workers clear a backlog."""

from __future__ import annotations

import argparse
import io
from dataclasses import asdict, replace

import pytest
from rich.console import Console

from fleet.cli import parse_duration
from fleet.view import WorkerView, plan, render


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


def screen(*nodes: str, width: int = 80) -> str:
    """`ttsfleet fleet`'s screen at `width` columns, one draining worker per node."""
    workers = [asdict(replace(worker("piper-joe", 3.21), node=n, draining=True)) for n in nodes]
    for w in workers:
        w.update(jobs_done=12345, in_flight=4)
    view = {"queues": [], "workers": workers, "models": []}
    out = io.StringIO()
    Console(file=out, width=width).print(render(view))
    return out.getvalue()


@pytest.mark.parametrize(
    "node",
    [
        "piper-joe-cpu@vm",
        "piper-joe-cpu@gpu-box-17",
        "piper-joe-cpu@ttsfleet-worker-cpu-7d9f8b6c5d-x2x9k",  # a Kubernetes pod
        "transformers-mms-tts-eng-cuda0@ip-10-0-12-34.eu-west-1.compute.internal",
    ],
)
def test_node_names_are_whole_at_80_columns(node: str) -> None:
    """`ttsfleet fleet drain NODE` needs the name: it stays on one line, nothing is cut."""
    text = screen(node)
    assert any(node in line for line in text.splitlines())
    assert "…" not in text and "12345" in text and "(draining)" in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80


def test_a_short_node_keeps_the_table_and_a_wide_screen_its_one_line_rows() -> None:
    narrow = screen("piper-joe-cpu@vm")
    assert "┃ node" in narrow and "│ piper-joe-cpu@vm" in narrow
    wide = screen("piper-joe-cpu@ttsfleet-worker-cpu-7d9f8b6c5d-x2x9k", width=200)
    assert "│ piper-joe-cpu@ttsfleet-worker-cpu-7d9f8b6c5d-x2x9k (draining) │ piper-joe" in wide


def test_a_node_name_wider_than_the_screen_folds_whole() -> None:
    node = "piper-joe-cpu@" + "x" * 100
    lines = screen(node).splitlines()
    assert node in "".join(line.rstrip() for line in lines)
    assert "…" not in "".join(lines)
