"""`ttsfleet fleet`: queues, workers and how many workers would clear the backlog, on one
screen (or as JSON); `ttsfleet fleet drain NODE` takes one worker out gracefully.

Reads Redis directly (an operator's tool, next to the broker): the backlog from
`tasks.backlog`, the workers from their heartbeat hashes (`worker.heartbeat` says why a
hash rather than a Celery broadcast). Draining needs the worker itself, so it goes
through Celery's remote control.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis
from celery import Celery
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, JustifyMethod, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from tasks import keys
from tasks.backlog import read_backlog


@dataclass(frozen=True)
class WorkerView:
    node: str
    model: str
    device: str
    queue: str
    pid: int
    started: float
    jobs_done: int
    jobs_per_s: float
    in_flight: int
    recycles: int
    last_beat_s: float  # seconds since its last heartbeat
    draining: bool  # `fleet drain` told it to stop consuming


@dataclass(frozen=True)
class QueueView:
    queue: str
    model: str
    pending: int
    queued: int
    depth: int
    oldest_age_s: float | None
    in_flight: int


@dataclass(frozen=True)
class ModelPlan:
    """How many workers would clear this model's backlog within `drain_s` at the rate its
    workers did over the last minute (None: no worker measured a rate yet)."""

    model: str
    backlog: int
    workers: int
    jobs_per_s_per_worker: float | None
    workers_needed: int | None
    drain_s: float


def read_workers(client: redis.Redis, now: float | None = None) -> list[WorkerView]:
    """Workers with a live heartbeat; index entries whose hash expired are pruned."""
    now = time.time() if now is None else now
    nodes = [_text(n) for n in cast(list[Any], client.zrange(keys.WORKERS, 0, -1))]
    pipe = client.pipeline(transaction=False)
    for node in nodes:
        pipe.hgetall(keys.worker_key(node))
    workers, gone = [], []
    for node, raw in zip(nodes, pipe.execute(), strict=True):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if "model" not in fields:
            gone.append(node)
            continue
        workers.append(
            WorkerView(
                node=node,
                model=fields["model"],
                device=fields.get("device", ""),
                queue=fields.get("queue", keys.synth_queue(fields["model"])),
                pid=int(fields.get("pid", 0)),
                started=float(fields.get("started", 0)),
                jobs_done=int(fields.get("jobs_done", 0)),
                jobs_per_s=float(fields.get("jobs_per_s", 0)),
                in_flight=int(fields.get("in_flight", 0)),
                recycles=int(fields.get("recycles", 0)),
                last_beat_s=max(0.0, now - float(fields.get("beat", now))),
                draining=fields.get("draining") == "1",
            )
        )
    if gone:
        client.zrem(keys.WORKERS, *gone)
    return sorted(workers, key=lambda w: (w.model, w.node))


def plan(model: str, backlog: int, workers: Iterable[WorkerView], drain_s: float) -> ModelPlan:
    mine = [w for w in workers if w.model == model]
    rates = [w.jobs_per_s for w in mine if w.jobs_per_s > 0]
    rate = sum(rates) / len(rates) if rates else None
    if backlog == 0:
        needed: int | None = 0
    elif rate is None:
        needed = None
    else:
        needed = max(1, math.ceil(backlog / (rate * drain_s)))
    return ModelPlan(model, backlog, len(mine), rate, needed, drain_s)


def snapshot(
    client: redis.Redis, models: Iterable[str], drain_s: float, now: float | None = None
) -> dict[str, Any]:
    """Everything the screen shows, as plain data (`--json` prints it)."""
    now = time.time() if now is None else now
    workers = read_workers(client, now)
    queues, plans = [], []
    for model in models:
        backlog = read_backlog(client, model, now)
        in_flight = sum(w.in_flight for w in workers if w.model == model)
        queues.append(
            QueueView(
                backlog.queue,
                model,
                backlog.pending,
                backlog.queued,
                backlog.depth,
                backlog.oldest_age_s,
                in_flight,
            )
        )
        plans.append(plan(model, backlog.depth + in_flight, workers, drain_s))
    return {
        "time": now,
        "queues": [asdict(q) for q in queues],
        "workers": [asdict(w) for w in workers],
        "models": [asdict(p) for p in plans],
    }


def render(view: dict[str, Any]) -> Group:
    queues = Table(title="queues", title_justify="left")
    for column in ("queue", "waiting", "pending", "queued", "oldest", "in flight"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for q in view["queues"]:
        queues.add_row(
            q["queue"],
            str(q["depth"]),
            str(q["pending"]),
            str(q["queued"]),
            _age(q["oldest_age_s"]),
            str(q["in_flight"]),
        )
    models = Table(title="workers to clear the backlog", title_justify="left")
    for column in ("model", "backlog", "workers", "jobs/s per worker", "needed"):
        models.add_column(column, justify="left" if column == "model" else "right")
    for p in view["models"]:
        rate = p["jobs_per_s_per_worker"]
        needed = p["workers_needed"]
        models.add_row(
            p["model"],
            str(p["backlog"]),
            str(p["workers"]),
            "-" if rate is None else f"{rate:.2f}",
            ("?" if needed is None else str(needed)) + f" for {_age(p['drain_s'])}",
        )
    return Group(queues, Workers(view["workers"]), models)


NO_WORKERS = "(no worker has a heartbeat)"
WORKER_COLUMNS = ("node", "model", "device", "jobs/s (1 min)", "done", "in flight", "recycles")


class Workers:
    """The workers table at the console's width, with every node name whole: `ttsfleet fleet
    drain NODE` needs it. Columns narrow down to their longest word (rich would cut the
    widest column first, the node's); where even that does not fit, one block per worker,
    its node on a line of its own."""

    def __init__(self, workers: list[dict[str, Any]]) -> None:
        self.rows = [
            [
                w["node"] + (" (draining)" if w["draining"] else ""),
                w["model"],
                w["device"],
                f"{w['jobs_per_s']:.2f}",
                str(w["jobs_done"]),
                str(w["in_flight"]),
                str(w["recycles"]),
            ]
            for w in workers
        ]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows = self.rows or [[NO_WORKERS, "", "", "", "", "", ""]]
        widths = fitted_widths([list(WORKER_COLUMNS), *rows], options.max_width)
        if widths is None:
            yield Text("workers", style="table.title")
            if not self.rows:
                yield Text(NO_WORKERS)
            for node, model, device, rate, done, in_flight, recycles in self.rows:
                # A name wider than the screen folds onto the next line, whole.
                yield Text(node, overflow="fold")
                yield Padding(
                    f"{model} on {device}: {rate} jobs/s (1 min), {done} done, "
                    f"{in_flight} in flight, {recycles} recycles",
                    (0, 0, 0, 2),
                )
            return
        table = Table(title="workers", title_justify="left")
        for column, width in zip(WORKER_COLUMNS, widths, strict=True):
            justify: JustifyMethod = "left" if column in ("node", "model") else "right"
            table.add_column(column, justify=justify, width=width)
        for row in rows:
            table.add_row(*row)
        yield table


def fitted_widths(rows: list[list[str]], max_width: int) -> list[int] | None:
    """Widths of a table's columns (cell text only) within `max_width` that cut no word:
    each column gets its longest word, then, left to right, its longest line while room
    lasts. None when the longest words alone do not fit."""
    columns = list(zip(*rows, strict=True))
    least = [
        max((cell_len(w) for text in column for w in text.split()), default=1) for column in columns
    ]
    full = [max(cell_len(text) for text in column) for column in columns]
    # rich's default box: a border left of each column and at the end, a space either side.
    room = max_width - (3 * len(columns) + 1)
    spare = room - sum(least)
    if spare < 0:
        return None
    widths = []
    for shortest, longest in zip(least, full, strict=True):
        grow = min(longest - shortest, spare)
        spare -= grow
        widths.append(shortest + grow)
    return widths


class DrainError(Exception):
    pass


def drain(
    celery: Celery,
    client: redis.Redis,
    node: str,
    timeout_s: float = 600.0,
    say: Callable[[str], None] = print,
) -> None:
    """Stop `node` consuming its queue, let the jobs it holds finish, then shut it down
    (a warm shutdown: anything it prefetched but did not start goes back to the queue)."""
    fields = {_text(k): _text(v) for k, v in client.hgetall(keys.worker_key(node)).items()}
    queue = fields.get("queue")
    if queue is None:
        raise DrainError(f"no worker {node!r} has a heartbeat (see `ttsfleet fleet`)")
    replies = celery.control.cancel_consumer(queue, destination=[node], reply=True, timeout=5)
    if not replies:
        raise DrainError(f"{node} did not answer cancel_consumer")
    client.hset(keys.worker_key(node), "draining", 1)
    say(f"{node}: no longer consuming {queue}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        active = celery.control.inspect([node], timeout=2).active() or {}
        if not active.get(node):
            break
        say(f"{node}: waiting for {len(active[node])} job(s) in hand")
        time.sleep(1.0)
    else:
        raise DrainError(f"{node} still had jobs after {timeout_s:.0f} s; it is not consuming")
    celery.control.shutdown(destination=[node])
    say(f"{node}: shutting down")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
