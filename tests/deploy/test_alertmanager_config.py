"""The compose stack's Alertmanager render step, run as compose runs it:
``python -m aipulse_alerts.amconfig --out FILE`` with the receiver variables in the environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aipulse_alerts.amconfig import NO_RECEIVER, RECEIVER_VARS, amtool, check
from aipulse_alerts.rules import DEFAULT_RULES_PATH, load_rules


def _render(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in RECEIVER_VARS and k != "AIPULSE_ALERT_RULES"}
    return subprocess.run([sys.executable, "-m", "aipulse_alerts.amconfig", "--out", str(tmp_path / "am.yml"), *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env", [{}, {v: "" for v in RECEIVER_VARS}, {"AIPULSE_ALERT_SLACK_CHANNEL": "#ai"},
                                 {"AIPULSE_ALERT_EMAIL_FROM": "a@b", "AIPULSE_ALERT_SMTP_PASSWORD": "x"}],
                         ids=["unset", "empty", "channel-only", "email-without-to"])
def test_refuses_without_a_receiver_and_writes_nothing(tmp_path, env):
    r = _render(tmp_path, env)
    assert r.returncode == 2
    assert r.stderr.strip() == f"aipulse_alerts.amconfig: {NO_RECEIVER}"
    assert not (tmp_path / "am.yml").exists()


def test_refuses_an_incomplete_email_receiver_in_one_line(tmp_path):
    r = _render(tmp_path, {"AIPULSE_ALERT_EMAIL_TO": "oncall@example.com"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "AIPULSE_ALERT_SMTP_SMARTHOST" in r.stderr
    assert not (tmp_path / "am.yml").exists()


@pytest.mark.parametrize("env,integration", [
    ({"AIPULSE_ALERT_WEBHOOK_URL": "http://hooks.example:8080/alert"}, "webhook_configs"),
    ({"AIPULSE_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X"}, "slack_configs"),
    ({"AIPULSE_ALERT_EMAIL_TO": "oncall@example.com", "AIPULSE_ALERT_SMTP_SMARTHOST": "smtp.example.com:587"},
     "email_configs"),
])
def test_each_receiver_kind_renders_a_config_alertmanager_accepts(tmp_path, env, integration):
    r = _render(tmp_path, env)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "am.yml").read_text()
    cfg = yaml.safe_load(text)
    (receiver,) = cfg["receivers"]
    assert receiver[integration] and cfg["route"]["receiver"] == receiver["name"]
    assert oct((tmp_path / "am.yml").stat().st_mode & 0o777) == "0o644"   # Alertmanager runs as nobody
    if amtool() is not None:
        assert "SUCCESS" in check(text)


def test_routes_follow_the_severities_the_rule_file_uses(tmp_path):
    hook = {"AIPULSE_ALERT_WEBHOOK_URL": "http://hooks.example:8080/alert"}

    def routed(rules_file: Path | None) -> set[str]:
        args = ("--rules", str(rules_file)) if rules_file else ()
        r = _render(tmp_path, hook, *args)
        assert r.returncode == 0, r.stderr
        routes = yaml.safe_load((tmp_path / "am.yml").read_text())["route"]["routes"]
        return {m.split('"')[1] for route in routes for m in route["matchers"]}

    used = {r.severity.value for r in load_rules(DEFAULT_RULES_PATH).enabled}
    assert "info" in used and routed(None) == used - {"warning"}   # warning is the root route
    doc = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    doc["rules"] = [r for r in doc["rules"] if r.get("severity") != "info"]
    no_info = tmp_path / "rules.yaml"
    no_info.write_text(yaml.safe_dump(doc))
    assert routed(no_info) == {"critical"}


def test_a_broken_rule_file_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: 1\nrules: [{name: x}]\n")
    r = _render(tmp_path, {"AIPULSE_ALERT_WEBHOOK_URL": "http://hooks.example:8080/alert"}, "--rules", str(bad))
    # the rule loader's own message: the file, then one line per problem
    assert r.returncode == 2 and r.stderr.startswith(f"aipulse_alerts.amconfig: {bad}: ")
    assert "runbook: Field required" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "am.yml").exists()


def test_allow_no_receiver_is_explicit(tmp_path):
    r = _render(tmp_path, {}, "--allow-no-receiver")
    assert r.returncode == 0, r.stderr
    (receiver,) = yaml.safe_load((tmp_path / "am.yml").read_text())["receivers"]
    assert set(receiver) == {"name"}
