"""What the evaluator reads: merged window rows, partition progress and alert state, from ClickHouse.

The evaluator sees the whole stream because it reads what every worker stored, not what one
worker counted::

    reader = StoreReader(client, database="aipulse", topic="aipulse.events", window_s=10)
    rows = reader.window_rows(start_ms, end_ms)      # one merged row per (window, key), all partitions
    touched = reader.touched_windows(since)          # windows rewritten since a server time
    progress = reader.progress()                     # partition -> Progress(stored offset, watermark)
    firing = reader.firing_alerts()                  # the alerts table's open alerts (restart)

Merging is the read side's: ``metrics_window FINAL`` keeps the highest version of every
(window, key, partition, block) contribution and the sums add partitions and blocks, so a
replayed or re-emitted block never counts twice (docs/metrics.md). Every call raises on a
ClickHouse failure; the evaluator then holds its state (it never resolves on missing input).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from aipulse_stream.readside.spend_top import spend_sql
from aipulse_stream.transforms.windows import COUNT_COLUMNS, FLOAT_COLUMNS

_UTC = timezone.utc
SUMMED = COUNT_COLUMNS + FLOAT_COLUMNS


@dataclass(frozen=True)
class Progress:
    """Where one partition's stored contributions stand."""

    stored: int          # highest offset counted and stored (-1: nothing yet)
    watermark_ms: int    # event-time watermark at that offset


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, _UTC)


def _ms(t) -> int:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_UTC)
        return int(round(t.timestamp() * 1000))
    return int(round(float(t) * 1000))


class StoreReader:
    def __init__(self, client, database: str, topic: str, window_s: int):
        self.client = client
        self.db = database
        self.topic = topic
        self.window_s = int(window_s)

    def server_now_ms(self) -> int:
        """ClickHouse's clock: ``written_at`` is set by it, so "since" is measured on it."""
        return _ms(self.client.query("SELECT now64(3)").result_rows[0][0])

    def touched_windows(self, since_ms: int, from_ms: int = 0) -> list[int]:
        """Starts (ms) of the base windows from ``from_ms`` on that got a row written at or
        after ``since_ms`` (ClickHouse's clock, see :meth:`server_now_ms`)."""
        res = self.client.query(
            f"SELECT DISTINCT window_start FROM {self.db}.metrics_window "
            "WHERE window_start >= {f:DateTime('UTC')} AND written_at >= {since:DateTime64(3, 'UTC')} "
            "AND topic = {t:String}",
            parameters={"since": _dt(since_ms), "f": _dt(from_ms), "t": self.topic})
        return sorted(_ms(r[0]) for r in res.result_rows)

    def window_rows(self, start_ms: int | None = None, end_ms: int | None = None,
                    windows: list[int] | None = None, sketches: bool = True,
                    chunk_s: int | None = None) -> list[dict]:
        """Merged rows: one per (window, key) over all partitions and blocks.

        Either a range [start_ms, end_ms) or a list of window starts. With ``chunk_s`` the
        windows are added up into chunks of that length (no sketches: older history only
        feeds counts and ratios).
        """
        sums = ", ".join(f"sum({c}) AS {c}" for c in SUMMED)
        if sketches:
            sums += ", sumMap(latency_buckets) AS latency_buckets, sumMap(ttft_buckets) AS ttft_buckets"
        grain = "window_start" if chunk_s is None else f"toStartOfInterval(window_start, INTERVAL {int(chunk_s)} SECOND)"
        params = {"t": self.topic}
        if windows is not None:
            where = "window_start IN {ws:Array(DateTime('UTC'))}"
            params["ws"] = [_dt(w) for w in windows]
        else:
            where = "window_start >= {a:DateTime('UTC')} AND window_start < {b:DateTime('UTC')}"
            params.update(a=_dt(start_ms), b=_dt(end_ms))
        res = self.client.query(
            f"SELECT {grain} AS w, service, feature, model, variant, {sums}, max(max_ts) AS max_ts "
            f"FROM {self.db}.metrics_window FINAL WHERE topic = {{t:String}} AND {where} "
            "GROUP BY w, service, feature, model, variant",
            parameters=params)
        out = []
        for r in res.named_results():
            r["window_start"] = r.pop("w")
            out.append(r)
        return out

    def progress(self) -> dict[int, Progress]:
        """Per partition of the topic: the highest stored offset and the watermark there."""
        res = self.client.query(
            f"SELECT partition, max(version), argMax(watermark_ms, version) FROM {self.db}.partition_progress "
            "WHERE topic = {t:String} GROUP BY partition", parameters={"t": self.topic})
        return {int(p): Progress(int(v), int(wm)) for p, v, wm in res.result_rows}

    def user_spend(self, start_ms: int, end_ms: int, floor: float) -> list[tuple[str, str, float]]:
        """(service, user_id, cost) of users who spent at least ``floor`` in the windows starting in
        [start, end): the merged top spenders (readside/spend_top.py; the kept sum is a lower bound
        of the user's spend, exact unless a row cut the user: never a false alarm), not a scan of
        the raw interactions, whose users are unbounded."""
        where = ("window_start >= {a:DateTime64(3, 'UTC')} AND window_start < {b:DateTime64(3, 'UTC')} "
                 "AND topic = {t:String}")
        sql = f"SELECT service, user_id, cost_usd FROM ({spend_sql(self.db, where, by=('service',))}) " \
              "WHERE cost_usd >= {f:Float64}"
        res = self.client.query(sql, parameters={"a": _dt(start_ms), "b": _dt(end_ms), "t": self.topic,
                                                 "f": float(floor)})
        return [(s, u, float(c)) for s, u, c in res.result_rows]

    def firing_alerts(self) -> list[dict]:
        """The alerts whose latest stored state is firing: what a restarted evaluator resumes."""
        res = self.client.query(
            "SELECT rule, alert_id, group_key, starts_at, value, threshold, baseline FROM ("
            f" SELECT rule, alert_id, argMax(status, at) AS status, any(group_key) AS group_key,"
            "  any(starts_at) AS starts_at, argMax(value, at) AS value, argMax(threshold, at) AS threshold,"
            f"  argMax(baseline, at) AS baseline FROM {self.db}.alerts GROUP BY rule, alert_id"
            ") WHERE status = 'firing'")
        out = []
        for rule, alert_id, group_key, starts_at, value, threshold, baseline in res.result_rows:
            out.append({"rule": rule, "alert_id": alert_id, "group": json.loads(group_key or "{}"),
                        "starts_at_ms": _ms(starts_at), "value": None if value != value else value,
                        "threshold": threshold, "baseline": baseline})
        return out
