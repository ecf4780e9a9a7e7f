"""Parse the time arguments of ``aipulse metrics``: RFC 3339, epoch seconds, ``now``, ``-15m``.

    >>> from datetime import datetime, timezone
    >>> now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    >>> parse_time("-15m", now).isoformat()
    '2024-05-01T11:45:00+00:00'
    >>> parse_time("2024-05-01T10:00:00Z", now).isoformat()
    '2024-05-01T10:00:00+00:00'
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"^(?:now)?\s*([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw])$")


class TimeArgError(ValueError):
    """A time argument that is none of the accepted forms; the message lists them."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from RFC 3339 text, epoch seconds, 'now' or a relative offset."""
    now = now or datetime.now(timezone.utc)
    t = text.strip().lower()
    if t == "now":
        return now
    m = _RELATIVE.match(t)
    if m:
        sign, amount, unit = m.groups()
        delta = timedelta(seconds=float(amount) * UNITS_S[unit])
        return now - delta if sign == "-" else now + delta
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return datetime.fromtimestamp(float(t), timezone.utc)
    iso = text.strip()
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise TimeArgError(
            f"cannot read time {text!r}: use RFC 3339 (2024-05-01T10:00:00Z), epoch seconds, "
            "'now', or a relative offset such as -15m, -2h, -7d"
        ) from None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
