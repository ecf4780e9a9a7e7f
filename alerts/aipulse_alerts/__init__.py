"""Alerting from one rule file: the rule model, the streaming detector, notification.

- :mod:`aipulse_alerts.rules`: the pydantic model of ``alerts/aipulse_alerts/rules.yaml`` and its loader
  (the Grafana alert provisioning is generated from the same model);
- :mod:`aipulse_alerts.detector`: evaluates the rules on every closed window inside the worker;
- :mod:`aipulse_alerts.notify`: posts firing/resolved alerts to Alertmanager, the
  ``aipulse.alerts`` topic and the ClickHouse ``alerts`` table;
- :mod:`aipulse_alerts.amconfig`: generates and checks Alertmanager's configuration.
"""
