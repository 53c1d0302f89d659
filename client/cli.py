"""ttsfleet: turn text into speech on a ttsfleet fleet.

The user verbs talk to the API (TTSFLEET_API_URL and TTSFLEET_API_KEY, or the
.ttsfleet/env file that `make up` writes). With the server installed (ttsfleet[server]),
the same command also runs the fleet: up, api, worker, dispatcher, callbacks, fleet, health.

Exit codes: 0 done; 1 a job failed or was canceled; 2 usage error; 3 the API refused the
request; 4 the API could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from client.client import ApiError, Client, NotConfigured

FORMATS = {
    ".wav": "wav",
    ".flac": "flac",
    ".ogg": "ogg",
    ".mp3": "mp3",
    ".opus": "opus",
    ".aac": "aac",
    ".pcm": "pcm",
    ".raw": "pcm",
}

RET_OK, RET_JOB_FAILED, RET_USAGE, RET_API, RET_UNREACHABLE = 0, 1, 2, 3, 4

# Registrars of the server's verbs (`fleet.cli:register`), found through this entry-point
# group so that the client never imports the server: with the client alone, none load.
VERB_GROUP = "ttsfleet.commands"
SERVER_VERBS = ("up", "api", "worker", "dispatcher", "callbacks", "fleet", "health")

Registrar = Callable[[Any], None]


class UsageError(Exception):
    """Input refused before the API is asked anything: one line, exit 2."""


def output_format(output: Path, explicit: str | None) -> str:
    """The format of `-o FILE`: `--format`, else FILE's extension (none: wav); an unknown
    extension is refused rather than guessed, since the file would not be what it says."""
    suffix = output.suffix.lower()
    if explicit or not suffix:
        return explicit or "wav"
    if suffix not in FORMATS:
        raise UsageError(
            f"-o {output}: no format has the extension {suffix!r}; use one of "
            f"{', '.join(sorted(FORMATS))}, or name the format with --format"
        )
    return FORMATS[suffix]


def cmd_say(args: argparse.Namespace) -> int:
    from rich.console import Console

    output = Path(args.output)
    fmt = output_format(output, args.format)
    if not output.parent.is_dir():
        raise UsageError(f"-o {output}: there is no folder {output.parent}")
    options: dict[str, Any] = {"format": fmt, "speed": args.speed}
    if args.voice:
        options["voice"] = args.voice
    if args.sample_rate:
        options["sample_rate"] = args.sample_rate
    if args.loudness is not None:
        options["loudness_lufs"] = args.loudness
    with Client.from_env() as client:
        with Console(stderr=True).status("synthesizing ..."):
            job = client.synthesize(args.text, timeout=args.timeout, **options)
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            print(
                f"job {job['id']} {job['status']}: {error.get('code')}: {error.get('message')}",
                file=sys.stderr,
            )
            return RET_JOB_FAILED
        output.write_bytes(client.download(job["id"]))
    audio = job["audio"]
    print(
        f"{output}: {audio['duration_s']:.2f} s of {audio['format']} "
        f"at {audio['sample_rate']} Hz (job {job['id']})"
    )
    return RET_OK


def cmd_batch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from client.batch import BatchFileError, read_lines, run_batch

    options: dict[str, object] = {}
    for name in ("voice", "format", "speed", "sample_rate", "priority"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    out_dir = Path(args.out_dir)
    try:
        lines = read_lines(Path(args.file), out_dir, options)
        out_dir.mkdir(parents=True, exist_ok=True)
    except BatchFileError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--out-dir {out_dir}: {exc.strerror or exc}") from None
    with Client.from_env() as client:
        return run_batch(client, lines, out_dir, Console(stderr=True))


def cmd_status(args: argparse.Namespace) -> int:
    with Client.from_env() as client:
        print(json.dumps(client.get(args.job_id), indent=2))
    return RET_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with Client.from_env() as client:
        job = client.cancel(args.job_id)
    print(f"job {job['id']}: {job['status']}")
    return RET_OK


def cmd_voices(args: argparse.Namespace) -> int:
    with Client.from_env() as client:
        voices = client.voices()
    if args.json:
        print(json.dumps(voices, indent=2))
    else:
        for voice in voices:
            print(f"{voice['id']}\t{voice['language']}\t{voice['sample_rate']} Hz")
    return RET_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    with Client.from_env() as client:
        jobs = client.jobs(status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps(jobs, indent=2))
    else:
        for job in jobs:
            error = (job.get("error") or {}).get("code") or ""
            print(f"{job['id']}\t{job['status']}\t{job['created_at']}\t{error}".rstrip())
    return RET_OK


def _user_verbs(sub: Any) -> None:
    say = sub.add_parser("say", help="synthesize TEXT into a file and wait for it")
    say.add_argument("text", help="the text to speak")
    say.add_argument(
        "-o",
        "--output",
        required=True,
        help=f"file to write; its extension picks the format ({', '.join(sorted(FORMATS))}; "
        "none: wav)",
    )
    say.add_argument("--voice", default=None, help="a voice id (default: the fleet's first)")
    say.add_argument("--speed", type=float, default=1.0, help="0.25 to 4.0 (default: 1.0)")
    say.add_argument(
        "--format",
        choices=sorted({*FORMATS.values(), "mulaw", "alaw"}),
        default=None,
        help="overrides the extension (mulaw and alaw are 8 kHz WAV files)",
    )
    say.add_argument(
        "--loudness",
        type=float,
        default=None,
        metavar="LUFS",
        help="integrated loudness, -40 to -5, true peak at most -1 dBTP (default: engine level)",
    )
    say.add_argument("--sample-rate", type=int, default=None, help="Hz (default: the voice's)")
    say.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the job (default: 300)"
    )
    say.set_defaults(func=cmd_say)

    batch = sub.add_parser(
        "batch", help="one job per line of FILE (text, or a JSON job request); audio to DIR"
    )
    batch.add_argument("file", help="a text file, one job per line")
    batch.add_argument("--out-dir", required=True, help="where the audio files go")
    batch.add_argument("--voice", default=None, help="voice for lines that name none")
    batch.add_argument(
        "--format",
        choices=sorted({*FORMATS.values(), "mulaw", "alaw"}),
        default=None,
        help="audio format",
    )
    batch.add_argument("--speed", type=float, default=None, help="0.25 to 4.0")
    batch.add_argument("--sample-rate", type=int, default=None, help="Hz")
    batch.add_argument(
        "--priority", choices=["high", "normal", "low"], default=None, help="queue priority"
    )
    batch.set_defaults(func=cmd_batch)

    status = sub.add_parser("status", help="print a job as JSON")
    status.add_argument("job_id", help="the job's id")
    status.set_defaults(func=cmd_status)

    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id", help="the job's id")
    cancel.set_defaults(func=cmd_cancel)

    voices = sub.add_parser("voices", help="list the voices the fleet serves")
    voices.add_argument("--json", action="store_true", help="print JSON")
    voices.set_defaults(func=cmd_voices)

    jobs = sub.add_parser("jobs", help="list your recent jobs, newest first")
    jobs.add_argument(
        "--status",
        choices=["queued", "running", "succeeded", "failed", "canceled"],
        default=None,
        help="only jobs in this status",
    )
    jobs.add_argument("--limit", type=int, default=20, help="how many (default: 20, max 500)")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.set_defaults(func=cmd_jobs)


def server_registrars() -> tuple[list[Registrar], str | None]:
    """The installed server's verb registrars, and why they could not load (if so)."""
    registrars: list[Registrar] = []
    missing: str | None = None
    for entry in metadata.entry_points(group=VERB_GROUP):
        try:
            registrars.append(entry.load())
        except ImportError as exc:
            missing = exc.name or str(exc)
    return registrars, missing


