"""docker-compose.yml cannot run here (no Docker engine): keep it correct by reading it, and
check every service against the code's names, ports and variables. `docker compose config`
runs where the plugin exists."""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from aipulse_alerts import basic_auth, webconfig
from aipulse_alerts.amconfig import RECEIVER_VARS
from aipulse_alerts.rules import RULES_ENV
from aipulse_stream.config import ENV_PREFIX, Settings
from composefile import COMPOSE, ROOT, MissingVariable, env_example, load, raw, refs, scalars

USERS_XML = ROOT / "deploy" / "clickhouse" / "users.d" / "aipulse-users.xml"
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")
# Receiver settings are each optional; at least one is required, and the render step
# (python -m aipulse_alerts.amconfig) refuses without (tests/deploy/test_alertmanager_config.py).
OPTIONAL_SECRETS = set(RECEIVER_VARS)
# AIPULSE_* variables read outside Settings (the rule file's path).
NON_SETTINGS = {RULES_ENV}
STATEFUL = {"kafka": "/var/lib/kafka/data", "clickhouse": "/var/lib/clickhouse", "alertmanager": "/alertmanager",
            "prometheus": "/prometheus", "grafana": "/var/lib/grafana"}


def _fake_env() -> dict[str, str]:
    """.env.example with every empty value filled (a distinct URL-safe value per name)."""
    env = {k: v or f"x{i}-{k.lower()}" for i, (k, v) in enumerate(env_example().items())}
    env["AIPULSE_ALERT_WEBHOOK_URL"] = "http://hooks.example:8080/alert"
    return env


def _services() -> dict:
    return load(_fake_env())["services"]


def _one_shot(svc: dict) -> bool:
    return str(svc.get("restart", "")) == "no"


def _env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --- secrets and the env file ---------------------------------------------------------------

def test_every_secret_is_required_and_has_no_default():
    seen = set()
    for m in refs(scalars()):
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        if SECRET.search(name) and name not in OPTIONAL_SECRETS:
            assert op == ":?" and arg.strip(), f"{m.group(0)}: a secret must be ${{{name}:?message}}"
            assert name in arg, f"{m.group(0)}: the message should name the variable to set"
            seen.add(name)
    assert {"AIPULSE_CLICKHOUSE_WRITER_PASSWORD", "AIPULSE_CLICKHOUSE_MIGRATOR_PASSWORD",
            "AIPULSE_CLICKHOUSE_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
            "ALERTMANAGER_PASSWORD", "PROMETHEUS_PASSWORD"} <= seen, seen


def test_every_variable_is_written_in_braces():
    # `$NAME` also interpolates in Compose; only the ${...} forms are checked above.
    bare = re.findall(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)", scalars().replace("$$", ""))
    assert not bare, f"write these as ${{NAME:?...}} or ${{NAME:-...}}: {bare}"


def test_env_example_lists_exactly_the_variables_the_compose_file_reads():
    used = {m.group("name") for m in refs(scalars())}
    example = env_example()
    assert used == set(example), {"missing from .env.example": sorted(used - set(example)),
                                  "not read by docker-compose.yml": sorted(set(example) - used)}
    for name, value in example.items():
        if SECRET.search(name) or name in OPTIONAL_SECRETS:
            assert value == "", f".env.example ships a value for {name}"


@pytest.mark.parametrize("secret", ["AIPULSE_CLICKHOUSE_WRITER_PASSWORD", "AIPULSE_CLICKHOUSE_MIGRATOR_PASSWORD",
                                    "AIPULSE_CLICKHOUSE_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
                                    "ALERTMANAGER_PASSWORD", "PROMETHEUS_PASSWORD"])
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_stack_refuses_to_start_without_each_secret(secret, how):
    env = _fake_env()
    if how == "unset":
        del env[secret]
    else:
        env[secret] = ""
    with pytest.raises(MissingVariable, match=f"{secret}: set {secret} in .env"):
        load(env)
    load(_fake_env())   # and with all of them it loads


