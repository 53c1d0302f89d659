"""The compose fleet of `make test-deploy`: docker-compose.yml plus the test override, run
under its own project name with generated secrets, a tenants file and free host ports, and
a webhook receiver on the host side of the fleet's network."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, free_port

PROJECT = "ttsfleet-deploytest"
OVERRIDE = ROOT / "tests" / "deploy" / "live" / "compose.test.yml"
# A private /24 for the fleet's network; its first address is the host (the receiver).
SUBNET = os.environ.get("DEPLOY_SUBNET", "10.213.47.0/24")
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
COMPOSE = shutil.which("docker-compose") or "docker-compose"
TENANT = "acme"


def run(
    args: list[str], timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """Records webhook deliveries; listens on the fleet network's gateway only."""

    def __init__(self, host: str) -> None:
        self.deliveries: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.deliveries.append(Delivery(headers, body, time.time()))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> dict[str, set[tuple[str, str]]]:
        """job id -> {(webhook-id, type)}: distinct events, whatever was delivered twice."""
        seen: dict[str, set[tuple[str, str]]] = {}
        for delivery in self.deliveries:
            payload = json.loads(delivery.body)
            seen.setdefault(payload["data"]["id"], set()).add(
                (delivery.headers["webhook-id"], payload["type"])
            )
        return seen

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Fleet:
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    api_key: str = ""
    webhook_secret: str = ""

    @classmethod
    def prepare(cls, workdir: Path) -> Fleet:
        fleet = cls(workdir)
        fleet.api_key = "tf_" + secrets.token_urlsafe(24)
        fleet.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        tenants = workdir / "tenants.json"
        tenant = {"id": TENANT, "api_keys": [fleet.api_key], "webhook_secret": fleet.webhook_secret}
        tenants.write_text(json.dumps({"tenants": [tenant]}))
        tenants.chmod(0o644)  # the containers run as uid 10001
        minio_port = free_port()
        fleet.env = {
            "REDIS_PASSWORD": secrets.token_urlsafe(24),
            "MINIO_ROOT_USER": "ttsfleet",
            "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(24),
            "S3_BUCKET": "ttsfleet-audio",
            "TENANTS_FILE": str(tenants),
            "FLOWER_BASIC_AUTH": "ops:" + secrets.token_urlsafe(16),
            "SYNTH_MODEL": "piper-joe",
            "API_PORT": f"127.0.0.1:{free_port()}",
            "FLOWER_PORT": str(free_port()),
            "MINIO_PORT": str(minio_port),
            "MINIO_CONSOLE_PORT": str(free_port()),
            "S3_PUBLIC_URL": f"http://127.0.0.1:{minio_port}",
            "DEPLOY_SUBNET": SUBNET,
        }
        (workdir / "compose.env").write_text("".join(f"{k}={v}\n" for k, v in fleet.env.items()))
        return fleet

    @property
    def api_url(self) -> str:
        return "http://" + self.env["API_PORT"]

    @property
    def gateway(self) -> str:
        return str(next(ip_network(SUBNET).hosts()))

    def compose(self, *args: str, timeout: float = 600) -> str:
        return run(
            [
                COMPOSE, "-p", PROJECT, "--env-file", str(self.workdir / "compose.env"),
                "-f", str(ROOT / "docker-compose.yml"), "-f", str(OVERRIDE),
                "--profile", "cpu", *args,
            ],
            timeout=timeout,
            # On vfs a container's creation copies its whole image: minutes, not compose's
            # default 60 s HTTP timeout, when several are made at once.
            env={**os.environ, "COMPOSE_HTTP_TIMEOUT": "900"},
        )  # fmt: skip

    def containers(self, service: str | None = None, every: bool = True) -> list[dict[str, Any]]:
        """`docker inspect` of the project's containers (of one service), running or not."""
        filters = ["--filter", f"label=com.docker.compose.project={PROJECT}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = run([DOCKER, "ps", "-q", *(["-a"] if every else []), *filters]).split()
        if not ids:
            return []
        inspected: list[dict[str, Any]] = json.loads(run([DOCKER, "inspect", *ids]))
        return inspected

    def health(self) -> dict[str, str]:
        """container name -> health (or `exited N` for a container without a health check)."""
        states = {}
        for c in self.containers():
            state = c["State"]
            health = state.get("Health", {}).get("Status")
            states[c["Name"].lstrip("/")] = health or f"{state['Status']} {state['ExitCode']}"
        return states

    def wait_healthy(self, timeout: float = 300) -> dict[str, str]:
        def settled() -> dict[str, str] | None:
            states = self.health()
            ok = all(s == "healthy" or s == "exited 0" for s in states.values())
            return states if states and ok else None

        return wait_for(settled, timeout, lambda: f"not healthy: {self.health()}")


def wait_for(check: Callable[[], Any], timeout: float, describe: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"after {timeout:.0f} s, {describe()}")


def leftovers(container_ids: list[str], ports: list[str]) -> list[str]:
    """Processes still running for these containers (containerd shims name the container
    id) or publishing these host ports (docker-proxy)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        text = " ".join(words)
        if any(cid in text for cid in container_ids) or (
            words and words[0].endswith("docker-proxy")
            and any(f"-host-port {port}" in text for port in ports)
        ):  # fmt: skip
            found.append(f"{entry.name}: {text[:200]}")
    return found
