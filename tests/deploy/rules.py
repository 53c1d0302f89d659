"""The alert rules. deploy/prometheus/ttsfleet.rules.yaml (a plain Prometheus rules file)
is the source; the Prometheus Operator's PrometheusRule in deploy/k8s/base is generated
from it, so the two cannot drift:

    python -m tests.deploy.rules --write
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from tests.deploy.manifests import DEPLOY

RULES = DEPLOY / "prometheus" / "ttsfleet.rules.yaml"
RULES_TESTS = DEPLOY / "prometheus" / "ttsfleet.rules.test.yaml"
PROMETHEUS_RULE = DEPLOY / "k8s" / "base" / "prometheus-rule.yaml"
HEADER = """\
# Generated from deploy/prometheus/ttsfleet.rules.yaml by `python -m tests.deploy.rules
# --write`; edit that file, not this one (a test fails when they differ). The alerts and
# why each is written the way it is are commented there.
"""


def groups() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return loaded


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups() for r in g["rules"] if "alert" in r}


def prometheus_rule() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "ttsfleet",
            "namespace": "ttsfleet",
            "labels": {"app.kubernetes.io/name": "ttsfleet"},
        },
        "spec": {"groups": groups()},
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL expressions) as `|` blocks, as in the source."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def render() -> str:
    body: str = yaml.dump(prometheus_rule(), Dumper=_BlockDumper, sort_keys=False, width=100)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the PrometheusRule")
    args = parser.parse_args(argv)
    if args.write:
        PROMETHEUS_RULE.write_text(render())
        return 0
    if PROMETHEUS_RULE.read_text() != render():
        print(f"{PROMETHEUS_RULE} is stale: run with --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
