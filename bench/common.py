"""Shared pieces of the stream benchmarks (worker_throughput.py, freshness.py).

- :class:`BenchStack`: the local stack in its own AIPULSE_HOME (a temporary folder unless
  ``--home`` names one), stopped at the end by the pids it recorded; with a reused home only
  the components this run started are stopped.
- :class:`EventFactory`: realistic wire events (the exact JSON layout the SDK sends: priced by
  genai-prices, user ids hashed) from the real Azure LLM trace's token counts, serialized once
  so that producing them is cheap.
- :func:`scrape`: a worker's Prometheus ``/metrics`` as {name: value} (labels summed).
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from aipulse_stream.config import Settings
from aipulse_cli.demo import TRACE_ATTRIBUTION, load_trace, synthesize


def say(msg: str = "") -> None:
    print(msg, flush=True)


def machine() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")


class BenchStack:
    """``with BenchStack(home, worker=False) as st: st.settings ...``"""

    def __init__(self, home: str | None, worker: bool, env: dict | None = None):
        self.owned_home = home is None
        self.home = Path(tempfile.mkdtemp(prefix="aipulse-bench-")) if home is None else Path(home)
        self.worker = worker
        self.env = env or {}
        self.settings: Settings | None = None
        self.started: list[str] = []
        self.keep = False

    def __enter__(self) -> "BenchStack":
        from aipulse_local.stack import up
        from aipulse_local.state import StackState, pid_alive

        os.environ["AIPULSE_HOME"] = str(self.home)
        os.environ.update(self.env)  # the worker's environment is built from os.environ
        self.settings = Settings.from_env()
        state = StackState(self.settings.state_dir)
        before = {n for n, c in state.read().items() if pid_alive(c.get("pid"))}
        say(f"stack: AIPULSE_HOME={self.settings.state_dir}")
        try:
            up(self.settings, progress=lambda m: say("  " + m), worker=self.worker)
        finally:
            after = {n for n, c in state.read().items() if pid_alive(c.get("pid"))}
            self.started = sorted(after - before)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        from aipulse_local.stack import ORDER, down, stop_component

        if self.settings is None:
            return
        if self.owned_home:
            down(self.settings, progress=lambda m: say("  " + m))
            if not self.keep:
                shutil.rmtree(self.home, ignore_errors=True)
        else:  # a reused home: stop only what this run started, workers before Kafka
            for name in sorted(self.started, key=lambda n: -ORDER.index(n) if n in ORDER else -2.5):
                pid = stop_component(self.settings, name)
                say(f"  {name}: stopped (pid {pid})")
        self.settings = None

    def bootstrap(self) -> str:
        from aipulse_local.stack import kafka_bootstrap

        return kafka_bootstrap(self.settings)

    def clickhouse(self):
        from aipulse_local.stack import clickhouse_url
        from aipulse_stream.storage.clickhouse import client_for_url

        return client_for_url(clickhouse_url(self.settings))


def scrape(address: str, timeout: float = 2.0) -> dict[str, float]:
    """``{metric name: value}`` from a Prometheus text endpoint, summed over label sets."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return out


