"""The Grafana dashboard and the autoscaling queries name only metrics the code defines,
or that deploy/README.md lists as coming."""

from __future__ import annotations

import json

import pytest

from tests.deploy.manifests import (
    DASHBOARD,
    METRIC_NAME,
    base_metric,
    dashboard_queries,
    defined_metrics,
    documented_metrics,
    keda_queries,
)


def test_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]


@pytest.mark.parametrize("query", dashboard_queries() + keda_queries())
def test_query_names_only_known_metrics(query: str) -> None:
    known = defined_metrics() | set(documented_metrics())
    names = {base_metric(n) for n in METRIC_NAME.findall(query)}
    assert names, "a query over no ttsfleet metric"
    assert names - known == set()


def test_metrics_documented_as_defined_exist_in_the_code() -> None:
    defined = {n for n, state in documented_metrics().items() if state == "defined"}
    assert defined and defined - defined_metrics() == set()


def test_dashboard_covers_the_operating_signals() -> None:
    used = {base_metric(n) for q in dashboard_queries() for n in METRIC_NAME.findall(q)}
    assert {
        "ttsfleet_http_requests_total",
        "ttsfleet_http_request_duration_seconds",
        "ttsfleet_jobs_submitted_total",
        "ttsfleet_jobs_finished_total",
        "ttsfleet_jobs_failed_total",
        "ttsfleet_queue_depth",
        "ttsfleet_jobs_in_flight",
        "ttsfleet_batch_size",
        "ttsfleet_engine_seconds",
        "ttsfleet_realtime_factor",
        "ttsfleet_worker_recycles_total",
        "ttsfleet_gpu_memory_bytes",
    } <= used
