"""The Kubernetes manifests against Kubernetes' own schemas (kubernetes-validate ships
them, offline), and the cross-references and fleet properties a schema cannot see."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tasks.settings import Settings
from tests.conftest import ROOT
from tests.deploy.manifests import K8S_FILES, k8s_kind, k8s_objects, yaml_documents

KUBERNETES_VERSION = "1.30.0"
# Kinds without a schema in kubernetes-validate (CRDs, kustomize); checked by hand below.
CUSTOM_KINDS = {"ScaledObject", "Kustomization"}


def deployment(name: str) -> dict[str, Any]:
    [found] = [d for d in k8s_kind("Deployment") if d["metadata"]["name"] == name]
    return found


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    [only] = deploy["spec"]["template"]["spec"]["containers"]
    return only


def synth_deployments() -> list[dict[str, Any]]:
    return [
        d
        for d in k8s_kind("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == "synth-worker"
    ]


def model_of(deploy: dict[str, Any]) -> str:
    command: list[str] = container(deploy)["command"]
    return command[command.index("--model") + 1]


# KEDA's ScaledObject fields (keda.sh/v1alpha1) and its Prometheus scaler's metadata, as
# documented by KEDA: no offline schema for the CRD ships on PyPI, so checked by name.
SCALED_OBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}  # fmt: skip
PROMETHEUS_TRIGGER = {
    "serverAddress", "query", "threshold", "activationThreshold", "namespace",
    "customHeaders", "ignoreNullValues", "unsafeSsl", "queryParameters",
}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "index"),
    [
        (p, i)
        for p in K8S_FILES
        for i, doc in enumerate(yaml_documents(p))
        if doc["kind"] not in CUSTOM_KINDS
    ],
    ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else str(v),
)
def test_manifest_matches_the_kubernetes_schema(path: Path, index: int) -> None:
    document = yaml_documents(path)[index]
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_scaled_objects_use_only_keda_fields() -> None:
    scaled_objects = k8s_kind("ScaledObject")
    assert scaled_objects
    for scaled in scaled_objects:
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        assert set(scaled["spec"]) <= SCALED_OBJECT_SPEC
        assert set(scaled["spec"]["advanced"]) <= {
            "horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount", "scalingModifiers"
        }  # fmt: skip
        for trigger in scaled["spec"]["triggers"]:
            assert set(trigger["metadata"]) <= PROMETHEUS_TRIGGER
            assert all(isinstance(v, str) for v in trigger["metadata"].values())


def test_kubernetes_schema_rejects_an_unknown_field() -> None:
    broken = {**deployment("api"), "spec": {**deployment("api")["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    [kustomization] = k8s_kind("Kustomization")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S_FILES if p.name != "kustomization.yaml"}


def test_every_referenced_config_map_and_secret_exists() -> None:
    config_maps = {c["metadata"]["name"]: c["data"] for c in k8s_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in k8s_kind("Secret")}
    for deploy in k8s_kind("Deployment"):
        spec = deploy["spec"]["template"]["spec"]
        for source in container(deploy).get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps
            else:
                assert source["secretRef"]["name"] in secrets
        for variable in container(deploy).get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], variable["name"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets


def test_config_map_and_secret_build_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("TTSFLEET_")]:
        monkeypatch.delenv(key)
    for config_map in k8s_kind("ConfigMap"):
        for key, value in config_map["data"].items():
            monkeypatch.setenv(key, value)
    for secret in k8s_kind("Secret"):
        for key, value in secret["stringData"].items():
            if key.startswith("TTSFLEET_"):
                monkeypatch.setenv(key, value)
    settings = Settings()
    for deploy in synth_deployments():
        assert model_of(deploy) in settings.models


def test_gpu_worker_takes_one_gpu_and_drains_on_stop() -> None:
    gpu = [d for d in synth_deployments() if "cuda:0" in container(d)["command"]]
    assert gpu
    for deploy in gpu:
        worker = container(deploy)
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
        pre_stop = " ".join(worker["lifecycle"]["preStop"]["exec"]["command"])
        assert "kill -TERM 1" in pre_stop, "SIGTERM is Celery's warm shutdown"
        # Longer than a full batch of the longest texts (well over a minute on a GPU).
        assert deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 300


def test_every_synth_worker_has_a_disruption_budget() -> None:
    budgets = [b["spec"]["selector"]["matchLabels"] for b in k8s_kind("PodDisruptionBudget")]
    for deploy in synth_deployments():
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert any(sel.items() <= labels.items() for sel in budgets), deploy["metadata"]["name"]


def test_flower_basic_auth_comes_from_a_secret() -> None:
    flower = container(deployment("flower"))
    assert flower["command"][:4] == ["celery", "-A", "tasks", "flower"]
    [auth] = [v for v in flower["env"] if v["name"] == "FLOWER_BASIC_AUTH"]
    assert "secretKeyRef" in auth["valueFrom"]


def test_each_synth_queue_scales_on_waiting_plus_in_flight_jobs() -> None:
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in k8s_kind("ScaledObject")}
    for deploy in synth_deployments():
        name = deploy["metadata"]["name"]
        assert name in scaled, f"{name} has no ScaledObject"
        [trigger] = scaled[name]["spec"]["triggers"]
        # The redis list scaler ignores prefetched and running jobs (keda#6719).
        assert trigger["type"] == "prometheus"
        queue = f'queue="synth.{model_of(deploy)}"'
        query = trigger["metadata"]["query"]
        assert f"ttsfleet_queue_depth{{{queue}}}" in query
        assert f"ttsfleet_jobs_in_flight{{{queue}}}" in query
        assert float(trigger["metadata"]["threshold"]) > 0


def test_gpu_workers_keep_a_floor_and_cpu_workers_may_scale_to_zero() -> None:
    for scaled in k8s_kind("ScaledObject"):
        target = deployment(scaled["spec"]["scaleTargetRef"]["name"])
        floor = scaled["spec"]["minReplicaCount"]
        if "nvidia.com/gpu" in container(target)["resources"]["limits"]:
            assert floor >= 1
        else:
            assert floor == 0
        assert scaled["spec"]["maxReplicaCount"] > floor


def test_keda_file_says_why_not_the_redis_scaler() -> None:
    text = (ROOT / "deploy/k8s/keda.yaml").read_text()
    assert re.search(r"keda#6719", text) and "prefetched" in text


def test_every_object_is_namespaced_to_the_fleet() -> None:
    for path, obj in k8s_objects():
        if obj["kind"] not in {"Namespace", "Kustomization"}:
            assert obj["metadata"]["namespace"] == "ttsfleet", (path.name, obj["kind"])