# --- services: health, restarts, volumes, ports ---------------------------------------------

def test_services_are_the_production_components():
    services = _services()
    assert set(services) == {"kafka", "clickhouse", "migrate", "worker", "alertmanager-config", "web-config",
                             "alertmanager", "prometheus", "grafana"}
    assert services["grafana"]["image"].startswith("grafana/grafana:") and "build" not in services["grafana"]


def test_long_running_services_have_a_healthcheck_and_a_restart_policy():
    for name, svc in _services().items():
        if _one_shot(svc):
            continue
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: restart policy"
        hc = svc.get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), f"{name}: no healthcheck"
        assert hc["test"][0] in ("CMD", "CMD-SHELL"), name


def test_one_shot_services_gate_the_services_that_need_them():
    services = _services()
    one_shots = {n for n, s in services.items() if _one_shot(s)}
    assert one_shots == {"migrate", "alertmanager-config", "web-config"}
    for name in one_shots:
        waiting = [n for n, s in services.items()
                   if (s.get("depends_on") or {}).get(name, {}).get("condition") == "service_completed_successfully"]
        assert waiting, f"nothing waits for {name} to complete"


def test_published_ports_are_loopback_only():
    published = {}
    for name, svc in _services().items():
        for p in svc.get("ports", []):
            assert isinstance(p, str) and p.startswith("127.0.0.1:"), f"{name}: {p} is published beyond loopback"
            published[name] = p
    # Alertmanager (silences every page) and Prometheus have no credential of their own.
    assert "alertmanager" not in published and "prometheus" not in published
    assert set(published) == {"kafka", "clickhouse", "grafana"}


def test_state_lives_in_named_volumes():
    doc = raw()
    declared = set(doc.get("volumes") or {})
    for name, svc in _services().items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name}: {src} is mounted but missing"
            else:
                assert src in declared, f"{name}: volume {src} is not declared"
    for name, path in STATEFUL.items():
        targets = {v.split(":")[1] for v in _services()[name].get("volumes", []) if not v.startswith("./")}
        assert path in targets, f"{name}: {path} is not on a named volume"


# --- the aipulse image and its services -------------------------------------------------------

def test_aipulse_environment_names_real_settings_and_validates():
    services, secrets = _services(), _fake_env()
    fields = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    for name in ("worker", "migrate"):
        env = _env(services[name])
        unknown = {k for k in env if k.startswith(ENV_PREFIX)} - fields - NON_SETTINGS
        assert not unknown, f"{name}: not settings: {sorted(unknown)}"
        s = Settings.from_env(env)
        assert s.kafka_bootstrap == "kafka:9092"
        # Alertmanager's basic auth, with the password its web config is rendered from
        assert s.alertmanager_url == \
            f"http://{webconfig.DEFAULT_USER}:{secrets['ALERTMANAGER_PASSWORD']}@alertmanager:9093"


def _ch_users() -> dict[str, str]:
    """ClickHouse user name -> the variable its password comes from."""
    users = ET.parse(USERS_XML).getroot().find("users")
    return {u.tag: u.find("password").get("from_env") for u in users if u.find("password") is not None}


def test_each_client_logs_in_as_its_own_clickhouse_user_with_that_users_password():
    env, services = _fake_env(), _services()
    users = _ch_users()
    for name, user in (("worker", "aipulse_writer"), ("migrate", "aipulse_migrator")):
        url = _env(services[name])["AIPULSE_CLICKHOUSE_URL"]
        m = re.fullmatch(r"http://([^:@]+):([^@]+)@clickhouse:8123", url)
        assert m, f"{name}: {url}"
        assert m.group(1) == user and m.group(2) == env[users[user]], name
    g = _env(services["grafana"])
    assert g["AIPULSE_GRAFANA_CH_USER"] == "aipulse_reader"
    assert g["AIPULSE_GRAFANA_CH_PASSWORD"] == env[users["aipulse_reader"]]
    assert g["AIPULSE_GRAFANA_CH_DATABASE"] == Settings.from_env({}).database
    # the server gets every variable its users file reads, with the same values
    ch = _env(services["clickhouse"])
    for user, var in users.items():
        assert ch.get(var) == env[var], f"clickhouse: {var} ({user}'s password) is not passed"
    assert ch.get("CLICKHOUSE_SKIP_USER_SETUP") == "1"
    assert "CLICKHOUSE_PASSWORD" not in ch and "CLICKHOUSE_USER" not in ch


