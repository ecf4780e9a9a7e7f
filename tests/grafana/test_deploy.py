"""``aipulse grafana deploy`` against an in-memory stand-in of Grafana's HTTP API (grafana-client's
method surface): the first run creates everything, the second changes nothing, a drifted
dashboard is put back. ``export`` writes the committed folder."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from grafana_client.client import GrafanaClientError

from aipulse_grafana.cli import add_arguments, run
from aipulse_grafana.deploy import DeployError, deploy
from aipulse_grafana.provisioning import build_files

ENV = {v: "x" for v in ("AIPULSE_GRAFANA_CH_HOST", "AIPULSE_GRAFANA_CH_PORT", "AIPULSE_GRAFANA_CH_USER",
                        "AIPULSE_GRAFANA_CH_PASSWORD", "AIPULSE_GRAFANA_CH_DATABASE", "AIPULSE_GRAFANA_PROMETHEUS_URL",
                        "AIPULSE_GRAFANA_ALERTMANAGER_URL", "AIPULSE_GRAFANA_PROMETHEUS_USER",
                        "AIPULSE_GRAFANA_PROMETHEUS_PASSWORD", "AIPULSE_GRAFANA_ALERTMANAGER_USER",
                        "AIPULSE_GRAFANA_ALERTMANAGER_PASSWORD")}


def _missing():
    raise GrafanaClientError(404, {}, "not found")


class FakeGrafana:
    """Stores what is written; reads return copies with server-added fields, as Grafana does."""

    def __init__(self):
        self.ds, self.folders, self.boards, self.groups, self.cps, self.policy, self.writes = {}, {}, {}, {}, {}, {}, 0
        s = self
        self.datasource = SimpleNamespace(
            get_datasource_by_uid=lambda uid: copy.deepcopy({**s.ds[uid], "id": 1, "readOnly": False}) if uid in s.ds else _missing(),
            create_datasource=lambda d: s._w(s.ds.__setitem__(d["uid"], {k: v for k, v in d.items() if k != "secureJsonData"})),
            update_datasource_by_uid=lambda uid, d: s._w(s.ds.__setitem__(uid, d)))
        self.folder = SimpleNamespace(
            get_folder=lambda uid: s.folders[uid] if uid in s.folders else _missing(),
            create_folder=lambda title, uid=None: s._w(s.folders.__setitem__(uid, {"uid": uid, "title": title})))
        self.dashboard = SimpleNamespace(
            get_dashboard=lambda uid: ({"dashboard": {**copy.deepcopy(s.boards[uid]), "id": 7, "version": 3}}
                                       if uid in s.boards else _missing()),
            update_dashboard=lambda body: s._w(s.boards.__setitem__(body["dashboard"]["uid"], copy.deepcopy(body["dashboard"]))))
        self.alertingprovisioning = SimpleNamespace(
            get_rule_group=lambda f, g: copy.deepcopy(s.groups[g]) if g in s.groups else _missing(),
            update_rule_group=lambda f, g, body, disable_provenance=False: s._w(s.groups.__setitem__(g, copy.deepcopy(body))),
            get_contactpoints=lambda: list(copy.deepcopy(s.cps).values()),
            create_contactpoint=lambda cp, disable_provenance=False: s._w(s.cps.__setitem__(cp["uid"], cp)),
            update_contactpoint=lambda uid, cp: s._w(s.cps.__setitem__(uid, cp)),
            get_notification_policy_tree=lambda: copy.deepcopy(s.policy),
            set_notification_policy_tree=lambda p, disable_provenance=False: s._w(setattr(s, "policy", copy.deepcopy(p))))

    def _w(self, _):
        self.writes += 1


def test_deploy_twice_changes_nothing_the_second_time():
    g = FakeGrafana()
    first = deploy(g, env=ENV)
    assert len(g.boards) == 7 and len(g.ds) == 3 and g.groups and g.cps and g.policy
    assert len(first) == g.writes
    writes = g.writes
    assert deploy(g, env=ENV) == [] and g.writes == writes
    g.boards["aipulse-cost"]["title"] = "edited in the UI"
    assert deploy(g, env=ENV) == ["dashboard aipulse-cost"]
    assert g.ds["aipulse-clickhouse"]["jsonData"]["username"] == "x"  # ${VAR} expanded by deploy


def test_deploy_names_a_missing_environment_variable():
    with pytest.raises(DeployError, match="AIPULSE_GRAFANA_CH_HOST"):
        deploy(FakeGrafana(), env={})


def test_export_cli_writes_the_provisioning_folder(tmp_path, capsys):
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert run(p.parse_args(["export", "--out", str(tmp_path)])) == 0
    files = build_files()
    assert all((tmp_path / rel).read_text() == text for rel, text in files.items())
    assert run(p.parse_args(["deploy", "--url", "", "--token", ""])) == 2