def iso_z(ts: float) -> str:
    """RFC 3339 with microseconds and Z, as the SDK writes ``ts``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


REF_TOKENS = 100_000  # below long-context price tiers (the trace has at most ~14k tokens)


class EventFactory:
    """Wire events as the SDK would send them, built without the SDK's per-event cost.

    Interactions take their token counts (and, per pass, their relative arrival times) from
    the real Azure trace; latency, model, outcome, user and variant are synthesized by
    ``aipulse_cli.demo.synthesize``. Cost comes from genai-prices through the SDK's own
    Pricer (cached per model and token counts); user ids are hashed by the SDK's Governance.
    """

    attribution = TRACE_ATTRIBUTION

    def __init__(self, service: str, seed: int = 2023, user_salt: str = "bench-salt"):
        from aipulse.client import Client
        from aipulse.config import Config

        self.service = service
        self.rng = random.Random(seed)
        self.trace = load_trace()
        self.trace_span = self.trace[-1][0] or 1.0
        sdk = Client(Config.load(service=service, user_salt=user_salt))
        self._pricer = sdk._pricer
        self._governance = sdk._governance
        self._costs: dict[tuple, tuple] = {}
        self._users: dict[str, str] = {}
        self._prefix = os.urandom(6).hex()
        self._n = 0

    def new_id(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n:012x}"

    def _cost(self, model: str, provider: str, tin: int, tout: int) -> tuple:
        """The SDK Pricer's answer. A genai-prices lookup costs ~300 us, so prices are taken
        as linear per model (USD per input and output token, read from the Pricer once) and
        the first lookups per model are checked against the Pricer itself."""
        key = (model, provider)
        lin = self._costs.get(key)
        if lin is None:
            per_in, source = self._pricer.price(model, provider, REF_TOKENS, 0)
            per_out, _ = self._pricer.price(model, provider, 0, REF_TOKENS)
            lin = self._costs[key] = [None if per_in is None else per_in / REF_TOKENS,
                                      None if per_out is None else per_out / REF_TOKENS, source, 0]
        per_in, per_out, source, checked = lin
        if per_in is None or per_out is None:
            return self._pricer.price(model, provider, tin, tout)
        usd = round(tin * per_in + tout * per_out, 12)
        if checked < 20:
            lin[3] += 1
            exact, _ = self._pricer.price(model, provider, tin, tout)
            if exact is None or abs(exact - usd) > 1e-9:
                lin[0] = lin[1] = None  # not linear for this model: always ask the Pricer
                return exact, source
        return usd, source

    def _user(self, raw: str) -> str:
        h = self._users.get(raw)
        if h is None:
            ev = {"user_id": raw}
            self._governance.apply(ev)
            h = self._users[raw] = ev["user_id"]
        return h

    def interaction(self, ts: float, trace_row: tuple) -> tuple[str, bytes]:
        """(interaction id, JSON bytes) for one trace row at event time ``ts``."""
        _, feature, tin, tout = trace_row
        f = synthesize(self.rng, feature, tin, tout)
        eid = self.new_id()
        cost, source = self._cost(f["model"], f["provider"], tin, tout)
        ev = {"schema_version": "1.0", "event_id": eid, "ts": iso_z(ts), "service": self.service,
              "interaction_id": eid, "kind": "interaction", "feature": f["feature"], "model": f["model"],
              "provider": f["provider"], "model_version": "", "prompt_version": f["prompt_version"],
              "variant": f["variant"], "user_id": self._user(f["user_id"]), "session_id": "",
              "latency_ms": f["latency_ms"], "ttft_ms": f["ttft_ms"], "input_tokens": tin,
              "output_tokens": tout}
        if cost is not None:
            ev["cost_usd"] = cost
        ev.update({"cost_source": source, "outcome": f["outcome"], "fallback_depth": f["fallback_depth"],
                   "fallback_reason": "", "error_type": "", "confidence": f["confidence"],
                   "shadow": False, "shadow_of": "", "cached": False, "attributes": {}})
        return eid, json.dumps(ev, separators=(",", ":")).encode()

    def feedback(self, iid: str, ts: float) -> bytes:
        kind = "thumbs_up" if self.rng.random() < 0.85 else "thumbs_down"
        ev = {"schema_version": "1.0", "event_id": self.new_id(), "ts": iso_z(ts), "service": self.service,
              "interaction_id": iid, "kind": "feedback", "feedback_type": kind}
        return json.dumps(ev, separators=(",", ":")).encode()

    def evaluation(self, iid: str, ts: float) -> bytes:
        ev = {"schema_version": "1.0", "event_id": self.new_id(), "ts": iso_z(ts), "service": self.service,
              "interaction_id": iid, "kind": "evaluation", "source": "ground_truth",
              "correct": self.rng.random() < 0.9}
        return json.dumps(ev, separators=(",", ":")).encode()

    def stream(self, n_interactions: int, start_ts: float, span_s: float,
               feedback_share: float = 0.15, evaluation_share: float = 0.05):
        """Yield (key, value, ts) in event-time order: ``n_interactions`` interactions spread
        over [start_ts, start_ts + span_s) following the trace's arrival pattern (the trace is
        replayed in passes, each compressed into an equal slice), with feedback and
        evaluations 1-30 s after their interaction."""
        import heapq

        passes = max(1, math.ceil(n_interactions / len(self.trace)))
        slice_s = span_s / passes
        pending: list[tuple[float, int, str, str]] = []  # (ts, seq, kind, interaction id)
        seq = 0
        for i in range(n_interactions):
            row = self.trace[i % len(self.trace)]
            ts = start_ts + (i // len(self.trace)) * slice_s + row[0] / self.trace_span * slice_s
            while pending and pending[0][0] <= ts:
                fts, _, kind, iid = heapq.heappop(pending)
                yield iid.encode(), (self.feedback if kind == "f" else self.evaluation)(iid, fts), fts
            iid, value = self.interaction(ts, row)
            yield iid.encode(), value, ts
            if self.rng.random() < feedback_share:
                seq += 1
                heapq.heappush(pending, (ts + self.rng.uniform(1, 30), seq, "f", iid))
            if self.rng.random() < evaluation_share:
                seq += 1
                heapq.heappush(pending, (ts + self.rng.uniform(1, 30), seq, "e", iid))
        while pending:
            fts, _, kind, iid = heapq.heappop(pending)
            yield iid.encode(), (self.feedback if kind == "f" else self.evaluation)(iid, fts), fts


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile."""
    s = sorted(values)
    i = min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))
    return s[i]


if __name__ == "__main__":  # pragma: no cover
    sys.exit("this module is imported by the benchmark scripts")