def _version() -> str:
    try:
        return metadata.version("ttsfleet")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parser(registrars: list[Registrar]) -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ttsfleet",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"ttsfleet {_version()}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _user_verbs(sub)
    for register in registrars:
        register(sub)
    return root


def main(argv: list[str] | None = None, registrars: list[Registrar] | None = None) -> int:
    """The `ttsfleet` command; `registrars` replaces the entry-point lookup (`python -m fleet`)."""
    argv = sys.argv[1:] if argv is None else argv
    missing: str | None = None
    if registrars is None:
        registrars, missing = server_registrars()
    if not registrars and argv and argv[0] in SERVER_VERBS:
        why = f" (missing: {missing})" if missing else ""
        print(
            f"ttsfleet: `{argv[0]}` runs the fleet and needs the server part{why}: "
            "pip install 'ttsfleet[server]'",
            file=sys.stderr,
        )
        return RET_USAGE
    args = parser(registrars).parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"ttsfleet: {exc}", file=sys.stderr)
        return RET_USAGE
    except ApiError as exc:
        print(f"ttsfleet: {exc}", file=sys.stderr)
        return RET_USAGE if isinstance(exc, NotConfigured) else RET_API
    except httpx.TransportError as exc:
        url = getattr(exc.request, "url", None) if _has_request(exc) else None
        where = f" at {url.scheme}://{url.netloc.decode()}" if url is not None else ""
        print(f"ttsfleet: cannot reach the API{where}: {exc}", file=sys.stderr)
        return RET_UNREACHABLE
    except TimeoutError as exc:
        print(f"ttsfleet: {exc}", file=sys.stderr)
        return RET_JOB_FAILED
    return code


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error carries no request
    except RuntimeError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
