"""The demo's alert receiver: Alertmanager's webhook target on 127.0.0.1.

    >>> r = AlertReceiver(); r.url          # doctest: +SKIP
    'http://127.0.0.1:40411/hook/3f0c...'

The path carries a random token (a capability URL): a POST to any other path is refused, so
the listener accepts nothing without the secret Alertmanager was configured with.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


@dataclass
class Notice:
    received_at: float
    status: str          # firing | resolved
    rule: str
    labels: dict
    summary: str
    starts_at: str
    ends_at: str


class AlertReceiver:
    def __init__(self, host: str = "127.0.0.1"):
        self.notices: list[Notice] = []
        self._lock = threading.Lock()
        self._listeners: list = []
        token = secrets.token_urlsafe(16)
        path = f"/hook/{token}"
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                if self.path != path or n > MAX_BODY:
                    self.send_response(403 if self.path != path else 413)
                    self.end_headers()
                    return
                try:
                    body = json.loads(self.rfile.read(n))
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                recv._take(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # quiet: the live view shows what arrived
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="demo-alert-receiver", daemon=True)
        self._thread.start()

    def _take(self, body: dict) -> None:
        now = time.time()
        new = []
        for a in body.get("alerts", []):
            labels = a.get("labels", {})
            ann = a.get("annotations", {})
            new.append(Notice(now, a.get("status", "?"), labels.get("alertname", "?"), labels,
                              ann.get("summary", ""), a.get("startsAt", ""), a.get("endsAt", "")))
        with self._lock:
            self.notices.extend(new)
        for fn in list(self._listeners):
            for n in new:
                fn(n)

    def on_notice(self, fn) -> None:
        self._listeners.append(fn)

    def snapshot(self) -> list[Notice]:
        with self._lock:
            return list(self.notices)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
