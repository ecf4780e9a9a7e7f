"""Alerting from one rule file: the rule model, the streaming detector, notification.

- :mod:`aipulse_alerts.rules`: the pydantic model of ``alerts/aipulse_alerts/rules.yaml`` and its loader
  (the Grafana alert provisioning is generated from the same model);
- :mod:`aipulse_alerts.evaluator`: the one evaluator of the whole stream (elected among the
  workers by :mod:`aipulse_alerts.election`), reading merged rows (:mod:`aipulse_alerts.reading`)
  into the :mod:`aipulse_alerts.detector` engine (contributions, evaluation, hysteresis, alert);
- :mod:`aipulse_alerts.notify`: posts firing/resolved alerts to Alertmanager, the
  ``aipulse.alerts`` topic and the ClickHouse ``alerts`` table;
- :mod:`aipulse_alerts.amconfig`: generates and checks Alertmanager's configuration.
"""
