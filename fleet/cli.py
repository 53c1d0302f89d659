"""The server verbs of `ttsfleet`: run the fleet's processes and watch them.

Registered with the client's command through the `ttsfleet.commands` entry-point group
(client.cli), so `pip install ttsfleet` alone offers only the user verbs. Each verb hands
its options to the launcher in the package it starts (api.server, worker.main,
scheduler.main, callbacks.main); nothing is passed through `os.environ`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from client.cli import UsageError
from client.env_file import env_file_path, read_env_file

# Imported here, not in `register`: without the server's dependencies this module then fails
# to load, and the client's command says which package is missing (client.cli).
from worker.main import add_arguments as worker_arguments

_UNITS = {"s": 1, "m": 60, "h": 3600}

# Exit code of a verb that cannot reach Redis (the user verbs' 4 is "cannot reach the API").
RET_UNREACHABLE = 4


def cmd_up(args: argparse.Namespace) -> int:
    from fleet.embedded import up

    home = Path(os.environ.get("TTSFLEET_HOME", ".ttsfleet"))
    api_port = int(os.environ.get("TTSFLEET_API_PORT", "8000"))
    flower_port = int(os.environ.get("TTSFLEET_FLOWER_PORT", "5555"))
    return up(home, api_port, flower_port, args.concurrency, args.device, args.model)


def cmd_api(args: argparse.Namespace) -> int:
    from api.server import serve
    from tasks.settings import get_settings

    serve(get_settings(), args.host, args.port, args.workers)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if args.callbacks:
        # The old spelling of `ttsfleet callbacks`.
        if args.model or args.device != "cpu":
            raise UsageError("--callbacks runs on its own: no --model, no --device")
        return cmd_callbacks(args)
    from worker.main import options_from, run

    return run(options_from(args))


def cmd_dispatcher(args: argparse.Namespace) -> int:
    from scheduler.main import run
    from tasks.settings import get_settings

    return run(get_settings(), args.loglevel)


def cmd_callbacks(args: argparse.Namespace) -> int:
    from callbacks.main import main as run_callbacks
    from tasks.settings import get_settings

    return run_callbacks(get_settings())


def cmd_fleet(args: argparse.Namespace) -> int:
    import time

    import redis
    from rich.console import Console
    from rich.live import Live

    use_local_fleet()
    from fleet import view as fleet_view
    from tasks import redis_url
    from tasks.settings import get_settings

    settings = get_settings()
    client = redis_url.client(settings.redis_url, decode_responses=True, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"ttsfleet: cannot reach Redis at {redis_url.redacted(settings.redis_url)}: {exc}",
              file=sys.stderr)  # fmt: skip
        return RET_UNREACHABLE
    if args.action == "drain":
        from tasks.app import app

        try:
            fleet_view.drain(app, client, args.node, timeout_s=args.timeout)
        except fleet_view.DrainError as exc:
            print(f"ttsfleet: {exc}", file=sys.stderr)
            return 1
        return 0

    def view() -> dict[str, Any]:
        return fleet_view.snapshot(client, list(settings.models), args.drain)

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


def cmd_health(args: argparse.Namespace) -> int:
    use_local_fleet()
    from fleet.health import check
    from tasks.settings import get_settings

    result = check(
        args.role, get_settings(), host=args.host, port=args.port, timeout_s=args.timeout
    )
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def use_local_fleet() -> None:
    """Next to `make up`, take the settings it saved in `.ttsfleet/env` (its Redis on a free
    port, the API's and Flower's ports) that the environment does not set. Call it before
    anything reads the settings: `get_settings` keeps the first it reads, and importing
    `tasks.app` reads them."""
    for name, value in read_env_file(env_file_path()).items():
        if name.startswith("TTSFLEET_"):
            os.environ.setdefault(name, value)


def parse_duration(text: str) -> float:
    """`90`, `90s`, `10m`, `2h` → seconds; anything else is a usage error (an argparse type,
    so it imports nothing that reads the settings)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 10m, 2h)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def register(sub: Any) -> None:
    """Add the server verbs to the `ttsfleet` command's subparsers."""
    up = sub.add_parser("up", help="start the embedded fleet in the foreground (Ctrl-C stops it)")
    up.add_argument(
        "--concurrency", type=int, default=None, help="synth worker processes (default: cores)"
    )
    up.add_argument("--device", default="cpu", help="the synth worker's device: cpu or cuda:N")
    up.add_argument("--model", default=None, help="the synth worker's model (default: the first)")
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    api.add_argument(
        "--workers", type=int, default=1, help="API processes sharing the socket (default: 1)"
    )
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a synthesis worker for one model on one device")
    worker_arguments(worker)
    worker.add_argument("--callbacks", action="store_true", help="same as `ttsfleet callbacks`")
    worker.set_defaults(func=cmd_worker)

    dispatcher = sub.add_parser(
        "dispatcher", help="move pending jobs to the workers' queues, fairly across tenants"
    )
    dispatcher.add_argument("--loglevel", default="INFO", help="log level (default: INFO)")
    dispatcher.set_defaults(func=cmd_dispatcher)

    callbacks = sub.add_parser(
        "callbacks", help="deliver signed job callbacks from the outbox (CPU only, no model)"
    )
    callbacks.set_defaults(func=cmd_callbacks)

    health = sub.add_parser(
        "health", help="exit 0 if this host's ROLE process is alive (container health checks)"
    )
    health.add_argument(
        "role",
        choices=["api", "worker", "dispatcher", "callbacks", "flower"],
        help="the process to check",
    )
    health.add_argument("--host", default=None, help="whose process (default: this hostname)")
    health.add_argument("--port", type=int, default=None, help="api/flower: the local port")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for answers")
    health.set_defaults(func=cmd_health)

    fleet = sub.add_parser(
        "fleet", help="queues, workers and the workers needed to drain the backlog (Redis)"
    )
    fleet.add_argument(
        "--drain",
        type=parse_duration,
        default="10m",
        help="target time to clear the backlog: 90s, 10m, 2h (default: 10m)",
    )
    fleet.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    fleet.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (default: 2)"
    )
    fleet.add_argument("--json", action="store_true", help="print the view as JSON")
    fleet.set_defaults(func=cmd_fleet, action=None)
    fleet_actions = fleet.add_subparsers(dest="action", metavar="ACTION")
    drain = fleet_actions.add_parser(
        "drain", help="stop NODE consuming, let its jobs in hand finish, then shut it down"
    )
    drain.add_argument("node", help="a node name from `ttsfleet fleet`")
    drain.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait (default: 600)"
    )
