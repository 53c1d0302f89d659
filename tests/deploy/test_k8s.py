"""The Kubernetes manifests as an operator applies them: each overlay rendered by the
pinned kustomize, every object validated strictly against Kubernetes' own schemas
(kubernetes-validate ships them, offline) or the vendored KEDA and Prometheus Operator CRD
schemas, then held to the fleet's policy (tests/deploy/k8s_policy.py), whose every rule is
shown to fail on an object that breaks it."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import textwrap
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tasks.settings import Settings
from tests.conftest import ROOT
from tests.deploy import rules
from tests.deploy.k8s_policy import component, violations
from tests.deploy.manifests import K8S, OVERLAYS, env_file, k8s_kind, rendered

# The oldest Kubernetes the manifests support, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CRD_SCHEMAS = K8S / "crd-schemas"
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrule_v1.json",
}  # fmt: skip
ROLE_COMMANDS = {
    "api": ["ttsfleet", "api"],
    "dispatcher": ["ttsfleet", "dispatcher"],
    "synth-worker": ["ttsfleet", "worker"],
    "callbacks": ["ttsfleet", "callbacks"],
    "flower": ["celery", "-A", "tasks", "flower"],
}
Obj = dict[str, Any]


def crd_validator(obj: Obj) -> jsonschema.protocols.Validator:
    name = CUSTOM[(obj["apiVersion"], obj["kind"])]
    schema = json.loads((CRD_SCHEMAS / name).read_text())
    return jsonschema.Draft7Validator(schema)


def validate(obj: Obj, version: str) -> None:
    if (obj["apiVersion"], obj["kind"]) in CUSTOM:
        crd_validator(obj).validate(obj)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def unique_objects() -> list[Obj]:
    """Every object of every overlay once (the base's appear in each)."""
    seen: dict[str, Obj] = {}
    for overlay in OVERLAYS:
        for obj in rendered(overlay):
            seen.setdefault(json.dumps(obj, sort_keys=True), obj)
    return list(seen.values())


def find(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    [found] = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def deployment(objects: list[Obj], role: str) -> Obj:
    [found] = [o for o in objects if o["kind"] == "Deployment" and component(o) == role]
    return found


def container(deploy: Obj) -> Obj:
    only: Obj
    [only] = deploy["spec"]["template"]["spec"]["containers"]
    return only


# --- rendering and schemas ------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_object_into_the_fleet_namespace(overlay: str) -> None:
    objects = rendered(overlay)
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "NetworkPolicy", "ScaledObject", "ServiceMonitor", "PodMonitor",
        "PrometheusRule", "PersistentVolumeClaim",
    } <= kinds  # fmt: skip
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "ttsfleet", obj["metadata"]["name"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_matches_its_schema(version: str) -> None:
    objects = unique_objects()
    assert {o["kind"] for o in objects} >= {kind for _, kind in CUSTOM}
    for obj in objects:
        validate(obj, version)


def test_schemas_reject_unknown_fields() -> None:
    objects = unique_objects()
    api = find(objects, "Deployment", "api")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate({**api, "spec": {**api["spec"], "replica": 2}}, KUBERNETES_VERSIONS[0])
    for kind in ("ScaledObject", "ServiceMonitor", "PodMonitor", "PrometheusRule"):
        obj = copy.deepcopy(next(o for o in objects if o["kind"] == kind))
        obj["spec"]["typo"] = 1
        with pytest.raises(jsonschema.ValidationError):
            validate(obj, KUBERNETES_VERSIONS[0])
    scaled = copy.deepcopy(find(objects, "ScaledObject", "synth-piper-joe-gpu"))
    scaled["spec"]["fallback"] = {"replicas": 2}  # failureThreshold is required
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled, KUBERNETES_VERSIONS[0])
    monitor = copy.deepcopy(find(objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, KUBERNETES_VERSIONS[0])


def test_vendored_crd_schemas_say_where_they_come_from() -> None:
    readme = (CRD_SCHEMAS / "README.md").read_text()
    for name in CUSTOM.values():
        assert f"`{name}`" in readme
        json.loads((CRD_SCHEMAS / name).read_text())
    assert re.search(r"KEDA .*2\.\d+", readme) and re.search(r"v0\.\d+\.\d+", readme)


# --- the policy -------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_the_policy(overlay: str) -> None:
    assert violations(rendered(overlay)) == []


def _mutate_deployment(objects: list[Obj], role: str, change: Any) -> list[Obj]:
    change(deployment(objects, role))
    return objects


MUTATIONS = {
    "seccompProfile": (
        "dispatcher",
        lambda d: d["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile"),
        "seccompProfile is not RuntimeDefault",
    ),
    "privilege escalation": (
        "callbacks",
        lambda d: container(d)["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation is not false",
    ),
    "capabilities": (
        "flower",
        lambda d: container(d)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
        "capabilities do not drop ALL",
    ),
    "root": (
        "api",
        lambda d: d["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
        "runAsNonRoot is not true",
    ),
    "writable root": (
        "synth-worker",
        lambda d: container(d)["securityContext"].pop("readOnlyRootFilesystem"),
        "readOnlyRootFilesystem is not true",
    ),
    "no emptyDir for TTSFLEET_HOME": (
        "dispatcher",
        lambda d: container(d).update(
            volumeMounts=[m for m in container(d)["volumeMounts"] if m["mountPath"] != "/data"]
        ),
        "no emptyDir at /data",
    ),
    "hostPath": (
        "synth-worker",
        lambda d: d["spec"]["template"]["spec"]["volumes"].append(
            {"name": "host", "hostPath": {"path": "/"}}
        ),
        "not allowed by restricted",
    ),
    "no memory limit": (
        "api",
        lambda d: container(d)["resources"].pop("limits"),
        "no memory limit",
    ),
    "readiness on /readyz": (
        "api",
        lambda d: container(d)["readinessProbe"]["httpGet"].update(path="/readyz"),
        "API readinessProbe is /readyz, not /healthz",
    ),
    "no liveness": (
        "dispatcher",
        lambda d: container(d).pop("livenessProbe"),
        "no livenessProbe",
    ),
    "wrong health role": (
        "callbacks",
        lambda d: container(d)["livenessProbe"]["exec"].update(
            command=["ttsfleet", "health", "worker"]
        ),
        "not ttsfleet health callbacks",
    ),
    "replicas on a KEDA target": (
        "synth-worker",
        lambda d: d["spec"].update(replicas=0),
        "sets replicas although an autoscaler owns the count",
    ),
    "replicas on the HPA's API": (
        "api",
        lambda d: d["spec"].update(replicas=2),
        "sets replicas although an autoscaler owns the count",
    ),
}


@pytest.mark.parametrize("case", MUTATIONS, ids=str)
def test_policy_catches_a_deployment_that_breaks_it(case: str) -> None:
    role, change, expected = MUTATIONS[case]
    objects = _mutate_deployment(rendered("gpu"), role, change)
    found = violations(objects)
    assert any(expected in v for v in found), found


def test_policy_catches_a_missing_role_budget_hpa_and_a_zero_backlog() -> None:
    objects = [o for o in rendered("cpu") if o["metadata"]["name"] != "dispatcher"]
    assert "no Deployment runs the dispatcher role" in violations(objects)
    objects = [o for o in rendered("cpu") if o["kind"] != "HorizontalPodAutoscaler"]
    assert "the API has no HorizontalPodAutoscaler" in violations(objects)
    objects = [o for o in rendered("cpu") if o["kind"] != "PodDisruptionBudget"]
    assert "Deployment/api: no PodDisruptionBudget" in violations(objects)
    objects = rendered("cpu")
    scaled = find(objects, "ScaledObject")
    meta = scaled["spec"]["triggers"][0]["metadata"]
    meta["query"] = meta["query"].replace(
        'max(ttsfleet_pending_jobs{model="piper-joe"})',
        '(max(ttsfleet_pending_jobs{model="piper-joe"}) or vector(0))',
    )
    meta["ignoreNullValues"] = "true"
    del scaled["spec"]["fallback"]
    found = violations(objects)
    assert any("`or vector(0)` turns a missing backlog into 0" in v for v in found)
    assert any("ignoreNullValues" in v for v in found)
    assert any("no fallback" in v for v in found)


# --- what the fleet needs from the manifests --------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_runs_its_process(overlay: str) -> None:
    objects = rendered(overlay)
    for role, command in ROLE_COMMANDS.items():
        got = container(deployment(objects, role))["command"]
        assert got[: len(command)] == command, role
    dispatcher = deployment(objects, "dispatcher")
    assert dispatcher["spec"]["replicas"] == 2
    assert container(dispatcher)["command"] == ["ttsfleet", "dispatcher"]


def test_every_reference_resolves_after_kustomize() -> None:
    """The generated Secrets get a hash suffix; kustomize must have rewritten every use."""
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        names = {(o["kind"], o["metadata"]["name"]) for o in objects}
        for deploy in (o for o in objects if o["kind"] == "Deployment"):
            pod = deploy["spec"]["template"]["spec"]
            for source in container(deploy).get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        assert (kind, source[key]["name"]) in names
            for volume in pod.get("volumes", []):
                if "secret" in volume:
                    assert ("Secret", volume["secret"]["secretName"]) in names
                if "persistentVolumeClaim" in volume:
                    claim = volume["persistentVolumeClaim"]["claimName"]
                    assert ("PersistentVolumeClaim", claim) in names
        for scaler in (
            o for o in objects if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
        ):
            assert ("Deployment", scaler["spec"]["scaleTargetRef"]["name"]) in names


def test_no_secret_value_ships_and_the_real_files_are_ignored() -> None:
    base = K8S / "base"
    examples = sorted(base.glob("*.example"))
    assert {p.name for p in examples} == {
        "secrets.env.example", "tenants.json.example", "flower.env.example"
    }  # fmt: skip
    for path in (base / "secrets.env.example", base / "flower.env.example"):
        assert env_file(path) and set(env_file(path).values()) == {""}, path
    tenants = json.loads((base / "tenants.json.example").read_text())
    for tenant in tenants["tenants"]:
        assert tenant["api_keys"] == [""] and tenant["webhook_secret"] == ""
    for obj in rendered("gpu"):
        if obj["kind"] == "Secret":
            assert "stringData" not in obj
    real = [str(p.with_name(p.name.removesuffix(".example")).relative_to(ROOT)) for p in examples]
    ignored = subprocess.run(
        ["git", "check-ignore", *real], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert sorted(ignored.stdout.split()) == sorted(real)


def test_settings_build_from_the_config_map_and_the_secret_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in [k for k in os.environ if k.startswith("TTSFLEET_")]:
        monkeypatch.delenv(key)
    objects = rendered("gpu")
    settings_map = find(objects, "ConfigMap", "ttsfleet-settings")
    for key, value in settings_map["data"].items():
        monkeypatch.setenv(key, value)
    secret_keys = env_file(K8S / "base" / "secrets.env.example")
    assert "TTSFLEET_REDIS_URL" in secret_keys
    monkeypatch.setenv("TTSFLEET_REDIS_URL", "redis://:a-real-password@redis:6379/0")
    settings = Settings()
    for overlay in OVERLAYS:
        for deploy in (o for o in rendered(overlay) if component(o) == "synth-worker"):
            command = container(deploy)["command"]
            assert command[command.index("--model") + 1] in settings.models
    assert str(settings.home) == settings_map["data"]["TTSFLEET_HOME"]


def test_gpu_worker_takes_one_gpu_and_drains_on_stop() -> None:
    worker_deploy = deployment(rendered("gpu"), "synth-worker")
    worker = container(worker_deploy)
    assert "cuda:0" in worker["command"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    pre_stop = " ".join(worker["lifecycle"]["preStop"]["exec"]["command"])
    assert "kill -TERM 1" in pre_stop, "SIGTERM is Celery's warm shutdown"
    # Longer than a full batch of the longest texts (well over a minute on a GPU).
    assert worker_deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 300


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_synth_queue_scales_on_its_backlog_and_unknown_is_not_zero(overlay: str) -> None:
    objects = rendered(overlay)
    scaled = {
        s["spec"]["scaleTargetRef"]["name"]: s for s in objects if s["kind"] == "ScaledObject"
    }
    for deploy in (o for o in objects if component(o) == "synth-worker"):
        name = deploy["metadata"]["name"]
        command = container(deploy)["command"]
        model = command[command.index("--model") + 1]
        spec = scaled[name]["spec"]
        [trigger] = spec["triggers"]
        # The redis list scaler ignores prefetched and running jobs (keda#6719).
        assert trigger["type"] == "prometheus"
        query = trigger["metadata"]["query"]
        for term in (
            f'max(ttsfleet_pending_jobs{{model="{model}"}})',
            f'max(ttsfleet_queue_depth{{queue="synth.{model}"}})',
            f'(sum(ttsfleet_jobs_in_flight{{queue="synth.{model}"}}) or vector(0))',
        ):
            assert term in query
        assert query.count("vector(0)") == 1, "only the in-flight term may read as 0"
        assert trigger["metadata"]["ignoreNullValues"] == "false"
        assert spec["fallback"]["replicas"] >= 1 and spec["fallback"]["failureThreshold"] >= 1
        if "nvidia.com/gpu" in container(deploy)["resources"]["limits"]:
            assert spec["minReplicaCount"] >= 1
        else:
            assert spec["minReplicaCount"] == 0
        assert spec["maxReplicaCount"] > spec["minReplicaCount"]


def test_prometheus_operator_scrapes_what_keda_and_the_alerts_read() -> None:
    objects = rendered("gpu")
    api = deployment(objects, "api")
    service = find(objects, "Service", "api")
    monitor = find(objects, "ServiceMonitor", "api")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert {p["name"] for p in service["spec"]["ports"]} >= {
        monitor["spec"]["endpoints"][0]["port"]
    }
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    pod_monitor = find(objects, "PodMonitor")
    worker = deployment(objects, "synth-worker")
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port = pod_monitor["spec"]["podMetricsEndpoints"][0]["port"]
    assert port in {p["name"] for p in container(worker)["ports"]}
    assert "--metrics-port" in container(worker)["command"]


def test_prometheus_rule_is_generated_from_the_plain_rules_file() -> None:
    assert rules.PROMETHEUS_RULE.read_text() == rules.render(), (
        "run `python -m tests.deploy.rules --write`"
    )
    rule = find(rendered("cpu"), "PrometheusRule")
    assert rule["spec"]["groups"] == rules.groups()


def test_network_policies_deny_by_default_and_open_redis_and_the_api() -> None:
    objects = rendered("gpu")
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    fleet = {"app.kubernetes.io/name": "ttsfleet"}
    deny = policies["default-deny"]
    assert deny["podSelector"]["matchLabels"] == fleet
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    redis = policies["redis-egress"]
    assert redis["podSelector"]["matchLabels"] == fleet
    assert [p["port"] for rule in redis["egress"] for p in rule["ports"]] == [6379]
    api = policies["api-ingress"]
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert [p["port"] for rule in api["ingress"] for p in rule["ports"]] == [8000]
    # Only the callbacks worker reaches arbitrary hosts, and never private ranges.
    webhook = policies["webhook-egress"]
    assert webhook["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "callbacks"
    [block] = [t["ipBlock"] for rule in webhook["egress"] for t in rule["to"]]
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(block["except"])


def test_the_documented_patch_points_redis_egress_at_a_managed_redis() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    [patch] = re.findall(r"```yaml\n(\s*patches:.*?)```", readme, flags=re.S)
    objects = rendered("cpu", "\n" + textwrap.dedent(patch))
    redis = find(objects, "NetworkPolicy", "redis-egress")
    assert redis["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.20.30.40/32"}}]
    assert violations(objects) == []


def test_namespace_enforces_pod_security_restricted() -> None:
    namespace = find(rendered("gpu"), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_source_files_keep_the_keda_reasoning() -> None:
    for scaled in k8s_kind("ScaledObject"):
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    for path in sorted(K8S.glob("overlays/*/keda-*.yaml")):
        text = path.read_text()
        assert "keda#6719" in text and "prefetched" in text and "fallback" in text
