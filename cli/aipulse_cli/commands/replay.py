"""``aipulse replay --topic T --from-offset N | --from-time TIME [--to-offset N | --to-time TIME]
[--partition P] [--wait S] [--json]``: re-feed stored Kafka records into ClickHouse, idempotently.

    aipulse replay --topic aipulse.events --from-time=-2h           # backfill / recount the last 2 hours
    aipulse replay --topic aipulse.events.dlq --from-offset 0       # after a fix: redeliver dead letters

How each topic is replayed and why it changes nothing already stored:
:mod:`aipulse_stream.replay`. Progress goes to stderr; the report to stdout.
"""
from __future__ import annotations

import argparse
import json
import sys

from aipulse_stream.config import ConfigError
from aipulse_stream.readside.times import TimeArgError, parse_time
from aipulse_stream.replay import ReplayError, ReplayRange, replay
from aipulse_stream.storage.clickhouse import ClickHouseUnavailable

from ..endpoints import settings_from_env

ERRORS = (ConfigError, ClickHouseUnavailable, ReplayError, TimeArgError)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", required=True, help="the events topic (AIPULSE_TOPIC) or its dead-letter topic (AIPULSE_DLQ_TOPIC)")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-offset", type=int, metavar="N", help="first offset, in every chosen partition")
    start.add_argument("--from-time", metavar="TIME", help="first record at or after TIME (RFC 3339, epoch seconds, or relative as --from-time=-2h)")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--to-offset", type=int, metavar="N", help="last offset (inclusive); default: the end of the topic now")
    end.add_argument("--to-time", metavar="TIME", help="stop before the first record at or after TIME")
    p.add_argument("--partition", type=int, metavar="P", help="only this partition (default: all)")
    p.add_argument("--wait", type=float, default=120.0, metavar="S",
                   help="dead letters: wait up to S seconds for the worker to store what was redelivered (0: do not wait)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    rng = ReplayRange(topic=args.topic, from_offset=args.from_offset,
                      from_time=parse_time(args.from_time) if args.from_time else None,
                      to_offset=args.to_offset, to_time=parse_time(args.to_time) if args.to_time else None,
                      partition=args.partition)
    rng.check()  # bad arguments fail before any connection
    report = replay(settings_from_env(), rng, progress=lambda line: print(f"aipulse replay: {line}", file=sys.stderr),
                    wait_s=args.wait)
    print(json.dumps(report.as_dict(), indent=2) if args.json else "\n".join(report.lines()))
    unstored = report.stored_after_wait is not None and report.stored_after_wait < report.redelivered
    return 1 if unstored else 0
