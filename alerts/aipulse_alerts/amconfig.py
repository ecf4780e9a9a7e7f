"""Alertmanager's configuration, generated from the environment and checked with amtool.

    >>> from aipulse_alerts.amconfig import render, receivers_from_env
    >>> text = render(receivers_from_env({"AIPULSE_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook"}))
    >>> "http://127.0.0.1:9/hook" in text
    True

    python -m aipulse_alerts.amconfig --out alertmanager.yml   # refuses (exit 2) without a receiver

The command is the compose stack's render step (service ``alertmanager-config``): it reads the
rule file (``$AIPULSE_ALERT_RULES`` or the packaged aipulse_alerts/rules.yaml) and the receiver variables below,
checks the result with amtool when installed, and exits 2 with one line naming the variables
to set when no receiver has a destination, so Alertmanager never starts unable to page.
``--allow-no-receiver`` accepts that (the local stack's default: alerts stay visible in the UI).

Receivers, each optional, from the environment:

- ``AIPULSE_ALERT_WEBHOOK_URL``: a webhook (Alertmanager's JSON webhook format);
- ``AIPULSE_ALERT_SLACK_WEBHOOK_URL`` (+ ``AIPULSE_ALERT_SLACK_CHANNEL``): Slack;
- ``AIPULSE_ALERT_EMAIL_TO`` + ``AIPULSE_ALERT_SMTP_SMARTHOST`` (+ ``AIPULSE_ALERT_EMAIL_FROM``,
  ``AIPULSE_ALERT_SMTP_USERNAME``, ``AIPULSE_ALERT_SMTP_PASSWORD``): email.

With none set (only allowed by :func:`render`, or ``--allow-no-receiver``), alerts are still
accepted, grouped and visible in Alertmanager's UI/API, and reach no one.

Routing. Every alert is its own group (``group_by: ['...']``): one notification when it
fires and one when it resolves, never a re-notification because a neighbour changed.
Critical alerts page: ``group_wait`` of one second (Alertmanager waits this long before
the first notification of a group), since every alert is its own group and the evaluator has
already applied the rule's sustain period; warnings wait longer and repeat less; info alerts (when the rule file has any)
wait longest and repeat once a day. One route per severity the rule file uses.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping

import yaml
from aipulse_stream.config import ENV_PREFIX, AlertsConfig

from .rules import RuleSet, RulesError, Severity, load_rules, rules_path

RECEIVER = "aipulse"
# critical: every alert is its own group (nothing to wait for) and the one evaluator already
# applied the rule's sustain and sends each state change once: page at once.
PAGE_GROUP_WAIT = "1s"
PAGE_GROUP_INTERVAL = "30s"    # also how soon a resolved notification follows the resolve
PAGE_REPEAT = "4h"
WARN_GROUP_WAIT = "30s"
WARN_GROUP_INTERVAL = "5m"
WARN_REPEAT = "12h"
INFO_GROUP_WAIT = "1m"
INFO_GROUP_INTERVAL = "10m"
INFO_REPEAT = "24h"
RESOLVE_TIMEOUT = "5m"

# Every variable receivers_from_env reads (docker-compose.yml passes exactly these).
RECEIVER_VARS = tuple(ENV_PREFIX + name.upper() for name in AlertsConfig.model_fields
                      if name.startswith("alert_") and name != "alert_rules")
NO_RECEIVER = ("no alert receiver: set AIPULSE_ALERT_WEBHOOK_URL, AIPULSE_ALERT_SLACK_WEBHOOK_URL, "
               "or AIPULSE_ALERT_EMAIL_TO with AIPULSE_ALERT_SMTP_SMARTHOST")


class NoReceiverError(ValueError):
    """The rendered config would deliver no notification anywhere."""


def receivers_from_env(env: Mapping[str, str] | None = None) -> dict:
    """The receiver's integrations from AIPULSE_ALERT_* variables (empty = unset), read and
    validated by :class:`aipulse_stream.config.AlertsConfig`, where they are defined."""
    c = AlertsConfig.from_env(env)
    receiver: dict = {"name": RECEIVER}
    if c.alert_webhook_url:
        receiver["webhook_configs"] = [{"url": c.alert_webhook_url, "send_resolved": True}]
    if c.alert_slack_webhook_url:
        slack = {"api_url": c.alert_slack_webhook_url, "send_resolved": True,
                 "title": '{{ .Status | toUpper }}: {{ .CommonLabels.alertname }}',
                 "text": '{{ range .Alerts }}{{ .Annotations.summary }}\n'
                         'Runbook: {{ .Annotations.runbook }}\n{{ end }}'}
        if c.alert_slack_channel:
            slack["channel"] = c.alert_slack_channel
        receiver["slack_configs"] = [slack]
    if c.alert_email_to:
        if not c.alert_smtp_smarthost:
            raise ValueError("AIPULSE_ALERT_EMAIL_TO needs AIPULSE_ALERT_SMTP_SMARTHOST (host:port)")
        email = {"to": c.alert_email_to, "smarthost": c.alert_smtp_smarthost, "send_resolved": True,
                 "from": c.alert_email_from or "aipulse@localhost"}
        if c.alert_smtp_username:
            email["auth_username"] = c.alert_smtp_username
            email["auth_password"] = c.alert_smtp_password or ""
        receiver["email_configs"] = [email]
    return receiver


def has_destination(receiver: dict) -> bool:
    """True when the receiver delivers somewhere (a webhook, Slack or email integration)."""
    return any(receiver.get(k) for k in ("webhook_configs", "slack_configs", "email_configs"))


def _severity_routes(rules: RuleSet | None, page_group_wait: str, page_group_interval: str) -> list[dict]:
    """One route per severity the enabled rules use (critical always: the detector's own
    pipeline alerts page); warning is the root route's timing."""
    used = {Severity.critical} | ({r.severity for r in rules.enabled} if rules is not None else set())
    timing = {
        Severity.critical: (page_group_wait, page_group_interval, PAGE_REPEAT),
        Severity.info: (INFO_GROUP_WAIT, INFO_GROUP_INTERVAL, INFO_REPEAT),
    }
    routes = []
    for sev in (Severity.critical, Severity.info):
        if sev in used:
            wait, interval, repeat = timing[sev]
            routes.append({"receiver": RECEIVER, "matchers": [f'severity="{sev.value}"'],
                           "group_wait": wait, "group_interval": interval, "repeat_interval": repeat})
    return routes


