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

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.client import TERMINAL, ApiError, Client

CHUNK = 1000  # the API's batch limit
RETRYABLE = {"rate_limited", "quota_exceeded", "idempotency_in_flight", "unavailable"}


class BatchFileError(Exception):
    """The batch file cannot be read, or a line of it is no job request. Raised while the
    file is read, before anything is submitted."""

    code = "invalid_batch_file"


@dataclass(frozen=True)
class Line:
    number: int
    output: Path
    request: dict[str, Any]


def _text_of(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BatchFileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise BatchFileError(f"{path}: {exc.strerror or exc}") from None


def read_lines(path: Path, out_dir: Path, options: dict[str, Any]) -> list[Line]:
    """Plain text is one job per line; a line starting with `{` is a JSON job request, which
    may name its file in `"output"`. Blank lines are skipped; numbering counts every line.
    The whole file is read first, so a bad line is found before any job is submitted."""
    lines = []
    for number, raw in enumerate(_text_of(path).splitlines(), 1):
        text = raw.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                raise BatchFileError(f"{path}:{number}: not a JSON object: {exc}") from None
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


def _submit_all(client: Client, todo: list[Line], chunk: int, console: Console) -> dict[str, Line]:
    """Each line's job id, submitted `chunk` lines per call. A call that fails stops the
    batch, but the calls before it made jobs that run on: say which, then raise."""
    waiting: dict[str, Line] = {}
    for start in range(0, len(todo), chunk):
        lines = todo[start : start + chunk]
        try:
            jobs = _submit_chunk(client, lines)
        except (ApiError, httpx.TransportError) as exc:
            console.print(_stopped(todo[:start], lines, exc))
            raise
        waiting.update((job["id"], line) for line, job in zip(lines, jobs, strict=True))
    return waiting


def _stopped(submitted: list[Line], refused: list[Line], exc: Exception) -> str:
    """Where a batch stopped submitting, and what it had submitted by then."""
    index = exc.index if isinstance(exc, ApiError) else None
    if index is not None and 0 <= index < len(refused):
        where = f"line {refused[index].number} was refused"
    else:
        where = f"lines {refused[0].number} to {refused[-1].number} were not submitted"
    if not submitted:
        return f"{where}; nothing was submitted"
    return (
        f"{where}; the {len(submitted)} lines before it (up to line {submitted[-1].number}) "
        "were submitted and their jobs run: run the batch again within 24 h, once fixed, "
        "and it picks up those jobs (the same Idempotency-Key) instead of making new ones"
    )


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


def run_batch(
    client: Client,
    lines: list[Line],
    out_dir: Path,
    console: Console,
    poll_s: float = 0.5,
    chunk: int = CHUNK,
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
        waiting = _submit_all(client, todo, chunk, console)
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
