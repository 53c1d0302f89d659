"""The embedded fleet of `make up`: redis-server, API, dispatcher, synth and callbacks
workers, Flower.

Everything runs as child processes in their own process groups, so Ctrl-C stops the
whole tree (prefork children and API workers included) and leaves nothing behind.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from client.env_file import env_file_path, write_env_file

LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
# A worker that shuts down cleanly is started again, once in this long (Fleet.restarts).
WORKER_RESTART_EVERY_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def dev_tenant(home: Path) -> tuple[Path, str]:
    """The tenants file with one `dev` tenant; its key is kept across restarts."""
    path = home / "tenants.json"
    if not path.is_file():
        key = "tf_" + secrets.token_urlsafe(24)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        tenants = {"tenants": [{"id": "dev", "api_keys": [key], "webhook_secret": secret}]}
        path.write_text(json.dumps(tenants, indent=2) + "\n")
        path.chmod(0o600)
    key = json.loads(path.read_text())["tenants"][0]["api_keys"][0]
    return path, str(key)


# The settings `make up` fills in when the user has not set them; one the user set wins.
EMBEDDED_SETTINGS = (
    "TTSFLEET_REDIS_URL",
    "TTSFLEET_STORAGE_URL",
    "TTSFLEET_TENANTS_FILE",
    "TTSFLEET_CALLBACK_ALLOWED_NETWORKS",
    "TTSFLEET_DEV_MODE",
)


def fleet_env(
    environ: dict[str, str], home: Path, redis_url: str, tenants_file: Path
) -> tuple[dict[str, str], list[str]]:
    """The environment of the fleet's processes, and the embedded settings the user set
    (which are kept as they are): their own Redis, storage, tenants file, networks."""
    defaults = {
        "TTSFLEET_REDIS_URL": redis_url,
        "TTSFLEET_STORAGE_URL": "file://" + str(home / "audio"),
        "TTSFLEET_TENANTS_FILE": str(tenants_file),
        "TTSFLEET_CALLBACK_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,
        # Weak keys and secrets (the user's own tenants file included) are warned about,
        # not refused (tasks.tenants.refuse_weak_secrets).
        "TTSFLEET_DEV_MODE": "true",
    }
    taken = [name for name in EMBEDDED_SETTINGS if environ.get(name)]
    env = {**environ, "TTSFLEET_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.update({name: value for name, value in defaults.items() if not environ.get(name)})
    return env, taken


def own_redis_record(home: Path) -> Path:
    """Where `up` notes the URL of the redis-server it starts (beside that server's data)."""
    return home / "redis" / "url"


def not_sourced(environ: dict[str, str], home: Path) -> dict[str, str]:
    """`environ` without a TTSFLEET_REDIS_URL that names the redis-server a previous `up`
    started here: `source .ttsfleet/env` exports it to the shell, but that server stopped
    with its `up` and is not the user's own."""
    record = own_redis_record(home)
    if record.is_file() and environ.get("TTSFLEET_REDIS_URL") == record.read_text().strip():
        return {name: value for name, value in environ.items() if name != "TTSFLEET_REDIS_URL"}
    return environ


def shown(name: str, value: str) -> str:
    """A setting as start-up prints it: a URL's passwords hidden (tasks.redis_url)."""
    from tasks.redis_url import redacted

    return f"{name}={redacted(value) if '://' in value else value}"


def start_redis(home: Path, port: int, fsync: str = "always") -> subprocess.Popen[bytes]:
    """redis-server on loopback with AOF fsync'd on every write: a 202 survives a crash
    (`fsync` other than "always" only for measuring what that costs, bench.api)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "redis-server is not installed: `make up` installs it, "
            "or run apt-get install redis-server"
        )
    data = home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data.resolve()),
        "--appendonly", "yes", "--appendfsync", fsync, "--save", "",
        "--logfile", str((data / "redis.log").resolve()), "--daemonize", "no",
    ]  # fmt: skip
    return subprocess.Popen(args, start_new_session=True)


def wait_for(check: str, probe: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if callable(probe) and probe():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(0.1)
    raise SystemExit(f"{check} did not become ready within {timeout:.0f} s")


@dataclass
class Fleet:
    """The child processes of one `ttsfleet up`, stopped together."""

    home: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    restarted: dict[str, float] = field(default_factory=dict)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with open(self.home / f"{name}.log", "ab") as log:  # the child keeps its own copy
            self.children[name] = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.commands[name] = (args, env)

    def first_dead(self) -> str | None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                return name
        return None

    def restarts(self, name: str) -> bool:
        """Start `name` again if it ended as a worker ends a drain (`ttsfleet fleet drain`, a
        warm shutdown: exit 0), as Kubernetes or compose restart such a container: the one
        worker here is the fleet's only one. Anything else that ends, or a worker that ends
        again soon after a restart (a loop), stops the fleet."""
        if name != "worker" or self.children[name].returncode != 0:
            return False
        now = time.monotonic()
        if now - self.restarted.get(name, -WORKER_RESTART_EVERY_S) < WORKER_RESTART_EVERY_S:
            return False
        self.restarted[name] = now
        self.spawn(name, *self.commands[name])
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every group (Redis last, so workers finish their writes), then SIGKILL."""
        order = [n for n in self.children if n != "redis"] + (
            ["redis"] if "redis" in self.children else []
        )
        for batch in (order[:-1], order[-1:]) if "redis" in self.children else (order,):
            for name in batch:
                _signal_group(self.children[name], signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for name in batch:
                proc = self.children[name]
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
                # Grandchildren (prefork children, API workers) go with their group.
                _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _weak_secrets(env: dict[str, str]) -> list[str]:
    """What the processes will warn about (dev mode), said once on the console too."""
    from pydantic import ValidationError

    from tasks.settings import Settings
    from tasks.tenants import TenantDirectory, weak_secrets

    read = ("redis_url", "tenants_file", "api_keys")
    values = {
        name: env[f"TTSFLEET_{name.upper()}"]
        for name in read
        if env.get(f"TTSFLEET_{name.upper()}")
    }
    try:
        settings = Settings.model_validate(values)
        return weak_secrets(settings, TenantDirectory.from_settings(settings))
    except (ValidationError, ValueError, OSError) as exc:
        return [f"the settings cannot be read: {exc}"]


def up(
    home: Path,
    api_port: int,
    flower_port: int,
    concurrency: int | None,
    device: str = "cpu",
    model: str | None = None,
) -> int:
    """Start the fleet in the foreground; returns an exit code when it stops. Its synth
    worker serves `model` (default: the first of TTSFLEET_MODELS) on `device`."""
    home.mkdir(parents=True, exist_ok=True)
    home = home.resolve()
    for name, port in (("API", api_port), ("Flower", flower_port)):
        if not port_is_free(port):
            raise SystemExit(
                f"port {port} for the {name} is taken: stop what uses it or set "
                f"TTSFLEET_{name.upper()}_PORT to another port"
            )
    tenants_file, api_key = dev_tenant(home)
    redis_port = free_port()
    fleet = Fleet(home)
    api_url = f"http://127.0.0.1:{api_port}"
    environ = not_sourced(dict(os.environ), home)
    if "TTSFLEET_REDIS_URL" in os.environ and "TTSFLEET_REDIS_URL" not in environ:
        print(
            "TTSFLEET_REDIS_URL in your environment names the redis-server the last "
            "`make up` started (from `source .ttsfleet/env`): starting a new one",
            flush=True,
        )
    env, taken = fleet_env(environ, home, f"redis://127.0.0.1:{redis_port}/0", tenants_file)
    own_redis = "TTSFLEET_REDIS_URL" in taken
    own_tenants = "TTSFLEET_TENANTS_FILE" in taken
    if taken:
        print("from your environment (instead of make up's own):", flush=True)
        for name in taken:
            print("  " + shown(name, env[name]), flush=True)
    for problem in _weak_secrets(env):
        print(f"warning: {problem}", flush=True)
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        from tasks import redis_url

        if not own_redis:
            fleet.children["redis"] = start_redis(home, redis_port)
            own_redis_record(home).write_text(env["TTSFLEET_REDIS_URL"])
        client = redis_url.client(env["TTSFLEET_REDIS_URL"], socket_connect_timeout=0.5)
        wait_for("redis-server", client.ping, 20)
        me = [sys.executable, "-m", "fleet"]
        fleet.spawn("api", [*me, "api", "--host", "127.0.0.1", "--port", str(api_port)], env)
        worker = [*me, "worker", "--device", device, *(["--model", model] if model else [])]
        if concurrency:
            worker += ["--concurrency", str(concurrency)]
        fleet.spawn("worker", worker, env)
        # Jobs wait in per-tenant lists until the dispatcher moves them (scheduler.dispatcher).
        fleet.spawn("dispatcher", [*me, "dispatcher"], env)
        fleet.spawn("callbacks", [*me, "callbacks"], env)
        fleet.spawn(
            "flower",
            [sys.executable, "-m", "celery", "-A", "tasks", "flower",
             "--address=127.0.0.1", f"--port={flower_port}"],
            env,
        )  # fmt: skip
        wait_for(
            "the API", lambda: httpx.get(api_url + "/readyz", timeout=1).status_code == 200, 60
        )
        # With the user's own tenants file the dev key is not valid: they have their keys.
        saved = {"TTSFLEET_API_URL": api_url}
        if not own_tenants:
            saved["TTSFLEET_API_KEY"] = api_key
        # What the operator verbs need to find this fleet (fleet.cli.use_local_fleet).
        saved["TTSFLEET_REDIS_URL"] = env["TTSFLEET_REDIS_URL"]
        saved["TTSFLEET_API_PORT"] = str(api_port)
        saved["TTSFLEET_FLOWER_PORT"] = str(flower_port)
        write_env_file(env_file_path(home), saved)
        redis_line = (
            shown("yours", env["TTSFLEET_REDIS_URL"]).removeprefix("yours=")
            if own_redis
            else f"redis://127.0.0.1:{redis_port}/0   (AOF under {home / 'redis'})"
        )
        key_shown = f"one of yours ({env['TTSFLEET_TENANTS_FILE']})" if own_tenants else api_key
        print(
            f"ttsfleet is up.\n"
            f"  API      {api_url}   (docs {api_url}/docs)\n"
            f"  Flower   http://127.0.0.1:{flower_port}\n"
            f"  Redis    {redis_line}\n"
            f"  Audio    {shown('', env['TTSFLEET_STORAGE_URL']).removeprefix('=')}\n"
            f"  Logs     {home}/*.log\n"
            f"  API key  {key_shown}\n"
            f"  (saved to {home / 'env'} for the ttsfleet CLI)\n"
            f"Try:  curl -s -X POST {api_url}/v1/jobs -H 'Authorization: Bearer {api_key}' "
            f"-H 'Content-Type: application/json' -d '{{\"text\": \"Hello from ttsfleet.\"}}'\n"
            f"Ctrl-C stops everything.",
            flush=True,
        )
        while not stopping:
            dead = fleet.first_dead()
            if dead is not None and fleet.restarts(dead):
                print(f"{dead} shut down (a drain); starting a new one", flush=True)
            elif dead is not None:
                print(
                    f"{dead} exited (see {home / (dead + '.log')}); stopping the fleet",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stopping ttsfleet ...", flush=True)
        fleet.stop()
        print("stopped.", flush=True)
