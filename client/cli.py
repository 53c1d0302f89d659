"""`ttsfleet`: run the fleet (`up`, `api`, `worker`, `dispatcher`), watch it (`fleet`) and
use it (`say`, `batch`, `status`).

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
    if args.callbacks:
        # A light CPU process: no model, no GPU, no Celery pool (see worker.callbacks).
        if args.model or args.device != "cpu":
            raise SystemExit("--callbacks runs on its own: no --model, no --device")
        from tasks.settings import get_settings
        from worker.callbacks import main as run_callbacks

        return run_callbacks(get_settings())
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
    if args.metrics_port is not None:
        os.environ["TTSFLEET_WORKER_METRICS_PORT"] = str(args.metrics_port)

    from celery.utils.nodenames import host_format

    from tasks import keys
    from tasks.app import app
    from tasks.settings import get_settings
    from worker import telemetry
    from worker.device import check_device
    from worker.engines import Batching, build_engine
    from worker.metric_files import prepare as prepare_metric_files

    settings = get_settings()
    # Before anything imports prometheus_client.
    prepare_metric_files(settings.home, serving=settings.worker_metrics_port is not None)
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
            concurrency = concurrency or ((os.cpu_count() or 1) if device == "cpu" else 1)
    concurrency = concurrency or 1
    if pool != "prefork" and not settings.worker_supervised:
        from worker.supervisor import supervise

        # This process runs the engine itself, so recycling replaces it: supervise it.
        return supervise(sys.argv[1:])
    node = host_format(f"{model}-{device.replace(':', '')}@%h")
    telemetry.install(settings, node, keys.synth_queue(model), pool, concurrency)
    app.conf.worker_proc_alive_timeout = 120  # children load a model before they report in
    if pool == "prefork":
        from worker.recycle import LIMIT_KB

        # Each child runs one job at a time; one more message held per child means the next
        # job is already local when a child finishes (measured: fewer idle gaps between jobs).
        app.conf.worker_prefetch_multiplier = 2
        # Children recycle by worker.recycle's policy, through billiard's memory check.
        app.conf.worker_max_memory_per_child = LIMIT_KB
    # A JSON log has no room for Celery's banner.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    app.worker_main(
        [
            *quiet, "worker", "-Q", keys.synth_queue(model), "-n", node, "-c", str(concurrency),
            "-P", pool, "-l", args.loglevel, "-E", "--without-gossip", "--without-mingle",
        ]
    )  # fmt: skip
    return 0


def cmd_dispatcher(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from tasks import logs
    from tasks.app import app
    from tasks.dispatcher import Dispatcher
    from tasks.settings import get_settings

    logs.configure(get_settings().log_format, args.loglevel)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logging.getLogger(__name__).info("dispatcher running")
    Dispatcher.from_settings(get_settings(), app).run(stop)
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    import time

    import redis
    from rich.console import Console
    from rich.live import Live

    from client.client import read_env_file

    # Next to `make up`, its Redis (on a free port) is named in `.ttsfleet/env`; before
    # anything reads the settings (importing tasks.app does).
    saved = read_env_file(Path(os.environ.get("TTSFLEET_HOME", ".ttsfleet")) / "env")
    if "TTSFLEET_REDIS_URL" not in os.environ and "TTSFLEET_REDIS_URL" in saved:
        os.environ["TTSFLEET_REDIS_URL"] = saved["TTSFLEET_REDIS_URL"]

    from client import fleet_view
    from tasks.settings import get_settings

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=10)
    if args.action == "drain":
        from tasks.app import app

        try:
            fleet_view.drain(app, client, args.node, timeout_s=args.timeout)
        except fleet_view.DrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    drain_s = fleet_view.parse_duration(args.drain)

    def view() -> dict[str, Any]:
        return fleet_view.snapshot(client, list(settings.models), drain_s)

    if args.json:
        print(json.dumps(view(), indent=2))
        return 0
    if not args.watch:
        Console().print(fleet_view.render(view()))
        return 0
    with Live(fleet_view.render(view()), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(args.interval)
                live.update(fleet_view.render(view()), refresh=True)
        except KeyboardInterrupt:
            pass
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
    worker.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument(
        "--callbacks",
        action="store_true",
        help="deliver signed job callbacks from the outbox instead of synthesizing (CPU only)",
    )
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

    fleet = sub.add_parser(
        "fleet", help="queues, workers and the workers needed to drain the backlog (Redis)"
    )
    fleet.add_argument("--drain", default="10m", help="target time to clear the backlog")
    fleet.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    fleet.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    fleet.add_argument("--json", action="store_true", help="print the view as JSON")
    fleet.set_defaults(func=cmd_fleet, action=None)
    fleet_actions = fleet.add_subparsers(dest="action")
    drain = fleet_actions.add_parser(
        "drain", help="stop NODE consuming, let its jobs in hand finish, then shut it down"
    )
    drain.add_argument("node", help="a node name from `ttsfleet fleet`")
    drain.add_argument("--timeout", type=float, default=600.0)

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
