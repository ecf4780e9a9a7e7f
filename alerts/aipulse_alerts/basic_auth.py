"""HTTP basic auth carried in a URL: ``http://user:password@host:port``.

The credential of Alertmanager (and Prometheus) travels the way ClickHouse's does
(``AIPULSE_CLICKHOUSE_URL``): inside the one URL setting. urllib does not send a URL's
user info, so it is split off here into an ``Authorization: Basic`` header, and every URL
that reaches a log or an error goes through :func:`redact` first::

    >>> split("http://aipulse:s3cret@127.0.0.1:9093/")
    ('http://127.0.0.1:9093/', 'aipulse', 's3cret')
    >>> redact("http://aipulse:s3cret@127.0.0.1:9093")
    'http://aipulse:***@127.0.0.1:9093'
    >>> request("http://aipulse:s3cret@127.0.0.1:9093/-/healthy").get_header("Authorization")
    'Basic YWlwdWxzZTpzM2NyZXQ='

User and password may be percent-encoded (``%40`` for ``@``); they are decoded before use.
"""
from __future__ import annotations

import base64
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "***"


def split(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without user info, user, password); user and password are None when absent."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    netloc = parts.hostname or ""
    if ":" in netloc:                      # an IPv6 literal keeps its brackets
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return bare, user, password


def redact(url: str | None) -> str | None:
    """The URL with its password replaced by ``***`` (fit for logs and error messages)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{parts.username}:{REDACTED}@{host}", parts.path, parts.query,
                       parts.fragment))


def header(user: str, password: str) -> str:
    """The ``Authorization`` header value for basic auth."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def request(url: str, data: bytes | None = None, method: str | None = None,
            headers: dict | None = None) -> urllib.request.Request:
    """A urllib Request to ``url`` with its user info moved into an Authorization header."""
    bare, user, password = split(url)
    h = dict(headers or {})
    if user is not None:
        h["Authorization"] = header(user, password or "")
    return urllib.request.Request(bare, data=data, headers=h, method=method)
