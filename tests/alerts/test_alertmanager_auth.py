"""A real Alertmanager (Debian's prometheus-alertmanager) behind ``--web.config.file``.

The local stack's start (aipulse_local.alertmanager.start) generates the password, writes
its bcrypt hash and starts the binary on a free 127.0.0.1 port: without a credential, or
with a wrong one, every request is refused (401); with the URL's credential the notifier's
alert is accepted and listed back.
"""
from __future__ import annotations

import json
import stat
import time
import urllib.error
import urllib.request

import pytest

from aipulse_alerts import basic_auth, webconfig
from aipulse_alerts.detector import Alert
from aipulse_alerts.notify import Notifier, post_alertmanager
from aipulse_local import alertmanager
from aipulse_local.process import stop_pid
from aipulse_stream.config import Settings

pytestmark = pytest.mark.skipif(alertmanager.binary() is None, reason=alertmanager.INSTALL_HINT)


@pytest.fixture(scope="module")
def am(tmp_path_factory):
    home = tmp_path_factory.mktemp("am-auth")
    settings = Settings.from_env({}, home=home)
    # The webhook is never reached in this test (no route fires within it); it only satisfies
    # the renderer's "at least one receiver".
    # recorded in this test's own state folder (not the session stack's), for reload()
    info = alertmanager.start(settings, home=home / "am", webhook_url="http://127.0.0.1:9/hook",
                              name="alertmanager-auth")
    yield {**info, "settings": settings}
    stop_pid(info["pid"])


def _status(url: str, path: str, auth: str | None = None) -> int:
    req = urllib.request.Request(url + path, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_password_is_generated_owner_only_and_only_its_hash_is_in_the_web_config(am):
    bare, user, password = basic_auth.split(am["url"])
    pw_file = alertmanager.Path(am["config"]).parent / alertmanager.PASSWORD_FILE
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert pw_file.read_text() == password and len(password) >= webconfig.MIN_PASSWORD_CHARS
    web = alertmanager.Path(am["web_config"]).read_text()
    assert password not in web
    cfg = webconfig.yaml.safe_load(web)
    assert cfg["basic_auth_users"][user].startswith("$2b$")
    assert webconfig.verify(cfg, user, password) and not webconfig.verify(cfg, user, password + "x")


def test_without_a_credential_every_endpoint_answers_401(am):
    bare, user, password = basic_auth.split(am["url"])
    for path in ("/-/healthy", "/api/v2/alerts", "/api/v2/silences", "/api/v2/status"):
        assert _status(bare, path) == 401, path
        assert _status(bare, path, basic_auth.header(user, "not-the-password")) == 401, path
    assert _status(bare, "/-/healthy", basic_auth.header(user, password)) == 200
    with pytest.raises(OSError, match="401"):
        post_alertmanager(bare, [])
    assert alertmanager.healthy(am["url"]) and not alertmanager.healthy(bare)


def test_with_the_urls_credential_the_alert_is_accepted(am):
    now = time.time()
    alert = Alert(rule="auth_probe", status="firing",
                  labels={"alertname": "auth_probe", "severity": "info", "service": f"auth-{now:.0f}"},
                  annotations={"summary": "basic auth probe"}, starts_at=now, ends_at=None,
                  value=1.0, threshold=0.5, baseline=None, group={"service": f"auth-{now:.0f}"})
    bare, _, _ = basic_auth.split(am["url"])
    refused = Notifier(bare, flush_timeout_s=1.0)
    refused.send([alert])  # retried until the flush deadline, never accepted
    assert refused.sent["alertmanager"] == 0 and refused.failures["alertmanager"] >= 2
    n = Notifier(am["url"])
    n.send([alert])
    assert n.failures["alertmanager"] == 0 and n.sent["alertmanager"] == 1
    with urllib.request.urlopen(basic_auth.request(am["url"] + "/api/v2/alerts"), timeout=5) as r:
        listed = json.loads(r.read())
    assert [a["labels"]["service"] for a in listed if a["labels"].get("alertname") == "auth_probe"] == \
        [alert.labels["service"]]


def test_reload_logs_in_with_the_recorded_credential(am):
    alertmanager.reload(am["settings"], webhook_url="http://127.0.0.1:9/other-hook", name="alertmanager-auth")
    assert "other-hook" in alertmanager.Path(am["config"]).read_text()
    assert alertmanager.healthy(am["url"])
