"""What a rendered ttsfleet deployment must hold beyond its schemas, as a list of
violations (empty: the objects pass). A function, not assertions, so the tests can feed it
mutated objects and show each rule catches what it names.

- Pod Security "restricted": non-root, RuntimeDefault seccomp, no privilege escalation,
  every capability dropped, only the restricted volume types, no host namespaces or ports;
  and a read-only root filesystem with an emptyDir wherever a process writes
  (TTSFLEET_HOME, /tmp).
- Resources: CPU and memory requested, memory limited.
- Probes that mean what they say: every container has a liveness probe; the API's
  readiness is /healthz (a Redis blip must not empty the Service: the API answers 503 with
  Retry-After instead); pods behind a Service have a readiness probe; a ttsfleet process
  probed by a command runs `ttsfleet health <its role>`.
- Autoscaled Deployments (KEDA or HPA) set no `replicas`, or every apply resets them.
- Every role `ttsfleet up` starts runs: API, dispatcher, synth worker, callbacks worker,
  Flower; the API and the dispatcher have a disruption budget, the API an HPA.
- The backlog query treats a missing metric as unknown: no `or vector(0)` on the backlog
  terms, `ignoreNullValues: "false"` and a `fallback`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
# Pod Security Standards, restricted profile: the volume types it allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
ROLES = {"api", "dispatcher", "synth-worker", "callbacks", "flower"}
# Where a ttsfleet process writes (deploy/k8s/base/settings.yaml sets TTSFLEET_HOME).
WRITABLE = ("/tmp",)

Obj = dict[str, Any]


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    return (o for o in objects if o["kind"] in WORKLOADS)


def component(obj: Obj) -> str:
    """A workload's ttsfleet role (its pods' component label); "" for anything else."""
    if obj["kind"] not in WORKLOADS:
        return ""
    labels: dict[str, str] = obj["spec"]["template"]["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component", "")


def _home(objects: list[Obj]) -> str | None:
    for obj in objects:
        if obj["kind"] == "ConfigMap" and "TTSFLEET_HOME" in obj.get("data", {}):
            home: str = obj["data"]["TTSFLEET_HOME"]
            return home
    return None


def _containers(pod: Obj) -> list[Obj]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _pod_security(name: str, pod: Obj, writable: tuple[str, ...]) -> Iterator[str]:
    context = pod.get("securityContext", {})
    if context.get("runAsNonRoot") is not True:
        yield f"{name}: pod securityContext.runAsNonRoot is not true"
    if context.get("runAsUser") == 0:
        yield f"{name}: runs as root (runAsUser 0)"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            yield f"{name}: {key}"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for volume in volumes.values():
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield f"{name}: volume {volume['name']} is {sorted(kinds)}, not allowed by restricted"
    pod_seccomp = context.get("seccompProfile", {}).get("type")
    for c in _containers(pod):
        where = f"{name}/{c['name']}"
        sc = c.get("securityContext", {})
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"{where}: seccompProfile is not RuntimeDefault"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{where}: allowPrivilegeEscalation is not false"
        if sc.get("privileged"):
            yield f"{where}: privileged"
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            yield f"{where}: capabilities do not drop ALL"
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            yield f"{where}: adds capabilities {caps['add']}"
        if sc.get("runAsNonRoot") is False or sc.get("runAsUser") == 0:
            yield f"{where}: may run as root"
        if any(p.get("hostPort") for p in c.get("ports", [])):
            yield f"{where}: hostPort"
        if sc.get("readOnlyRootFilesystem") is not True:
            yield f"{where}: readOnlyRootFilesystem is not true"
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        for path in writable:
            volume = volumes.get(mounts.get(path, ""), {})
            if "emptyDir" not in volume:
                yield f"{where}: no emptyDir at {path} (the root filesystem is read-only)"


def _resources(name: str, pod: Obj) -> Iterator[str]:
    for c in _containers(pod):
        resources = c.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        if not {"cpu", "memory"} <= set(requests):
            yield f"{name}/{c['name']}: no cpu and memory requests"
        if "memory" not in limits:
            yield f"{name}/{c['name']}: no memory limit"


def _health_role(command: list[str]) -> str | None:
    """The `ttsfleet health` role a ttsfleet command answers to, if it is one."""
    if command[:1] != ["ttsfleet"] or len(command) < 2:
        return None
    if command[1] == "worker":
        return "callbacks" if "--callbacks" in command else "worker"
    return command[1] if command[1] in ("dispatcher", "callbacks") else None


def _probes(name: str, pod: Obj, serviced: bool) -> Iterator[str]:
    for c in pod["containers"]:
        where = f"{name}/{c['name']}"
        if "livenessProbe" not in c:
            yield f"{where}: no livenessProbe"
        if serviced and "readinessProbe" not in c:
            yield f"{where}: behind a Service without a readinessProbe"
        command = c.get("command", [])
        if command[:2] == ["ttsfleet", "api"]:
            path = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
            if path != "/healthz":
                yield f"{where}: API readinessProbe is {path}, not /healthz"
        role = _health_role(command)
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.get(kind, {}).get("exec")
            if role and probe and probe["command"] != ["ttsfleet", "health", role]:
                yield f"{where}: {kind} runs {probe['command']}, not ttsfleet health {role}"
        if role and "exec" not in c.get("livenessProbe", {}):
            yield f"{where}: livenessProbe is not `ttsfleet health {role}`"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def violations(objects: list[Obj]) -> list[str]:
    found: list[str] = []
    home = _home(objects)
    writable = WRITABLE + ((home,) if home else ())
    if home is None:
        found.append("no ConfigMap sets TTSFLEET_HOME (where processes write)")
    services = [o["spec"].get("selector", {}) for o in objects if o["kind"] == "Service"]
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    }
    hpa_targets = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    budgets = [
        o["spec"]["selector"].get("matchLabels", {})
        for o in objects
        if o["kind"] == "PodDisruptionBudget"
    ]
    roles: dict[str, str] = {}
    for obj in workloads(objects):
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        pod = obj["spec"]["template"]["spec"]
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        roles[component(obj)] = obj["metadata"]["name"]
        found += _pod_security(name, pod, writable)
        found += _resources(name, pod)
        found += _probes(name, pod, any(_selects(s, labels) for s in services))
        if obj["metadata"]["name"] in scaled and "replicas" in obj["spec"]:
            found.append(f"{name}: sets replicas although an autoscaler owns the count")
        if component(obj) in ("api", "dispatcher", "synth-worker", "callbacks"):
            if not any(_selects(b, labels) for b in budgets):
                found.append(f"{name}: no PodDisruptionBudget")
    for role in sorted(ROLES - set(roles)):
        found.append(f"no Deployment runs the {role} role")
    if "api" in roles and roles["api"] not in hpa_targets:
        found.append("the API has no HorizontalPodAutoscaler")
    found += _scalers(objects)
    return found


# A backlog term that reads as 0 when the metric is missing.
_ZERO_WHEN_MISSING = re.compile(
    r"\(\s*max\(ttsfleet_(pending_jobs|queue_depth)\{[^}]*\}\)\s*or\s+vector\(0\)\s*\)"
)


def _scalers(objects: list[Obj]) -> Iterator[str]:
    for obj in objects:
        if obj["kind"] != "ScaledObject":
            continue
        name = f"ScaledObject/{obj['metadata']['name']}"
        if "fallback" not in obj["spec"]:
            yield f"{name}: no fallback replica count for an unknown backlog"
        for trigger in obj["spec"]["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] != "prometheus":
                continue
            if meta.get("ignoreNullValues") != "false":
                yield f'{name}: ignoreNullValues is not "false": a missing backlog reads as 0'
            if _ZERO_WHEN_MISSING.search(meta["query"]):
                yield f"{name}: `or vector(0)` turns a missing backlog into 0"
