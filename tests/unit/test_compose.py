"""docker-compose.yml cannot run here (no Docker engine): keep it correct by reading it."""
from __future__ import annotations

from pathlib import Path

import yaml

from aipulse_stream.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_components():
    services = _compose()["services"]
    for name in ("kafka", "clickhouse", "worker", "migrate", "alertmanager", "prometheus", "grafana"):
        assert name in services, name
    assert services["grafana"]["image"].startswith("grafana/grafana:")  # the official image, never a build
    assert "build" not in services["grafana"]


def test_aipulse_environment_names_real_settings():
    services = _compose()["services"]
    fields = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    for name in ("worker", "migrate"):
        env = services[name]["environment"]
        for key in env:
            assert key in fields, f"{name}: {key} is not a setting"
    # The worker's settings must validate as given.
    env = {k: str(v).replace("${CLICKHOUSE_PASSWORD:-aipulse}", "aipulse") for k, v in services["worker"]["environment"].items()}
    s = Settings.from_env(env)
    assert s.kafka_bootstrap == "kafka:9092" and s.clickhouse_url.startswith("http://")


def test_mounted_files_exist():
    for svc in _compose()["services"].values():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{src} is mounted but missing"


def test_worker_and_migrate_commands_are_aipulse_subcommands():
    from aipulse_cli.main import COMMANDS, load

    for name in ("worker", "migrate"):
        cmd = _compose()["services"][name]["command"]
        assert cmd[0] == "aipulse" and cmd[1] in COMMANDS, cmd
        load(cmd[1])  # its module imports


def test_grafana_gets_every_variable_its_provisioning_reads():
    import re

    env = _compose()["services"]["grafana"]["environment"]
    used = set()
    for f in (ROOT / "dashboards" / "provisioning").rglob("*.yaml"):
        used |= set(re.findall(r"\$\{(AIPULSE_GRAFANA_[A-Z_]+)", f.read_text()))
    optional = {"AIPULSE_GRAFANA_WEBHOOK_URL", "AIPULSE_GRAFANA_SLACK_WEBHOOK_URL"}
    assert used, "no variables found in the provisioning files"
    assert used - optional <= set(env), sorted(used - set(env))
