"""Datasource provisioning: ClickHouse (read-only user), Prometheus, Alertmanager.

Credentials and addresses come from the environment of the Grafana process; Grafana
expands ``${VAR}`` in provisioning files at start (docker-compose.yml sets them)::

    AIPULSE_GRAFANA_CH_HOST, AIPULSE_GRAFANA_CH_PORT, AIPULSE_GRAFANA_CH_USER,
    AIPULSE_GRAFANA_CH_PASSWORD, AIPULSE_GRAFANA_CH_DATABASE,
    AIPULSE_GRAFANA_PROMETHEUS_URL, AIPULSE_GRAFANA_PROMETHEUS_USER, AIPULSE_GRAFANA_PROMETHEUS_PASSWORD,
    AIPULSE_GRAFANA_ALERTMANAGER_URL, AIPULSE_GRAFANA_ALERTMANAGER_USER, AIPULSE_GRAFANA_ALERTMANAGER_PASSWORD

Prometheus and Alertmanager require basic auth (their ``--web.config.file``, docs/deploy.md):
Grafana's proxy sends the user and password given here.

The ClickHouse user must be read-only (docs/grafana.md gives the CREATE USER statement):
dashboards can be edited by viewers-turned-editors, and nothing typed into a panel should
be able to write to the tables the pipeline owns.
"""
from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

CLICKHOUSE_UID, PROMETHEUS_UID, ALERTMANAGER_UID = "aipulse-clickhouse", "aipulse-prometheus", "aipulse-alertmanager"
CLICKHOUSE_REF = dm.DataSourceRef(type_val="grafana-clickhouse-datasource", uid=CLICKHOUSE_UID)
PROMETHEUS_REF = dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
ALERTMANAGER_REF = dm.DataSourceRef(type_val="alertmanager", uid=ALERTMANAGER_UID)
ENV_VARS = ("AIPULSE_GRAFANA_CH_HOST", "AIPULSE_GRAFANA_CH_PORT", "AIPULSE_GRAFANA_CH_USER",
            "AIPULSE_GRAFANA_CH_PASSWORD", "AIPULSE_GRAFANA_CH_DATABASE",
            "AIPULSE_GRAFANA_PROMETHEUS_URL", "AIPULSE_GRAFANA_PROMETHEUS_USER", "AIPULSE_GRAFANA_PROMETHEUS_PASSWORD",
            "AIPULSE_GRAFANA_ALERTMANAGER_URL", "AIPULSE_GRAFANA_ALERTMANAGER_USER",
            "AIPULSE_GRAFANA_ALERTMANAGER_PASSWORD")


def datasources() -> list[dict]:
    """The ``datasources:`` list of the provisioning file (also what deploy pushes)."""
    return [
        {
            "name": "aipulse ClickHouse", "uid": CLICKHOUSE_UID, "type": CLICKHOUSE_REF.type_val,
            "access": "proxy", "isDefault": True, "editable": False,
            "jsonData": {
                "host": "${AIPULSE_GRAFANA_CH_HOST}", "port": "${AIPULSE_GRAFANA_CH_PORT}",
                "protocol": "http", "secure": False, "username": "${AIPULSE_GRAFANA_CH_USER}",
                "defaultDatabase": "${AIPULSE_GRAFANA_CH_DATABASE}",
            },
            "secureJsonData": {"password": "${AIPULSE_GRAFANA_CH_PASSWORD}"},
        },
        {
            "name": "aipulse Prometheus", "uid": PROMETHEUS_UID, "type": "prometheus", "access": "proxy",
            "url": "${AIPULSE_GRAFANA_PROMETHEUS_URL}", "editable": False,
            "basicAuth": True, "basicAuthUser": "${AIPULSE_GRAFANA_PROMETHEUS_USER}",
            "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
            "secureJsonData": {"basicAuthPassword": "${AIPULSE_GRAFANA_PROMETHEUS_PASSWORD}"},
        },
        {
            "name": "aipulse Alertmanager", "uid": ALERTMANAGER_UID, "type": "alertmanager", "access": "proxy",
            "url": "${AIPULSE_GRAFANA_ALERTMANAGER_URL}", "editable": False,
            "basicAuth": True, "basicAuthUser": "${AIPULSE_GRAFANA_ALERTMANAGER_USER}",
            "jsonData": {"implementation": "prometheus", "handleGrafanaManagedAlerts": False},
            "secureJsonData": {"basicAuthPassword": "${AIPULSE_GRAFANA_ALERTMANAGER_PASSWORD}"},
        },
    ]


def provisioning() -> dict:
    return {"apiVersion": 1, "datasources": datasources()}
