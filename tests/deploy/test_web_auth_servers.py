"""Compose's basic auth, run for real: Debian's prometheus-alertmanager and prometheus binaries
on the files the ``web-config`` step renders, Prometheus on deploy/prometheus/prometheus.yml.

The step's output folder is a temporary one (compose: the ``web-config`` volume at
/etc/prometheus/web); the scrape targets point at the two servers' free 127.0.0.1 ports (the
worker job, found through Docker's DNS, is left out). Shown: both servers answer 401 without
the credential, Prometheus logs in to Alertmanager and to itself with the password files
(``up == 1`` for both jobs), and its API answers with the credential.
"""
from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from aipulse_alerts import basic_auth, webconfig
from aipulse_local import alertmanager
from aipulse_local.process import free_port, spawn, stop_pid, wait_until
from aipulse_stream.config import Settings
from composefile import ROOT
from support import wait_for

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(alertmanager.binary() is None or PROMETHEUS is None,
                                reason="needs prometheus-alertmanager and prometheus (Debian packages)")
COMPOSE_WEB_DIR = "/etc/prometheus/web"
PASSWORDS = {"ALERTMANAGER_PASSWORD": "am-" + "7" * 21, "PROMETHEUS_PASSWORD": "prom-" + "3" * 19}


def _code(url: str) -> int:
    try:
        with urllib.request.urlopen(basic_auth.request(url), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code
    except urllib.error.URLError:   # not listening (yet)
        return 0


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web-auth")
    web = tmp / "web"
    webconfig.render(["alertmanager", "prometheus"], web, PASSWORDS)
    am_port, prom_port = free_port(), free_port()
    cfg = alertmanager.write_config(Settings.from_env({}, home=tmp), tmp / "am", webhook_url="http://127.0.0.1:9/hook")
    pids = []
    try:
        am_log = tmp / "am.log"
        pids.append(spawn([alertmanager.binary(), f"--config.file={cfg}", f"--web.config.file={web}/alertmanager-web.yml",
                           f"--storage.path={tmp / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                           "--cluster.listen-address="], am_log))
        am_url = f"http://aipulse:{PASSWORDS['ALERTMANAGER_PASSWORD']}@127.0.0.1:{am_port}"
        wait_until(lambda: alertmanager.healthy(am_url), 30, pids[-1], "alertmanager", am_log)

        prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
        prom["global"]["scrape_interval"] = "1s"
        jobs = []
        for job in prom["scrape_configs"]:
            if "dns_sd_configs" in job:
                continue
            auth = job.get("basic_auth")
            if auth:
                auth["password_file"] = auth["password_file"].replace(COMPOSE_WEB_DIR, str(web))
            port = {"alertmanager": am_port, "prometheus": prom_port}[job["job_name"]]
            job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
            jobs.append(job)
        prom["scrape_configs"] = jobs
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom))
        prom_log = tmp / "prometheus.log"
        pids.append(spawn([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                           f"--web.config.file={web}/prometheus-web.yml", f"--storage.tsdb.path={tmp / 'tsdb'}",
                           f"--web.listen-address=127.0.0.1:{prom_port}"], prom_log))
        prom_url = f"http://aipulse:{PASSWORDS['PROMETHEUS_PASSWORD']}@127.0.0.1:{prom_port}"
        wait_until(lambda: _code(prom_url + "/-/healthy") == 200, 60, pids[-1], "prometheus", prom_log)
        yield {"alertmanager": am_url, "prometheus": prom_url}
    finally:
        for pid in pids:
            stop_pid(pid)


@pytest.mark.parametrize("server", ["alertmanager", "prometheus"])
def test_without_the_credential_every_path_is_refused(servers, server):
    url = servers[server]
    bare, user, password = basic_auth.split(url)
    for path in ("/-/healthy", "/metrics", "/api/v2/status" if server == "alertmanager" else "/api/v1/targets"):
        assert _code(bare + path) == 401, path
        assert _code(f"http://{user}:wrong-{password}@{bare.split('//')[1]}{path}") == 401, path
        assert _code(url + path) == 200, path


def test_prometheus_scrapes_alertmanager_and_itself_with_the_password_files(servers):
    def up() -> dict:
        q = urllib.parse.urlencode({"query": "up"})
        with urllib.request.urlopen(basic_auth.request(f"{servers['prometheus']}/api/v1/query?{q}"), timeout=5) as r:
            result = json.loads(r.read())["data"]["result"]
        return {s["metric"]["job"]: s["value"][1] for s in result}

    wait_for(lambda: up() == {"alertmanager": "1", "prometheus": "1"}, timeout=30,
             what="up == 1 for the alertmanager and prometheus jobs")
