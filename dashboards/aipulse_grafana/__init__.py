"""Grafana as code for aipulse: datasources, dashboards and alert rules, generated.

    from aipulse_grafana.provisioning import build_files, export
    files = build_files()                 # {relative path: text}, what is committed
    export("dashboards/provisioning")     # write them (``aipulse grafana export``)

Dashboards are built with grafana-foundation-sdk's typed builders; ClickHouse panels use
the small query model of the ``grafana-clickhouse-datasource`` plugin (:mod:`.chquery`).
Alert rules come from the single rule file ``alerts/aipulse_alerts/rules.yaml`` (:mod:`.alerting`).
No Grafana code lives here: the tests prove every query by running it on the ClickHouse
engine after expanding the plugin's macros the way the plugin does (:mod:`.plugin_macros`,
shipped because ``aipulse grafana render`` runs the panels' queries with it too) and evaluate
alert rules with Grafana's reduce/threshold semantics (tests/oracles/grafana_expressions.py,
test-only).
"""