def config(receiver: dict, *, rules: RuleSet | None = None, page_group_wait: str = PAGE_GROUP_WAIT,
           page_group_interval: str = PAGE_GROUP_INTERVAL) -> dict:
    """The Alertmanager configuration as a dict (see the module doc for the routing);
    ``rules`` adds the routes of the severities the rule file uses."""
    return {
        "global": {"resolve_timeout": RESOLVE_TIMEOUT},
        "route": {
            "receiver": RECEIVER,
            "group_by": ["..."],
            "group_wait": WARN_GROUP_WAIT,
            "group_interval": WARN_GROUP_INTERVAL,
            "repeat_interval": WARN_REPEAT,
            "routes": _severity_routes(rules, page_group_wait, page_group_interval),
        },
        # A firing critical alert silences the warning of the same rule family and group.
        "inhibit_rules": [{
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["service", "feature"],
        }],
        "receivers": [receiver],
    }


def render(receiver: dict | None = None, *, rules: RuleSet | None = None, source: str | None = None,
           **kwargs) -> str:
    receiver = receivers_from_env() if receiver is None else receiver
    head = "# Generated by aipulse_alerts.amconfig from AIPULSE_ALERT_* variables"
    head += f" and {source}" if source else ""
    head += "; do not edit.\n"
    return head + yaml.safe_dump(config(receiver, rules=rules, **kwargs), sort_keys=False)


def amtool() -> str | None:
    return shutil.which("amtool")


def check(text: str) -> str:
    """Validate with ``amtool check-config``; returns its output, raises ValueError when invalid.
    Raises FileNotFoundError when amtool is not installed."""
    tool = amtool()
    if tool is None:
        raise FileNotFoundError("amtool not found: install prometheus-alertmanager (apt-get install prometheus-alertmanager)")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        r = subprocess.run([tool, "check-config", path], capture_output=True, text=True, timeout=30)
    finally:
        Path(path).unlink(missing_ok=True)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0:
        raise ValueError(f"amtool check-config failed: {out}")
    return out


def write(path: Path, receiver: dict | None = None, **kwargs) -> Path:
    """Write the rendered config to ``path`` (checked with amtool when installed)."""
    text = render(receiver, **kwargs)
    if amtool() is not None:
        check(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def render_checked(env: Mapping[str, str] | None = None, rules_file: str | Path | None = None,
                   allow_no_receiver: bool = False) -> str:
    """The config from the environment and the rule file, as the render step writes it.
    Raises NoReceiverError (no destination), ValueError (an incomplete receiver, or amtool
    refusing the result) or RulesError (the rule file)."""
    receiver = receivers_from_env(env)
    if not has_destination(receiver) and not allow_no_receiver:
        raise NoReceiverError(NO_RECEIVER)
    path = rules_path(rules_file)
    text = render(receiver, rules=load_rules(path), source=path.name)
    if amtool() is not None:
        check(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aipulse_alerts.amconfig",
                                description="Render Alertmanager's config from the rule file and AIPULSE_ALERT_* variables.")
    p.add_argument("--out", type=Path, help="write here (default: standard output)")
    p.add_argument("--rules", help="the rule file (default: $AIPULSE_ALERT_RULES or the packaged aipulse_alerts/rules.yaml)")
    p.add_argument("--allow-no-receiver", action="store_true",
                   help="render even when no receiver is set (alerts then reach no one)")
    args = p.parse_args(argv)
    try:
        text = render_checked(rules_file=args.rules, allow_no_receiver=args.allow_no_receiver)
    except (ValueError, RulesError, FileNotFoundError) as err:
        print(f"aipulse_alerts.amconfig: {err}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    # Alertmanager runs as another user (nobody) and must read it: the file is in a volume
    # mounted only into the render step and Alertmanager.
    tmp.chmod(0o644)
    tmp.replace(args.out)
    print(f"aipulse_alerts.amconfig: wrote {args.out} (receiver: "
          f"{', '.join(k.split('_')[0] for k in receivers_from_env() if k.endswith('_configs')) or 'none'})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
