"""The SDK's own counters as Prometheus metrics.

    from prometheus_client import start_http_server
    import aipulse.metrics
    aipulse.metrics.register()          # into prometheus_client's default REGISTRY
    start_http_server(9464)             # or mount prometheus_client's WSGI/ASGI app

    print(aipulse.metrics.exposition())  # the text format, e.g. for a test

Metrics (read from :func:`aipulse.stats` at scrape time, nothing on the hot path):

===========================================  =======  ===========================================
``aipulse_sdk_events_emitted_total``         counter  events the app handed to the SDK
``aipulse_sdk_events_sent_total``            counter  events acknowledged by Kafka
``aipulse_sdk_events_dropped_total{reason}``  counter  events dropped, by reason
``aipulse_sdk_queue_events``                 gauge    events waiting in the buffer
``aipulse_sdk_queue_bytes``                  gauge    estimated bytes waiting in the buffer
``aipulse_sdk_inflight_events``              gauge    events handed to Kafka, not yet acknowledged
``aipulse_sdk_kafka_connected``              gauge    1 when the sender can reach Kafka
``aipulse_sdk_circuit_state{circuit,state}``  gauge    1 for each breaker's current state
``aipulse_sdk_circuit_transitions_total``    counter  breaker state changes {circuit,from,to}
``aipulse_sdk_shadow_runs_total{result}``    counter  shadow runs started, skipped, failed
===========================================  =======  ===========================================
"""
from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from . import client as _client_mod
from .transport import DROP_REASONS

PREFIX = "aipulse_sdk"


class SdkCollector(Collector):
    """A prometheus_client collector over the current SDK client's stats."""

    def collect(self) -> Iterator:
        st = _client_mod.get_client().stats()
        yield CounterMetricFamily(f"{PREFIX}_events_emitted", "Events handed to the aipulse SDK by the application.",
                                  value=st["emitted"])
        yield CounterMetricFamily(f"{PREFIX}_events_sent", "Events acknowledged by Kafka.", value=st["sent"])
        dropped = CounterMetricFamily(f"{PREFIX}_events_dropped", "Events dropped by the SDK, by reason.",
                                      labels=["reason"])
        for reason in DROP_REASONS:
            dropped.add_metric([reason], st["dropped"].get(reason, 0))
        yield dropped
        yield GaugeMetricFamily(f"{PREFIX}_queue_events", "Events waiting in the SDK buffer.",
                                value=st["queue_events"])
        yield GaugeMetricFamily(f"{PREFIX}_queue_bytes", "Estimated bytes waiting in the SDK buffer.",
                                value=st["queue_bytes"])
        yield GaugeMetricFamily(f"{PREFIX}_inflight_events", "Events handed to Kafka and not yet acknowledged.",
                                value=st["inflight_events"])
        yield GaugeMetricFamily(f"{PREFIX}_kafka_connected", "1 when the SDK sender can reach Kafka.",
                                value=1 if st["kafka_connected"] else 0)

        from .reliability import CLOSED, HALF_OPEN, OPEN, breakers
        from .rollout import SHADOW_STATS

        state = GaugeMetricFamily(f"{PREFIX}_circuit_state", "1 for the current state of each circuit breaker.",
                                  labels=["circuit", "state"])
        moves = CounterMetricFamily(f"{PREFIX}_circuit_transitions", "Circuit breaker state changes.",
                                    labels=["circuit", "from", "to"])
        for name, breaker in sorted(breakers().items()):
            current = breaker.state
            for s in (CLOSED, OPEN, HALF_OPEN):
                state.add_metric([name, s], 1 if s == current else 0)
            for (old, new), n in sorted(breaker.transitions.items()):
                moves.add_metric([name, old, new], n)
        yield state
        yield moves
        shadows = CounterMetricFamily(f"{PREFIX}_shadow_runs", "Shadow runs, by result.", labels=["result"])
        for result, n in sorted(SHADOW_STATS.items()):
            shadows.add_metric([result], n)
        yield shadows


_registered: set[int] = set()


def register(registry: CollectorRegistry = REGISTRY) -> SdkCollector:
    """Add the SDK's metrics to ``registry`` (once per registry)."""
    collector = SdkCollector()
    if id(registry) not in _registered:
        registry.register(collector)
        _registered.add(id(registry))
    return collector


def exposition() -> bytes:
    """The SDK's metrics alone, in the Prometheus text format."""
    registry = CollectorRegistry()
    registry.register(SdkCollector())
    return generate_latest(registry)
