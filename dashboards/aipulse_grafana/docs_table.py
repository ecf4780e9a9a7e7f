"""The README/docs table: every dashboard panel and alert rule with the question it answers.

    python -m aipulse_grafana.docs_table > /tmp/table.md   # docs/grafana.md embeds it (a test checks)
"""
from __future__ import annotations

from .boards import all_boards


def table() -> str:
    from aipulse_alerts.rules import load_rules

    from .alerting import dashboard_for
    from .panels import ANNOTATION_NAME, ANNOTATION_QUESTION

    lines = ["| dashboard | panel | question it answers | source |", "| --- | --- | --- | --- |"]
    for b in all_boards():
        for d in b.docs:
            src = "Prometheus" if d.promql else "Alertmanager" if d.kind == "alertgroups" else "ClickHouse"
            lines.append(f"| {b.title.removeprefix('aipulse / ')} | {d.title} | {d.question} | {src} |")
    lines.append(f"| every dashboard | {ANNOTATION_NAME} (annotation) | {ANNOTATION_QUESTION} | ClickHouse |")
    lines += ["", "| alert rule | severity | question it answers | dashboard linked |", "| --- | --- | --- | --- |"]
    for r in load_rules().enabled:
        q = (r.summary or r.name).replace("|", "/")
        lines.append(f"| {r.name} | {r.severity.value} | {r.definition.description}: {q} | {dashboard_for(r)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(), end="")
