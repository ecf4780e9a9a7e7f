"""The committed provisioning folder is what the code generates, and it is well-formed:
every file validates against the provisioning schema, dashboards and alert pieces load into
grafana-foundation-sdk's models, and each dashboard links the others and has the variables."""
from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from aipulse_grafana.provisioning import DEFAULT_OUT, build_files
from provisioning_schema import BY_PATH

FILES = build_files(webhook=False, slack=False)


def test_committed_files_equal_the_generated_ones():
    committed = {str(p.relative_to(DEFAULT_OUT)): p.read_text() for p in DEFAULT_OUT.rglob("*") if p.is_file()}
    assert sorted(committed) == sorted(FILES), "run `aipulse grafana export` and commit"
    stale = [p for p in FILES if committed[p] != FILES[p]]
    assert not stale, f"out of date: {stale}; run `aipulse grafana export` and commit"


@pytest.mark.parametrize("webhook,slack", [(False, False), (True, True)])
def test_yaml_files_validate_against_the_provisioning_schema(webhook, slack):
    files = build_files(webhook=webhook, slack=slack)
    for path, schema in BY_PATH.items():
        jsonschema.validate(yaml.safe_load(files[path]), schema)
    assert "${AIPULSE_GRAFANA_WEBHOOK_URL}" in files["alerting/contact-points.yaml"] or not webhook


def test_dashboards_load_into_the_sdk_models():
    from grafana_foundation_sdk.models.dashboard import Dashboard

    from aipulse_grafana.chquery import ClickHouseQuery

    boards = [json.loads(t) for p, t in FILES.items() if p.startswith("dashboards/json/")]
    assert len(boards) == 7
    uids = {b["uid"] for b in boards}
    for data in boards:
        d = Dashboard.from_json(data)
        assert d.uid == data["uid"] and d.title.startswith("aipulse / ")
        assert [v.name for v in d.templating.list_val] == ["service", "feature", "model", "variant"]
        assert any(link.include_vars and link.keep_time and link.tags == ["aipulse"] for link in d.links)
        # the alert annotation: the SDK's model keeps name/datasource (its target type is the
        # built-in datasource's); the plugin reads the SQL target of the JSON
        assert [(a.name, a.datasource.uid, a.enable) for a in d.annotations.list_val] == [
            ("aipulse alerts", "aipulse-clickhouse", True)]
        (anno,) = data["annotations"]["list"]
        assert anno["target"]["editorType"] == "sql" and "FROM aipulse.alerts" in anno["target"]["rawSql"]
        ch = [t for p in d.panels if getattr(p, "targets", None) for t in p.targets if isinstance(t, ClickHouseQuery)]
        for t in ch:
            assert t.raw_sql and t.format_val in (0, 1) and t.editor_type == "sql"
        for p in d.panels:
            if getattr(p, "type_val", "row") != "row":
                assert p.description, f"{d.title} / {p.title} needs its question"
    assert uids == {"aipulse-overview", "aipulse-latency", "aipulse-reliability", "aipulse-cost", "aipulse-quality",
                    "aipulse-rollout", "aipulse-pipeline"}


def test_alerting_files_load_into_the_sdk_models():
    from grafana_foundation_sdk.models import alerting

    rules = yaml.safe_load(FILES["alerting/rules.yaml"])
    n = 0
    for g in rules["groups"]:
        for r in g["rules"]:
            rule = alerting.Rule.from_json({**r, "folderUID": "aipulse", "ruleGroup": g["name"], "orgID": 1})
            assert rule.condition == "C" and len(rule.data) == 3
            assert r["annotations"]["__dashboardUid__"].startswith("aipulse-") and r["annotations"]["runbook"]
            n += 1
    from aipulse_alerts.rules import load_rules

    assert n == len(load_rules().enabled)
    for cp in yaml.safe_load(build_files(webhook=True, slack=True)["alerting/contact-points.yaml"])["contactPoints"]:
        for rcv in cp["receivers"]:
            alerting.ContactPoint.from_json({**rcv, "name": cp["name"]})
    alerting.NotificationPolicy.from_json(yaml.safe_load(FILES["alerting/policies.yaml"])["policies"][0])


def test_docs_table_lists_every_panel_and_rule():
    from pathlib import Path

    from aipulse_grafana.docs_table import table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "grafana.md").read_text()
    assert table() in doc, "regenerate with python -m aipulse_grafana.docs_table and paste into docs/grafana.md"
