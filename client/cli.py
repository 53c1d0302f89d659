"""`ttsfleet`: run the fleet (`up`, `api`, `worker`, `dispatcher`) and use it (`say`,
`batch`, `status`).

Nothing from `tasks` is imported at module level: settings are read once, on first
import, and `worker` must set the device and model variables before that happens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from client.client import ApiError, Client

FORMATS = {".wav": "wav", ".flac": "flac", ".ogg": "ogg", ".mp3": "mp3"}


def cmd_up(args: argparse.Namespace) -> int:
    from client.fleet import up

    home = Path(os.environ.get("TTSFLEET_HOME", ".ttsfleet"))
    api_port = int(os.environ.get("TTSFLEET_API_PORT", "8000"))
    flower_port = int(os.environ.get("TTSFLEET_FLOWER_PORT", "5555"))
    return up(home, api_port, flower_port, args.concurrency)


def cmd_api(args: argparse.Namespace) -> int:
    from api.server import serve
    from tasks.settings import get_settings

    serve(get_settings(), args.host, args.port, args.workers)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    device: str = args.device
    if device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        # Before torch (or onnxruntime's CUDA provider) is imported: the process sees one GPU.
        os.environ["CUDA_VISIBLE_DEVICES"] = index
        os.environ["TTSFLEET_WORKER_DEVICE"] = "cuda:0"
    elif device != "cpu":
        raise SystemExit(f"--device is cpu or cuda:N, not {device!r}")
    else:
        os.environ["TTSFLEET_WORKER_DEVICE"] = "cpu"
    if args.model:
        os.environ["TTSFLEET_WORKER_MODEL"] = args.model
    if args.ready_file:
        os.environ["TTSFLEET_WORKER_READY_FILE"] = str(Path(args.ready_file).resolve())

    from tasks import keys
    from tasks.app import app
    from tasks.settings import get_settings
    from worker.device import check_device
    from worker.engines import Batching, build_engine

    settings = get_settings()
    model = settings.serving_model()
    if model not in settings.models:
        raise SystemExit(
            f"model {model!r} is not in TTSFLEET_MODELS ({', '.join(settings.models)})"
        )
    spec = settings.models[model]
    check_device(device, spec.engine)
    pool, concurrency = args.pool, args.concurrency
    if pool == "auto":
        if build_engine(spec).batching is Batching.PADDED:
            # Task threads feed one batcher; twice the batch lets the next one fill meanwhile.
            pool, concurrency = "threads", concurrency or 2 * settings.batch_max_size
        else:
            # One single-thread engine per core measured best for the CPU voice (FINDINGS.md).
            pool = "prefork"
            concurrency = concurrency or (os.cpu_count() or 1 if device == "cpu" else 1)
    concurrency = concurrency or 1
    if pool != "prefork" and not settings.worker_supervised:
        from worker.supervisor import supervise

        # This process runs the engine itself, so recycling replaces it: supervise it.
        return supervise(sys.argv[1:])
    node = f"{model}-{device.replace(':', '')}@%h"
    app.conf.worker_proc_alive_timeout = 120  # children load a model before they report in
    if pool == "prefork":
        from worker.recycle import LIMIT_KB

        # Children recycle by worker.recycle's policy, through billiard's memory check.
        app.conf.worker_max_memory_per_child = LIMIT_KB
    app.worker_main(
        [
            "worker", "-Q", keys.synth_queue(model), "-n", node, "-c", str(concurrency),
            "-P", pool, "-l", args.loglevel, "-E", "--without-gossip", "--without-mingle",
        ]
    )  # fmt: skip
    return 0


def cmd_dispatcher(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from tasks.app import app
    from tasks.dispatcher import Dispatcher
    from tasks.settings import get_settings

    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logging.getLogger(__name__).info("dispatcher running")
    Dispatcher.from_settings(get_settings(), app).run(stop)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from client.batch import read_lines, run_batch

    options: dict[str, object] = {}
    for name in ("voice", "format", "speed", "sample_rate", "priority"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    out_dir = Path(args.out_dir)
    lines = read_lines(Path(args.file), out_dir, options)
    with _client() as client:
        return run_batch(client, lines, out_dir, Console(stderr=True))


def _client() -> Client:
    return Client.from_env()


def cmd_say(args: argparse.Namespace) -> int:
    output = Path(args.output)
    fmt = args.format or FORMATS.get(output.suffix.lower(), "wav")
    options: dict[str, Any] = {"format": fmt, "speed": args.speed}
    if args.voice:
        options["voice"] = args.voice
    if args.sample_rate:
        options["sample_rate"] = args.sample_rate
    with _client() as client:
        job = client.submit(args.text, **options)
        job = client.wait(job["id"], timeout=args.timeout)
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            print(
                f"job {job['id']} {job['status']}: {error.get('code')}: {error.get('message')}",
                file=sys.stderr,
            )
            return 1
        output.write_bytes(client.download(job["id"]))
    audio = job["audio"]
    print(
        f"{output}: {audio['duration_s']:.2f} s of {audio['format']} "
        f"at {audio['sample_rate']} Hz (job {job['id']})"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client() as client:
        print(json.dumps(client.get(args.job_id), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ttsfleet", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the embedded fleet in the foreground (Ctrl-C stops it)")
    up.add_argument("--concurrency", type=int, default=None, help="synth worker processes")
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="API processes sharing the socket")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a synthesis worker for one model on one device")
    worker.add_argument(
        "--model", default=None, help="a name from TTSFLEET_MODELS (default: the first)"
    )
    worker.add_argument("--device", default="cpu", help="cpu or cuda:N")
    worker.add_argument("--concurrency", type=int, default=None)
    worker.add_argument(
        "--pool",
        default="auto",
        choices=["auto", "prefork", "threads", "solo"],
        help="auto: threads + batcher for padded-batch engines, prefork otherwise",
    )
    worker.add_argument("--ready-file", default=None, help="touched once the model is warm")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=cmd_worker)

    say = sub.add_parser("say", help="synthesize TEXT into a file and wait for it")
    say.add_argument("text")
    say.add_argument(
        "-o", "--output", required=True, help="file to write; its extension picks the format"
    )
    say.add_argument("--voice", default=None)
    say.add_argument("--speed", type=float, default=1.0)
    say.add_argument("--format", choices=sorted(FORMATS.values()), default=None)
    say.add_argument("--sample-rate", type=int, default=None)
    say.add_argument("--timeout", type=float, default=300.0)
    say.set_defaults(func=cmd_say)

    dispatcher = sub.add_parser(
        "dispatcher", help="move pending jobs to the workers' queues, fairly across tenants"
    )
    dispatcher.add_argument("--loglevel", default="INFO")
    dispatcher.set_defaults(func=cmd_dispatcher)

    batch = sub.add_parser(
        "batch", help="one job per line of FILE (text, or a JSON job request); audio to DIR"
    )
    batch.add_argument("file")
    batch.add_argument("--out-dir", required=True)
    batch.add_argument("--voice", default=None)
    batch.add_argument("--format", choices=sorted(FORMATS.values()), default=None)
    batch.add_argument("--speed", type=float, default=None)
    batch.add_argument("--sample-rate", type=int, default=None)
    batch.add_argument("--priority", choices=["high", "normal", "low"], default=None)
    batch.set_defaults(func=cmd_batch)

    status = sub.add_parser("status", help="print a job as JSON")
    status.add_argument("job_id")
    status.set_defaults(func=cmd_status)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
