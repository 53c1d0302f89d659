"""`ttsfleet batch`: one job per line of a file, submitted in bulk, downloaded as they finish.

Outputs are named by line number (or the line's `"output"`), written whole (a temporary
file, then a rename), so a re-run skips exactly the lines whose audio is already there. Each
chunk carries an Idempotency-Key derived from its content, so a re-run after a crash
mid-submit within 24 h gets the same jobs back instead of making new ones.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.client import TERMINAL, ApiError, Client

CHUNK = 1000  # the API's batch limit
RETRYABLE = {"rate_limited", "quota_exceeded", "idempotency_in_flight", "unavailable"}


@dataclass(frozen=True)
class Line:
    number: int
    output: Path
    request: dict[str, Any]


def read_lines(path: Path, out_dir: Path, options: dict[str, Any]) -> list[Line]:
    """Plain text is one job per line; a line starting with `{` is a JSON job request, which
    may name its file in `"output"`. Blank lines are skipped; numbering counts every line."""
    lines = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not a JSON object: {exc}") from None
            if not isinstance(item, dict):
                raise SystemExit(f"{path}:{number}: not a JSON object")
        else:
            item = {"text": text}
        request = {**options, **item}
        fmt = request.get("format", "wav")
        # Telephony formats are WAV files (tasks.jobs.AudioFormat.extension).
        extension = "wav" if fmt in ("mulaw", "alaw") else fmt
        name = request.pop("output", None) or f"{number:06d}.{extension}"
        lines.append(Line(number, out_dir / Path(str(name)).name, request))
    return lines


def _submit_chunk(client: Client, chunk: list[Line]) -> list[dict[str, Any]]:
    requests = [line.request for line in chunk]
    canonical = json.dumps(requests, sort_keys=True, separators=(",", ":")).encode()
    key = "ttsfleet-batch-" + hashlib.sha256(canonical).hexdigest()
    while True:
        try:
            return client.submit_batch(requests, idempotency_key=key)
        except ApiError as exc:
            if exc.code not in RETRYABLE:
                raise
            time.sleep(exc.retry_after or 1.0)


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


def run_batch(
    client: Client, lines: list[Line], out_dir: Path, console: Console, poll_s: float = 0.5
) -> int:
    """Submit, follow and download; 0 when every line has its audio, 1 otherwise."""
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [line for line in lines if not line.output.exists()]
    skipped = len(lines) - len(todo)
    failed: list[tuple[Line, str]] = []
    done = 0
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("submitting", total=len(todo))
        waiting: dict[str, Line] = {}
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            for line, job in zip(chunk, _submit_chunk(client, chunk), strict=True):
                waiting[job["id"]] = line
        progress.update(bar, description="synthesizing")
        while waiting:
            for job_id, line in list(waiting.items()):
                job = client.get(job_id)
                if job["status"] not in TERMINAL:
                    continue
                del waiting[job_id]
                if job["status"] == "succeeded":
                    _write(line.output, client.download(job_id))
                    done += 1
                else:
                    error = job.get("error") or {}
                    failed.append((line, f"{job['status']}: {error.get('code', '')}"))
                progress.advance(bar)
            if waiting:
                time.sleep(poll_s)
    console.print(
        f"{done} written, {skipped} already in {out_dir}, {len(failed)} failed "
        f"(of {len(lines)} lines)"
    )
    for line, why in failed:
        console.print(f"  line {line.number} → {line.output.name}: {why}")
    return 1 if failed else 0
