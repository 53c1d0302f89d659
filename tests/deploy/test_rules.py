"""The alert rules with Prometheus' own tool: `promtool check rules` parses them, and
`promtool test rules` runs deploy/prometheus/ttsfleet.rules.test.yaml, where every alert
stays quiet on a healthy fleet under load and fires on the fault it names.

promtool comes from Debian's `prometheus` package (`make promtool`, part of `make test`);
without it these tests skip and say so, they never pass silently."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy import rules
from tests.deploy.manifests import METRIC_NAME, base_metric, defined_metrics

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package `prometheus`: `make promtool`); "
    "the alert rules were NOT checked",
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", rules.RULES.name, cwd=rules.RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_every_alert_fires_on_its_fault_and_stays_quiet_on_a_healthy_fleet() -> None:
    done = promtool("test", "rules", rules.RULES_TESTS.name, cwd=rules.RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_tests_cover_every_alert_both_ways() -> None:
    tests = yaml.safe_load(rules.RULES_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fires if case["exp_alerts"] else quiet).add(case["alertname"])
    assert set(rules.alerts()) == fires == quiet


def test_rules_read_only_series_the_code_exports() -> None:
    known = defined_metrics()
    for group in rules.groups():
        for rule in group["rules"]:
            names = {base_metric(n) for n in METRIC_NAME.findall(rule["expr"])}
            assert names <= known, (rule.get("alert") or rule.get("record"), names - known)


def test_readme_lists_every_alert() -> None:
    readme = (ROOT / "README.md").read_text()
    for alert in rules.alerts():
        assert f"`{alert}`" in readme, alert


@needs_promtool
@pytest.mark.parametrize(
    ("alert", "readme_expr"),
    [
        # The README's first wording: no label in common with the empty-labelled sum, and
        # no sum at all when no worker runs.
        ("TtsfleetNoConsumer", "ttsfleet_queue_depth > 0 and sum(ttsfleet_jobs_in_flight) == 0"),
        # by code divided by no labels: nothing matches without ignoring(code) group_left.
        (
            "TtsfleetJobFailures",
            "sum by (code) (rate(ttsfleet_jobs_failed_total[10m]))"
            " / sum(rate(ttsfleet_jobs_finished_total[10m])) > 0.05",
        ),
    ],
)
def test_the_readmes_old_expressions_never_fire(
    alert: str, readme_expr: str, tmp_path: Path
) -> None:
    """The unit tests can fail: with the old wording of an alert they do."""
    groups = rules.groups()
    for group in groups:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = readme_expr
    (tmp_path / rules.RULES.name).write_text(yaml.safe_dump({"groups": groups}))
    # Only the tests where this alert must fire (the rest cost time and prove nothing here).
    suite = yaml.safe_load(rules.RULES_TESTS.read_text())
    suite["tests"] = [
        t
        for t in suite["tests"]
        if any(c["alertname"] == alert and c["exp_alerts"] for c in t["alert_rule_test"])
    ]
    (tmp_path / rules.RULES_TESTS.name).write_text(yaml.safe_dump(suite))
    done = promtool("test", "rules", rules.RULES_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    assert f"alertname: {alert}" in done.stdout + done.stderr