def test_clickhouse_mounts_the_users_and_server_files_into_the_images_include_folders():
    vols = _services()["clickhouse"]["volumes"]
    want = {"./deploy/clickhouse/users.d/aipulse-users.xml": "/etc/clickhouse-server/users.d/aipulse-users.xml",
            "./deploy/clickhouse/config.d/aipulse-server.xml": "/etc/clickhouse-server/config.d/aipulse-server.xml"}
    got = {v.split(":")[0]: v.split(":")[1] for v in vols}
    for src, dst in want.items():
        assert got.get(src) == dst, (src, got)


def test_grafana_gets_every_variable_its_provisioning_reads_and_no_default_password():
    g = _env(_services()["grafana"])
    used = set()
    for f in (ROOT / "dashboards" / "provisioning").rglob("*.yaml"):
        used |= set(re.findall(r"\$\{(AIPULSE_GRAFANA_[A-Z_]+)", f.read_text()))
    optional = {"AIPULSE_GRAFANA_WEBHOOK_URL", "AIPULSE_GRAFANA_SLACK_WEBHOOK_URL"}
    assert used, "no variables found in the provisioning files"
    assert used - optional <= set(g), sorted(used - set(g))
    assert g["GF_SECURITY_ADMIN_PASSWORD"] == _fake_env()["GRAFANA_ADMIN_PASSWORD"]
    assert g["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and g["GF_USERS_ALLOW_SIGN_UP"] == "false"
    for key, url in g.items():   # Grafana's datasources point at services that exist, on their ports
        if key.endswith("_URL") and url.startswith("http://"):
            host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
            assert host in _services(), (key, url)
            assert f":{port}" in " ".join(map(str, _services()[host].get("command") or [])) or \
                (host, port) in {("prometheus", "9090"), ("alertmanager", "9093")}, (key, url)


def test_prometheus_scrapes_every_worker_on_the_port_the_worker_serves():
    services = _services()
    w = _env(services["worker"])
    port = int(w["AIPULSE_WORKER_METRICS_PORT"])
    s = Settings.from_env(w)
    assert s.worker_metrics_host == "0.0.0.0", "the worker's /metrics must listen on the container interface"
    assert s.worker_metrics_port == port
    prom_file = [v.split(":")[0] for v in services["prometheus"]["volumes"] if v.endswith("prometheus.yml:ro")][0]
    prom = yaml.safe_load((ROOT / prom_file).read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    sd = jobs["aipulse-worker"]["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and sd["type"] == "A" and sd["port"] == port   # one A record per replica
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert f"127.0.0.1:{port}/metrics" in " ".join(services["worker"]["healthcheck"]["test"])
    assert jobs["alertmanager"]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "--web.listen-address=:9093" in services["alertmanager"]["command"]


def test_alertmanager_starts_on_the_rendered_config_only():
    services = _services()
    render, am = services["alertmanager-config"], services["alertmanager"]
    assert render["command"][:3] == ["python", "-m", "aipulse_alerts.amconfig"]
    out = render["command"][render["command"].index("--out") + 1]
    assert "--allow-no-receiver" not in render["command"]
    vol, mount = render["volumes"][0].split(":")[:2]
    assert out.startswith(mount + "/")
    am_mounts = {v.split(":")[0]: v.split(":")[1] for v in am["volumes"]}
    cfg = next(a for a in am["command"] if a.startswith("--config.file="))
    assert cfg == f"--config.file={am_mounts[vol]}/{Path(out).name}"
    assert am["depends_on"]["alertmanager-config"]["condition"] == "service_completed_successfully"
    # exactly the receiver variables the renderer reads, each passed through, and the rule file
    env = _env(render)
    assert set(env) == set(RECEIVER_VARS) | {RULES_ENV}
    for var in RECEIVER_VARS:
        assert re.fullmatch(rf"\$\{{{var}:-\}}", raw()["services"]["alertmanager-config"]["environment"][var])


# --- basic auth of Alertmanager and Prometheus -------------------------------------------------

WEB_SERVERS = {"alertmanager": "9093", "prometheus": "9090"}


def _mount_of(svc: dict, volume: str) -> str:
    return next(v.split(":")[1] for v in svc.get("volumes", []) if v.split(":")[0] == volume)


def test_alertmanager_and_prometheus_start_on_the_rendered_web_config():
    services = _services()
    render = services["web-config"]
    cmd = render["command"]
    assert cmd[:3] == ["python", "-m", "aipulse_alerts.webconfig"]
    out_dir = cmd[cmd.index("--out-dir") + 1]
    assert cmd[cmd.index("--out-dir") + 2:] == list(WEB_SERVERS)
    volume = render["volumes"][0].split(":")[0]
    assert _mount_of(render, volume) == out_dir
    # exactly the passwords it hashes, each required
    assert set(_env(render)) == {f"{n.upper()}_PASSWORD" for n in WEB_SERVERS}
    for name, port in WEB_SERVERS.items():
        svc = services[name]
        mount = _mount_of(svc, volume)
        assert svc["volumes"][[v.split(":")[0] for v in svc["volumes"]].index(volume)].endswith(":ro"), name
        assert f"--web.config.file={mount}/{name}-web.yml" in svc["command"], name
        assert svc["depends_on"]["web-config"]["condition"] == "service_completed_successfully", name
        # its healthcheck logs in too (/-/healthy is behind the same auth)
        hc = " ".join(svc["healthcheck"]["test"])
        assert f"http://{webconfig.DEFAULT_USER}:$(cat {mount}/{name}.password)@127.0.0.1:{port}/-/healthy" in hc, name
    assert "web-config" not in [v.split(":")[0] for s in ("worker", "grafana") for v in services[s].get("volumes", [])]


def test_the_web_config_step_hashes_the_env_passwords_and_refuses_without_them(tmp_path):
    env = _fake_env()
    render = _services()["web-config"]
    names = render["command"][render["command"].index("--out-dir") + 2:]
    webconfig.render(names, tmp_path, {k: v for k, v in _env(render).items()})
    for name in names:
        password = env[f"{name.upper()}_PASSWORD"]
        text = (tmp_path / f"{name}-web.yml").read_text()
        assert password not in text
        cfg = yaml.safe_load(text)
        assert set(cfg) == {"basic_auth_users"}
        assert webconfig.verify(cfg, webconfig.DEFAULT_USER, password)
        assert not webconfig.verify(cfg, webconfig.DEFAULT_USER, password[:-1])
        assert (tmp_path / f"{name}.password").read_text() == password
    code = f"from aipulse_alerts.webconfig import main; raise SystemExit(main(['--out-dir', {str(tmp_path / 'x')!r}, *{names!r}]))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "ALERTMANAGER_PASSWORD": env["ALERTMANAGER_PASSWORD"]})
    assert r.returncode == 2 and r.stderr.strip() == \
        "error: set PROMETHEUS_PASSWORD: a password for basic auth (e.g. `openssl rand -hex 24`)", r.stderr
    assert not (tmp_path / "x").exists(), "nothing is written while a password is missing"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool (apt-get install prometheus)")
def test_prometheus_own_checker_accepts_the_rendered_web_config_and_the_scrape_config(tmp_path):
    files = webconfig.render(list(WEB_SERVERS), tmp_path, _fake_env())
    for f in files:
        if f.name.endswith("-web.yml"):
            r = subprocess.run(["promtool", "check", "web-config", str(f)], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["promtool", "check", "config", str(ROOT / "deploy" / "prometheus" / "prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_logs_in_where_auth_is_required_and_scrapes_workers_without():
    services = _services()
    prom_svc = services["prometheus"]
    mount = _mount_of(prom_svc, services["web-config"]["volumes"][0].split(":")[0])
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for job, server in (("alertmanager", "alertmanager"), ("prometheus", "prometheus")):
        auth = jobs[job]["basic_auth"]
        assert auth == {"username": webconfig.DEFAULT_USER, "password_file": f"{mount}/{server}.password"}, job
    assert "basic_auth" not in jobs["aipulse-worker"]   # docs/deploy.md says why


def test_every_client_of_alertmanager_and_prometheus_sends_the_matching_credential():
    env, services = _fake_env(), _services()
    bare, user, password = basic_auth.split(_env(services["worker"])["AIPULSE_ALERTMANAGER_URL"])
    assert (bare, user, password) == ("http://alertmanager:9093", webconfig.DEFAULT_USER, env["ALERTMANAGER_PASSWORD"])
    g = _env(services["grafana"])
    for name in WEB_SERVERS:
        assert g[f"AIPULSE_GRAFANA_{name.upper()}_USER"] == webconfig.DEFAULT_USER, name
        assert g[f"AIPULSE_GRAFANA_{name.upper()}_PASSWORD"] == env[f"{name.upper()}_PASSWORD"], name
    # ... and Grafana's provisioning hands those variables to the datasources and the contact point
    prov = ROOT / "dashboards" / "provisioning"
    ds = {d["type"]: d for d in yaml.safe_load((prov / "datasources" / "aipulse.yaml").read_text())["datasources"]}
    for name in WEB_SERVERS:
        d = ds[name]
        assert d["basicAuth"] is True and d["basicAuthUser"] == f"${{AIPULSE_GRAFANA_{name.upper()}_USER}}", name
        assert d["secureJsonData"]["basicAuthPassword"] == f"${{AIPULSE_GRAFANA_{name.upper()}_PASSWORD}}", name
    cps = yaml.safe_load((prov / "alerting" / "contact-points.yaml").read_text())["contactPoints"]
    am = next(r for cp in cps for r in cp["receivers"] if r["type"] == "prometheus-alertmanager")["settings"]
    assert am["basicAuthUser"] == "${AIPULSE_GRAFANA_ALERTMANAGER_USER}"
    assert am["basicAuthPassword"] == "${AIPULSE_GRAFANA_ALERTMANAGER_PASSWORD}"


def test_the_detector_and_the_render_step_read_the_repos_rule_file():
    # The wheel carries aipulse_alerts/rules.yaml (package data); compose mounts the repo's
    # file over a path both services are pointed at, so an edit needs no rebuild.
    assert (ROOT / "alerts" / "aipulse_alerts" / "rules.yaml").exists()
    for name in ("worker", "alertmanager-config"):
        svc = _services()[name]
        path = _env(svc)[RULES_ENV]
        assert f"./alerts/aipulse_alerts/rules.yaml:{path}:ro" in svc["volumes"], name


def test_kafka_is_the_same_version_as_the_local_stack():
    pom = ET.parse(ROOT / "services" / "aipulse_local" / "pom.xml").getroot()
    ns = {"m": pom.tag.split("}")[0].strip("{")} if pom.tag.startswith("{") else {}
    version = pom.find("m:properties/m:kafka.version" if ns else "properties/kafka.version", ns).text
    assert _services()["kafka"]["image"] == f"apache/kafka:{version}"


def test_kafka_keeps_its_log_on_the_named_volume():
    k = _services()["kafka"]
    assert _env(k)["KAFKA_LOG_DIRS"] == STATEFUL["kafka"]


def test_kafka_host_listener_is_advertised_on_the_published_port():
    k = _services()["kafka"]
    env = _env(k)
    host_port = k["ports"][0].split(":")[1]
    assert f"HOST://127.0.0.1:{host_port}" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_worker_and_render_commands_are_importable():
    services = _services()
    for name in ("alertmanager-config", "web-config"):
        cmd = services[name]["command"]
        assert cmd[:2] == ["python", "-m"]
        importlib.import_module(cmd[2])
    # `aipulse worker` and `aipulse migrate`: the console script pyproject installs
    assert services["worker"]["command"] == ["aipulse", "worker"]
    assert services["migrate"]["command"] == ["aipulse", "migrate"]
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["aipulse"]
    mod, fn = target.split(":")
    for sub, word in (("migrate", "migrat"), ("worker", "worker")):
        r = subprocess.run([sys.executable, "-c", f"import sys; from {mod} import {fn} as m; sys.argv = ['aipulse', '{sub}', '--help']; m()"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and word in r.stdout, r.stderr[-500:]


# --- the image ----------------------------------------------------------------------------------

def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_image_is_multi_stage_slim_and_non_root():
    text = _dockerfile()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "single-stage image"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)
    assert base.endswith("-slim"), base
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    last = text[text.rindex("\nFROM"):]
    assert "USER" in last and "pip install" not in last, "the final stage should only copy the venv"
    for name, svc in _services().items():
        if "build" in svc:
            assert svc.get("user") in (None, "10001:10001"), f"{name} overrides the image's user"
            assert "ALL" in svc.get("cap_drop", []), name


def test_image_installs_only_named_dependencies_of_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    known = {re.split(r"[<>=\[ ]", d)[0].lower(): d for d in meta["dependencies"] + meta["optional-dependencies"]["server"]}
    install = next(ln for ln in re.findall(r"^RUN (.*)$", _dockerfile().replace("\\\n", " "), re.M)
                   if "pip install" in ln and "--no-deps" in ln)
    pinned = re.findall(r'"([A-Za-z0-9_.-]+)((?:[<>=!~]=?[^"]*)?)"', install)
    assert pinned
    for name, spec in pinned:
        assert name.lower() in known, f"Dockerfile installs {name}, which pyproject.toml does not name"
        assert known[name.lower()].replace(" ", "").startswith(f"{name}{spec}"), (name, spec, known[name.lower()])
    for dep in meta["dependencies"]:   # the SDK's own dependencies are all there
        assert re.split(r"[<>=\[ ]", dep)[0].lower() in {n.lower() for n, _ in pinned}, dep


def _image_packages() -> set[str]:
    install = next(ln for ln in re.findall(r"^RUN (.*)$", _dockerfile().replace("\\\n", " "), re.M)
                   if "pip install" in ln and "--no-deps" in ln)
    return {n.lower() for n, _ in re.findall(r'"([A-Za-z0-9_.-]+)((?:[<>=!~]=?[^"]*)?)"', install)}


def test_image_commands_start_without_the_packages_the_image_leaves_out(tmp_path):
    """The worker, `aipulse migrate` and the render step, with every server-extra package the
    Dockerfile does not install made unimportable (as in the image)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    server = {re.split(r"[<>=\[ ]", d)[0].lower() for d in meta["optional-dependencies"]["server"]}
    left_out = sorted(n.replace("-", "_") for n in server - _image_packages())
    assert "chdb" in left_out and "matplotlib" in left_out, left_out
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["aipulse"]
    mod, fn = target.split(":")
    code = f"""
import importlib, importlib.abc, sys, contextlib, io
LEFT_OUT = {left_out!r}
class LeftOut(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LEFT_OUT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the image)")
sys.meta_path.insert(0, LeftOut())
importlib.import_module("aipulse_stream.worker")
from {mod} import {fn} as cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        cli(["worker", "--help"])
    except SystemExit as e:
        assert e.code == 0, e.code
from aipulse_alerts.amconfig import main as render
assert render(["--out", {str(tmp_path / "am.yml")!r}]) == 0
from aipulse_alerts.webconfig import main as render_web
assert render_web(["--out-dir", {str(tmp_path / "web")!r}, "alertmanager"]) == 0
from {mod} import {fn} as cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        cli(["migrate", "--help"])
    except SystemExit as e:
        assert e.code == 0, e.code
print([m for m in LEFT_OUT if m in sys.modules])
"""
    env = {**__import__("os").environ, "AIPULSE_ALERT_WEBHOOK_URL": "http://hooks.example:8080/alert",
           "ALERTMANAGER_PASSWORD": "a-password-of-24-letters"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout   # after the render steps' "wrote ..." lines


def test_dockerignore_keeps_local_state_out_and_the_packages_in():
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".env", ".venv", ".cache", ".aipulse", ".git"} <= ignored
    where = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["where"]
    for folder in where + ["pyproject.toml", "README.md"]:
        assert folder not in ignored and (ROOT / folder).exists(), folder


# --- Docker's own parsers ---------------------------------------------------------------------------

COMPOSECHECK = Path(__file__).with_name("composecheck")
COMPOSECHECK_BIN = ROOT / ".cache" / "composecheck" / "composecheck"


def _composecheck() -> Path | None:
    """Build tests/deploy/composecheck (compose-go, the loader `docker compose` uses) once into
    .cache/; None when there is no Go toolchain or its modules cannot be fetched."""
    if COMPOSECHECK_BIN.exists() and COMPOSECHECK_BIN.stat().st_mtime >= (COMPOSECHECK / "main.go").stat().st_mtime:
        return COMPOSECHECK_BIN
    go = shutil.which("go") or (Path("/usr/local/go/bin/go") if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        return None
    r = subprocess.run([str(go), "build", "-mod=readonly", "-o", str(COMPOSECHECK_BIN), "."], cwd=COMPOSECHECK,
                       capture_output=True, text=True, timeout=300)
    return COMPOSECHECK_BIN if r.returncode == 0 else None


def _check(cli: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return subprocess.run(cli(env_file) if callable(cli) else cli, capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin:/usr/local/bin"})


def test_compose_go_loads_the_file_and_refuses_a_missing_secret(tmp_path):
    binary = _composecheck()
    if binary is None:
        pytest.skip("no Go toolchain (or its module proxy) to build tests/deploy/composecheck")
    cli = lambda env_file: [str(binary), str(COMPOSE), str(env_file), str(ROOT)]  # noqa: E731
    ok = _check(cli, _fake_env(), tmp_path)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{len(_services())} services", ok.stdout + ok.stderr
    for secret in ("AIPULSE_CLICKHOUSE_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "ALERTMANAGER_PASSWORD",
                   "PROMETHEUS_PASSWORD"):
        env = _fake_env()
        del env[secret]
        bad = _check(cli, env, tmp_path)
        assert bad.returncode == 1 and f"required variable {secret} is missing a value: set {secret} in .env" \
            in bad.stdout, bad.stdout



def _compose_cli() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]):
            r = subprocess.run(cmd + ["version"], capture_output=True, text=True)
            if r.returncode == 0:
                return cmd
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no docker compose plugin (nor docker-compose) on this machine")
def test_docker_compose_config_accepts_the_file_and_refuses_a_missing_secret(tmp_path):
    cli = _compose_cli()
    env_file = tmp_path / "full.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in _fake_env().items()))
    ok = subprocess.run(cli + ["-f", str(COMPOSE), "--env-file", str(env_file), "config", "--quiet"],
                        capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert ok.returncode == 0, ok.stderr
    env = _fake_env()
    del env["AIPULSE_CLICKHOUSE_READER_PASSWORD"]
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    bad = subprocess.run(cli + ["-f", str(COMPOSE), "--env-file", str(env_file), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert bad.returncode != 0 and "AIPULSE_CLICKHOUSE_READER_PASSWORD" in bad.stderr, bad.stderr
