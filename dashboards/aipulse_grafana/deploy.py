"""Push datasources, folder, dashboards, alert rules, contact points and policy to a running Grafana.

    aipulse grafana deploy --url https://grafana.example.com --token $GRAFANA_TOKEN

Idempotent: every object is read first and written only when what we manage differs, so a
second run reports "0 changed". The API does not expand ``${VAR}`` as file provisioning
does, so values are expanded here from this process's environment (a missing variable is
an error naming it: a datasource with an empty password is worse than none).
"""
from __future__ import annotations

import json
import os
import re

import yaml

from .provisioning import build_files

_VAR = re.compile(r"\$\{(\w+)\}|\$__env\{(\w+)\}")


class DeployError(RuntimeError):
    pass


def expand_env(obj, env=None):
    env = os.environ if env is None else env

    def sub(m):
        name = m.group(1) or m.group(2)
        if name not in env:
            raise DeployError(f"environment variable {name} is not set")
        return env[name]

    if isinstance(obj, str):
        return _VAR.sub(sub, obj)
    if isinstance(obj, list):
        return [expand_env(x, env) for x in obj]
    if isinstance(obj, dict):
        return {k: expand_env(v, env) for k, v in obj.items()}
    return obj


def _differs(want: dict, have: dict | None) -> bool:
    """True when a field we set is absent or different in what Grafana holds."""
    if have is None:
        return True
    for k, v in want.items():
        if k in ("secureJsonData",):  # never readable back: write only when the object is new
            continue
        h = have.get(k)
        if isinstance(v, dict) and isinstance(h, dict):
            if _differs(v, h):
                return True
        elif h != v:
            return True
    return False


def _get(fn, *args):
    from grafana_client.client import GrafanaClientError

    try:
        return fn(*args)
    except GrafanaClientError as err:
        if getattr(err, "status_code", None) == 404:
            return None
        raise


def deploy(api, env=None, db: str = "aipulse") -> list[str]:
    """Apply everything through a grafana_client.GrafanaApi; returns what was changed."""
    files = build_files(db=db)
    changed: list[str] = []
    for ds in expand_env(yaml.safe_load(files["datasources/aipulse.yaml"])["datasources"], env):
        have = _get(api.datasource.get_datasource_by_uid, ds["uid"])
        if have is None:
            api.datasource.create_datasource(ds)
            changed.append(f"datasource {ds['uid']} created")
        elif _differs({k: v for k, v in ds.items() if k != "secureJsonData"}, have):
            api.datasource.update_datasource_by_uid(ds["uid"], {**have, **ds})
            changed.append(f"datasource {ds['uid']} updated")
    folder = _get(api.folder.get_folder, "aipulse")
    if folder is None:
        api.folder.create_folder("aipulse", uid="aipulse")
        changed.append("folder aipulse created")
    for path, text in sorted(files.items()):
        if not path.startswith("dashboards/json/"):
            continue
        board = json.loads(text)
        have = _get(api.dashboard.get_dashboard, board["uid"])
        if have is None or _differs(board, have.get("dashboard", {})):
            api.dashboard.update_dashboard({"dashboard": board, "folderUid": "aipulse", "overwrite": True,
                                            "message": "aipulse grafana deploy"})
            changed.append(f"dashboard {board['uid']}")
    for group in yaml.safe_load(files["alerting/rules.yaml"])["groups"]:
        want = {"title": group["name"], "interval": _seconds(group["interval"]),
                "rules": [{**r, "folderUID": "aipulse", "ruleGroup": group["name"], "orgID": 1} for r in group["rules"]]}
        have = _get(api.alertingprovisioning.get_rule_group, "aipulse", group["name"])
        if have is None or _differs(_by_uid(want), have) or _rules_differ(want["rules"], have.get("rules", [])):
            api.alertingprovisioning.update_rule_group("aipulse", group["name"], want, disable_provenance=True)
            changed.append(f"rule group {group['name']}")
    have_cps = {cp.get("uid"): cp for cp in (api.alertingprovisioning.get_contactpoints() or [])}
    for cp in expand_env(yaml.safe_load(files["alerting/contact-points.yaml"])["contactPoints"], env):
        for rcv in cp["receivers"]:
            want = {"uid": rcv["uid"], "name": cp["name"], "type": rcv["type"], "settings": rcv["settings"],
                    "disableResolveMessage": rcv.get("disableResolveMessage", False)}
            if rcv["uid"] not in have_cps:
                api.alertingprovisioning.create_contactpoint(want, disable_provenance=True)
                changed.append(f"contact point {rcv['uid']} created")
            elif _differs(want, have_cps[rcv["uid"]]):
                api.alertingprovisioning.update_contactpoint(rcv["uid"], want)
                changed.append(f"contact point {rcv['uid']} updated")
    policy = yaml.safe_load(files["alerting/policies.yaml"])["policies"][0]
    policy = {k: v for k, v in policy.items() if k != "orgId"}
    if _differs(policy, api.alertingprovisioning.get_notification_policy_tree()):
        api.alertingprovisioning.set_notification_policy_tree(policy, disable_provenance=True)
        changed.append("notification policy")
    return changed


def _by_uid(group: dict) -> dict:
    return {k: v for k, v in group.items() if k != "rules"}


def _rules_differ(want: list[dict], have: list[dict]) -> bool:
    by = {r.get("uid"): r for r in have}
    return len(want) != len(have) or any(_differs(w, by.get(w["uid"])) for w in want)


def _seconds(d: str) -> int:
    from aipulse_alerts.rules import parse_duration

    return parse_duration(d)
