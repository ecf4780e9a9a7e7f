"""Top spenders read back: per-user spend merged from ``spend_top_window`` (migration 006).

One SQL definition serves ``aipulse metrics --top-spenders``, the Cost dashboard's "Top users
by spend" panel, the Grafana per-user spend rule and the alert evaluator::

    >>> print(spend_sql("aipulse", "window_start >= now() - INTERVAL 1 HOUR"))  # doctest: +ELLIPSIS
    SELECT user_id, cost_usd, requests, ...
    >>> top_spenders(client, settings, start, end, limit=10)[0]                  # doctest: +SKIP
    {'user_id': 'u-42', 'cost_usd': 31.2, 'requests': 812, 'max_missing_usd': 0.0, 'exact': True,
     'share': 0.61, 'spend_usd': 51.1}
    >>> user_spend(client, settings, end=now, window_s=3600)                    # doctest: +SKIP
    [{'service': 'support', 'user_id': 'u-42', 'cost_usd': 31.2, ...}, ...]

Per row: ``cost_usd`` is the sum of the user's kept entries, a lower bound of its true spend
that is exact when ``max_missing_usd`` is 0; the true spend is at most ``cost_usd +
max_missing_usd`` (the sum of ``other_max_usd`` over the rows that cut the user),
and ``max_missing_usd <= N / (K+1)`` for N the identified spend of the group; 0 when no row
cut the user (its CRC32 is in no row's ``other_hashes``)
(transforms/spend_top.py states and docs/metrics.md proves the guarantee). ``share`` is
``cost_usd`` over ``spend_usd``, the group's whole priced spend (anonymous included).
"""
from __future__ import annotations

from datetime import datetime

from ..config import Settings

DIMENSIONS = ("service", "feature")   # what spend_top_window is keyed by (besides the user)
COLUMNS = ("user_id", "cost_usd", "requests", "max_missing_usd", "exact", "share", "spend_usd")
DEFAULT_LIMIT = 20


def spend_sql(db: str, where: str, by=(), limit: int | None = None, min_requests: int = 0) -> str:
    """Per (``by`` dims, user) spend over the rows matching ``where``, biggest first.

    Columns: the ``by`` dims, then :data:`COLUMNS`. ``min_requests`` drops users with fewer
    counted requests (a rule's ``min_volume``)."""
    dims = list(by)
    bad = [d for d in dims if d not in DIMENSIONS]
    if bad:
        raise ValueError(f"top spenders are kept per {' and '.join(DIMENSIONS)} only, not {', '.join(bad)}")
    lead = "".join(f"{d}, " for d in dims)
    group = f"\n    GROUP BY {', '.join(dims)}" if dims else ""
    on = "".join(f"users.{d} = cut.{d} AND " for d in dims)
    using = f" USING ({', '.join(dims)})" if dims else ""
    src = f"{db}.spend_top_window FINAL"
    # A user's error bound: the other_max_usd of every row that cut it (its CRC32 is in the row's
    # other_hashes); a user never cut has none (LEFT JOIN default 0), so its sum is exact.
    return (
        f"SELECT {lead}user_id, cost_usd, requests, max_missing_usd, toBool(max_missing_usd = 0) AS exact,\n"
        "       cost_usd / nullIf(spend_usd, 0) AS share, spend_usd\n"
        "FROM (\n"
        "    SELECT users.*, cut.cut_max AS max_missing_usd\n"
        "    FROM (\n"
        f"        SELECT {lead}u AS user_id, CRC32(u) AS h, sum(c) AS cost_usd, sum(r) AS requests\n"
        f"        FROM {src}\n"
        "        ARRAY JOIN top_users AS u, top_usd AS c, top_requests AS r\n"
        f"        WHERE {where}\n"
        f"        GROUP BY {lead}u" + (f"\n        HAVING requests >= {int(min_requests)}" if min_requests else "") + "\n"
        "    ) AS users\n"
        "    LEFT JOIN (\n"
        f"        SELECT {lead}x AS h, sum(other_max_usd) AS cut_max\n"
        f"        FROM {src}\n"
        "        ARRAY JOIN other_hashes AS x\n"
        f"        WHERE {where}\n"
        f"        GROUP BY {lead}x\n"
        f"    ) AS cut ON {on}users.h = cut.h\n"
        ") AS merged\n"
        f"{'INNER' if dims else 'CROSS'} JOIN (\n"
        f"    SELECT {lead}sum(total_usd) AS spend_usd\n"
        f"    FROM {src}\n"
        f"    WHERE {where}{group}\n"
        f") AS totals{using}\n"
        f"ORDER BY cost_usd DESC, {lead}user_id" + (f"\nLIMIT {int(limit)}" if limit else "")
    )


