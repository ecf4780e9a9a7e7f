"""Soak: noisy but healthy traffic for N minutes must not fire a single alert.

Starts a private local stack (temporary AIPULSE_HOME: Kafka, ClickHouse endpoint, one worker
with the default rules, Alertmanager), points Alertmanager's webhook at a local receiver,
sends SDK traffic with realistic noise (lognormal latencies, 2% fallbacks, 0.05% errors,
thumbs 80% up, two features, three models, a 20% canary that is as good as control) and
prints every notification. Exit status 1 if anything fired.

    .venv/bin/python bench/alerts_soak.py                 # 10 minutes
    .venv/bin/python bench/alerts_soak.py --minutes 2 --rate 50
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FEATURES = {"chat": 700.0, "search": 300.0}       # median latency, ms
MODELS = ("m-large", "m-small", "m-mini")
CANARY_SHARE = 0.2


def receiver():
    got: list[dict] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            for a in body.get("alerts", []):
                got.append(a)
                print(f"  NOTIFIED {a['status']}: {a['labels']} {a['annotations'].get('summary', '')}", flush=True)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/hook", got


def traffic(aipulse, seconds: float, rate: float, seed: int = 11) -> int:
    rng = random.Random(seed)
    sent = 0
    deadline = time.time() + seconds
    tick = 0.05
    carry = 0.0
    while time.time() < deadline:
        started = time.time()
        carry += rate * tick * rng.uniform(0.6, 1.4)        # bursty arrivals
        n, carry = int(carry), carry - int(carry)
        for _ in range(n):
            feature = rng.choice(list(FEATURES))
            model = rng.choice(MODELS)
            variant = "candidate" if rng.random() < CANARY_SHARE else "control"
            r = rng.random()
            outcome, depth = ("error", 0) if r < 0.0005 else ("fallback", 1) if r < 0.02 else ("ok", 0)
            iid = aipulse.record(feature=feature, model=model, variant=variant, outcome=outcome,
                                 fallback_depth=depth, latency_ms=rng.lognormvariate(0, 0.5) * FEATURES[feature],
                                 input_tokens=rng.randint(50, 2000), output_tokens=rng.randint(10, 500),
                                 cost_usd=rng.uniform(0.0001, 0.002), user_id=f"user-{rng.randint(1, 500)}")
            sent += 1
            if rng.random() < 0.2:
                aipulse.feedback(iid, "thumbs_up" if rng.random() < 0.8 else "thumbs_down")
        time.sleep(max(0.0, tick - (time.time() - started)))
    return sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=40.0, help="interactions per second")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="aipulse-soak-"))
    os.environ["AIPULSE_HOME"] = str(home)
    os.environ.pop("AIPULSE_KAFKA_BOOTSTRAP", None)
    os.environ.pop("AIPULSE_ALERTMANAGER_URL", None)
    from aipulse_local.alertmanager import reload
    from aipulse_local.stack import down, up
    from aipulse_stream.config import Settings

    import aipulse

    settings = Settings.from_env()
    srv, url, got = receiver()
    try:
        st = up(settings, progress=lambda m: print("[stack]", m, flush=True))
        if "alertmanager" not in st:
            print("Alertmanager is not installed: scripts/install-system-deps.sh", file=sys.stderr)
            return 2
        reload(settings, webhook_url=url)
        aipulse.init(kafka_bootstrap=st["kafka"]["address"], service=f"soak-{uuid.uuid4().hex[:6]}")
        print(f"soak: {args.minutes:g} min of healthy traffic at ~{args.rate:g}/s ...", flush=True)
        sent = traffic(aipulse, args.minutes * 60, args.rate)
        aipulse.flush(30)
        time.sleep(15)  # the last windows close, Alertmanager's group_wait passes
        firing = [a for a in got if a["status"] == "firing"]
        print(f"soak: {sent} interactions in {args.minutes:g} min; notifications: {len(got)} "
              f"(firing {len(firing)})")
        return 1 if firing else 0
    finally:
        aipulse.close()
        down(settings)
        srv.shutdown()


if __name__ == "__main__":
    sys.exit(main())
