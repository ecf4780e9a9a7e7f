"""The SDK's delivery ledger, read back: per service and instance, what was lost before Kafka.

Every SDK instance reports its cumulative counters as ``sdk_stats`` events (emitted, sent,
queued, dropped by reason; collectors/aipulse/contract.py ``SdkStats``); the worker stores them
in ``sdk_stats`` (storage/migrations/005_sdk_stats.sql). An instance's newest row is its
ledger; one SQL definition here serves ``aipulse metrics --ledger`` and the Pipeline
dashboard's "Events lost before Kafka" table::

    >>> print(ledger_sql("aipulse", "ts >= now() - INTERVAL 1 HOUR"))   # doctest: +ELLIPSIS
    SELECT service, instance_id, ...
    >>> rows = ledger_query(client, settings, start, end)              # doctest: +SKIP
    >>> rows[0]["lost"], rows[0]["dropped"]                            # doctest: +SKIP
    (20, {'kafka_unavailable': 20})

``lost`` is the sum of the drop reasons: events the application emitted that never reached
Kafka. The counters are cumulative since the instance started, so the newest row in the
range carries everything up to then (argMax over ts; ``final`` marks the row sent at close).
"""
from __future__ import annotations

from datetime import datetime

from ..config import Settings

COLUMNS = ("service", "instance_id", "emitted", "sent", "queued", "lost", "dropped", "final", "last_report")


def ledger_sql(db: str, where: str) -> str:
    """The newest ledger row of each (service, instance) among rows matching ``where``."""
    # The inner query names its columns apart from the table's, which ClickHouse would
    # otherwise resolve to the aliases inside the aggregates.
    return (
        "SELECT service, instance_id, emitted_ AS emitted, sent_ AS sent, queued_ AS queued,\n"
        "       arraySum(mapValues(dropped_)) AS lost, dropped_ AS dropped, final_ AS final, last_report\n"
        "FROM (\n"
        "    SELECT service, instance_id, argMax(emitted, ts) AS emitted_, argMax(sent, ts) AS sent_,\n"
        "           argMax(queued, ts) AS queued_, argMax(dropped, ts) AS dropped_, argMax(final, ts) AS final_,\n"
        "           max(ts) AS last_report\n"
        f"    FROM {db}.sdk_stats FINAL\n    WHERE {where}\n"
        "    GROUP BY service, instance_id\n"
        ")\n"
        "ORDER BY lost DESC, service, instance_id"
    )


def ledger_query(client, settings: Settings, start: datetime, end: datetime,
                 where: dict[str, list[str]] | None = None) -> list[dict]:
    """Ledger rows (dicts keyed by :data:`COLUMNS`) of the instances that reported in [start, end)."""
    cond = ["ts >= toDateTime64({a:Float64}, 3, 'UTC')", "ts < toDateTime64({b:Float64}, 3, 'UTC')"]
    params: dict = {"a": start.timestamp(), "b": end.timestamp()}
    for dim, values in (where or {}).items():
        if dim not in ("service", "instance_id"):
            raise ValueError(f"--where {dim}: the ledger is kept per service and instance_id")
        cond.append(f"{dim} IN {{w_{dim}:Array(String)}}")
        params[f"w_{dim}"] = list(values)
    res = client.query(ledger_sql(settings.database, " AND ".join(cond)), parameters=params)
    return [dict(zip(COLUMNS, r)) for r in res.result_rows]


def render_ledger(rows: list[dict]) -> str:
    """A plain table: one line per instance, drop reasons spelled out."""
    if not rows:
        return "(no SDK ledger in this range: SDKs report every ledger_interval_s, 60 s by default)"
    head = f"{'service':<16}{'instance':<28}{'emitted':>10}{'sent':>10}{'queued':>8}{'lost':>8}  why"
    lines = [head]
    for r in rows:
        why = ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items()) if v) or "-"
        lines.append(f"{r['service']:<16}{r['instance_id'][:27]:<28}{r['emitted']:>10,}{r['sent']:>10,}"
                     f"{r['queued']:>8,}{r['lost']:>8,}  {why}")
    return "\n".join(lines)