def _conditions(start: datetime, end: datetime, where: dict[str, list[str]] | None) -> tuple[str, dict]:
    cond = ["window_start >= toDateTime({a:Float64}, 'UTC')", "window_start < toDateTime({b:Float64}, 'UTC')"]
    params: dict = {"a": start.timestamp(), "b": end.timestamp()}
    for dim, values in (where or {}).items():
        if dim not in DIMENSIONS:
            raise ValueError(f"--where {dim}: top spenders are kept per {' and '.join(DIMENSIONS)} only")
        cond.append(f"{dim} IN {{w_{dim}:Array(String)}}")
        params[f"w_{dim}"] = list(values)
    return " AND ".join(cond), params


def top_spenders(client, settings: Settings, start: datetime, end: datetime,
                 where: dict[str, list[str]] | None = None, by=(), limit: int | None = DEFAULT_LIMIT,
                 min_requests: int = 0) -> list[dict]:
    """Users by spend over windows starting in [start, end), merged over every partition and
    worker; dicts keyed by the ``by`` dims and :data:`COLUMNS`."""
    cond, params = _conditions(start, end, where)
    res = client.query(spend_sql(settings.database, cond, by, limit, min_requests), parameters=params)
    return [dict(zip(res.column_names, r)) for r in res.result_rows]


def user_spend(client, settings: Settings, end: datetime, window_s: int, group_by=("service", "user_id"),
               where: dict[str, list[str]] | None = None, min_volume: int = 0) -> list[dict]:
    """What a ``user_spend_usd`` rule evaluates at ``end``: every user's spend over the windows
    starting in [end - window_s, end), per ``group_by`` (which must hold user_id), all users.
    Compare ``cost_usd`` (a lower bound, never a false alarm) with the threshold; rows carry
    ``max_missing_usd`` for the rule to say how exact the figure is."""
    if "user_id" not in group_by:
        raise ValueError("user spend is per user: group_by must hold user_id")
    start = datetime.fromtimestamp(end.timestamp() - window_s, end.tzinfo)
    by = [d for d in group_by if d != "user_id"]
    return top_spenders(client, settings, start, end, where, by=by, limit=None, min_requests=min_volume)


def render_spenders(rows: list[dict], by=()) -> str:
    """A plain table, one line per user; the last column: how much the figure may be short by."""
    if not rows:
        return "(no priced spend by identified users in this range)"
    dims = list(by)
    head = "".join(f"{d:<16}" for d in dims) + f"{'user':<28}{'cost $':>12}{'share':>8}{'requests':>10}  missing at most $"
    lines = [head]
    for r in rows:
        share = "-" if r["share"] is None else f"{100 * r['share']:.1f}%"
        miss = "0 (exact)" if r["exact"] else f"{r['max_missing_usd']:.6f}"
        lines.append("".join(f"{str(r[d]):<16}" for d in dims) + f"{r['user_id'][:27]:<28}{r['cost_usd']:>12.6f}"
                     f"{share:>8}{r['requests']:>10,}  {miss}")
    return "\n".join(lines)
