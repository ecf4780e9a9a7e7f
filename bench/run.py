"""The one benchmark command: every benchmark against the real local stack, repeated, summarized.

    .venv/bin/python bench/run.py                      # all benchmarks, 3 runs each (~25 min on 2 CPUs)
    .venv/bin/python bench/run.py --quick              # 1 run each, smaller sizes, no p99 (~8 min)
    .venv/bin/python bench/run.py --only sketch,sdk    # a subset
    .venv/bin/python bench/run.py --readme             # also rewrite the README's benchmark table

Each benchmark is its own script in bench/ (runnable alone, documented in docs/benchmarks.md),
started here as a subprocess with ``--json``; this command reads the JSON each prints last,
takes the median of the repeated runs and their spread (min..max), and writes
``bench/out/results.json`` and ``bench/out/results.md`` (the Markdown table the README shows,
between the ``<!-- bench:start -->`` / ``<!-- bench:end -->`` markers).

Every figure stands beside a baseline measured in the same run (a bare kafka-python send, a
bare aiokafka + json.loads loop, exact quantiles, a Prometheus default-bucket Histogram) or a
baseline computed from the shipped configuration (a Grafana rule's evaluation interval,
pending period and notification group_wait, read from dashboards/provisioning/alerting/).
A benchmark that fails (exit status not 0, or no JSON) is reported as failed, not skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
README = ROOT / "README.md"
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"
PY = sys.executable

BENCHMARKS = ("sketch", "sdk", "worker", "workers2", "freshness", "alerts", "footprint", "p99")
# Left out of --quick unless named with --only: they take many minutes whatever the size.
NOT_QUICK = ("p99",)


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def last_json(stdout: str):
    """The last JSON object a benchmark printed (one line, or indented over several)."""
    lines = stdout.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            try:
                return json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
    return None


def run_script(args: list[str], log: Path, timeout: float) -> tuple[int, str]:
    """Run one benchmark subprocess; its whole output goes to ``log``; returns (status, stdout)."""
    t0 = time.time()
    try:
        p = subprocess.run([PY, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        status, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        status, out, err = -1, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    with log.open("a") as f:
        f.write(f"$ {' '.join(args)}\n{out}\n{err}\n(exit {status}, {time.time() - t0:.0f}s)\n\n")
    return status, out


def summary(values: list[float]) -> dict:
    """Median and spread of repeated runs."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "runs": len(vals)}


def repeated(name: str, args: list[str], runs: int, log: Path, timeout: float, pick) -> dict:
    """Run a benchmark ``runs`` times; ``pick(json) -> {figure: value}``; summarize each figure."""
    per_figure: dict[str, list[float]] = {}
    failures = 0
    for i in range(runs):
        say(f"{name}: run {i + 1}/{runs}: {' '.join(args)}")
        status, out = run_script(args, log, timeout)
        data = last_json(out)
        if data is None:
            failures += 1
            say(f"{name}: run {i + 1} printed no JSON (exit {status}); see {log}")
            continue
        if status != 0:
            failures += 1  # figures are still kept: a missed target is a result, not an absence
            say(f"{name}: run {i + 1} exited {status} (target missed or check failed); see {log}")
        for k, v in pick(data).items():
            per_figure.setdefault(k, []).append(v)
    return {"figures": {k: summary(v) for k, v in per_figure.items()}, "failed_runs": failures, "runs": runs}


# --- the benchmarks -------------------------------------------------------------------------

def bench_sketch(runs: int, quick: bool, log: Path) -> dict:
    n = 20_000 if quick else 100_000
    args = ["bench/sketch_accuracy.py", "--json", "-n", str(n), "--seeds", "2" if quick else "5"]

    def pick(d):
        out = {}
        for dist, methods in d["distributions"].items():
            for method, e in methods.items():
                out[f"{dist}.{method}.max_rel_error"] = e["max_rel_error"]
                out[f"{dist}.{method}.median_rel_error"] = e["median_rel_error"]
        return out
    return repeated("sketch", args, 1, log, 600, pick)  # seeds are the repetitions


def bench_sdk(runs: int, quick: bool, log: Path) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from common import BenchStack  # noqa: E402  (bench/ is not a package)

    n = "20000" if quick else "100000"
    with BenchStack(None, worker=False) as stack:
        args = ["bench/sdk_overhead.py", "--json", "-n", n, "--bootstrap", stack.bootstrap()]

        def pick(d):
            return {"sdk.median_us": d["sdk"]["median_us"], "sdk.p99_us": d["sdk"]["p99_us"],
                    "bare.median_us": (d.get("bare_send") or {}).get("median_us"),
                    "bare.p99_us": (d.get("bare_send") or {}).get("p99_us")}
        return repeated("sdk", args, runs, log, 900, pick)


def bench_worker(runs: int, quick: bool, log: Path) -> dict:
    events = "50000" if quick else "200000"
    args = ["bench/worker_throughput.py", "--json", "--events", events]   # runs bare, worker, bare

    def pick(d):
        w = d["worker_rate"]
        b = d["bare_rate"]
        return {"worker.events_per_s": w, "bare.events_per_s": b, "ratio": w / b if b else None,
                "worker.cpu_us_per_event": d["worker"].get("cpu_us_per_event"),
                "bare.cpu_us_per_event": (d.get("bare") or {}).get("cpu_us_per_event")}
    return repeated("worker", args, runs, log, 1800, pick)


def bench_workers2(runs: int, quick: bool, log: Path) -> dict:
    """Two workers in one group vs the bare loop (bench/workers_scaleout.py: bare, workers, bare)."""
    events = "50000" if quick else "200000"
    args = ["bench/workers_scaleout.py", "--json", "--events", events, "--workers", "2"]

    def pick(d):
        w, b = d["workers_rate"], d["bare_rate"]
        out = {"workers.events_per_s": w, "bare.events_per_s": b, "ratio": w / b if b else None,
               "workers.cpu_us_per_event": d["workers"].get("cpu_us_per_event"),
               "bare.cpu_us_per_event": d["bare"].get("cpu_us_per_event")}
        for i, p in enumerate(d["workers"]["per_process"].values(), 1):
            out[f"worker{i}.cpu_us_per_event"] = p.get("cpu_us_per_event")
        return out
    return repeated("workers2", args, runs, log, 1800, pick)


def bench_p99(runs: int, quick: bool, log: Path) -> dict:
    """A 30-day P99 by feature from window rows vs quantileExact over 10 million raw events (one
    pass: the events are the repetitions; bench/p99_30d.py)."""
    args = ["bench/p99_30d.py", "--json", "--events", "1000000" if quick else "10000000"]

    def pick(d):
        out = {"events": d["events"], "window_rows": d["window_rows"], "bound": d["bound"]}
        for f, x in d["features"].items():
            out[f"{f}.rel_error_vs_quantile_exact"] = x["rel_error_vs_quantile_exact"]
            out[f"{f}.rel_error_vs_same_rank"] = x["rel_error_vs_same_rank"]
        return out
    return repeated("p99", args, 1, log, 3600, pick)


def bench_freshness(runs: int, quick: bool, log: Path) -> dict:
    args = ["bench/freshness.py", "--json", "--seconds", "30" if quick else "60"]

    def pick(d):
        return {"p50_s": (d.get("per_window") or {}).get("p50_s"),
                "p99_s": (d.get("per_window") or {}).get("p99_s"), "target_s": d.get("target_s")}
    return repeated("freshness", args, runs, log, 900, pick)


DETECTION_RE = re.compile(r"DETECTION TIME[^:]*:\s*([0-9.]+)\s*s")


def bench_alerts(runs: int, quick: bool, log: Path) -> dict:
    """Fallback surge 2 % -> 30 % to the webhook behind Alertmanager (tests/alerts e2e test)."""
    times = []
    failures = 0
    for i in range(runs):
        say(f"alerts: run {i + 1}/{runs}: pytest tests/alerts/test_e2e_alertmanager.py -s")
        status, out = run_script(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-s",
                                  "tests/alerts/test_e2e_alertmanager.py"], log, 900)
        m = DETECTION_RE.search(out)
        if status != 0 or not m:
            failures += 1
            say(f"alerts: run {i + 1} failed (exit {status}); see {log}")
        if m:
            times.append(float(m.group(1)))
    grafana = grafana_rule_detection("fallback_rate_surge", before=0.02, after=0.30)
    return {"figures": {"aipulse.detection_s": summary(times),
                        "grafana.expected_s": summary([grafana["expected_s"]]),
                        "grafana.worst_s": summary([grafana["worst_s"]])},
            "grafana_rule": grafana, "failed_runs": failures, "runs": runs}


def grafana_rule_detection(rule: str, before: float, after: float) -> dict:
    """When the provisioned Grafana rule would notify for a step from ``before`` to ``after``.

    Computed from the shipped settings, not run (Grafana is not installed here): the rule's
    condition becomes true once the trailing window's mix crosses the threshold
    (``threshold = factor x baseline``, the baseline being ``before``); then the rule waits for
    its next evaluation (uniform over the group ``interval``: half of it expected, all of it at
    worst), its pending period ``for``, and the notification policy's ``group_wait``.
    """
    rules = yaml.safe_load((ROOT / "alerts" / "aipulse_alerts" / "rules.yaml").read_text()
                           if (ROOT / "alerts" / "aipulse_alerts" / "rules.yaml").exists()
                           else (ROOT / "alerts" / "rules.yaml").read_text())
    spec = next(r for r in rules["rules"] if r["name"] == rule)
    prov = yaml.safe_load((ROOT / "dashboards/provisioning/alerting/rules.yaml").read_text())
    policies = yaml.safe_load((ROOT / "dashboards/provisioning/alerting/policies.yaml").read_text())
    group, grule = next((g, r) for g in prov["groups"] for r in g["rules"] if r["title"] == rule)
    secs = lambda s: float(str(s).rstrip("s")) if str(s).endswith("s") else float(str(s).rstrip("m")) * 60  # noqa: E731
    interval, pending = secs(group["interval"]), secs(grule.get("for", "0s"))
    group_wait = secs(policies["policies"][0].get("group_wait", "30s"))
    window = secs(spec["window"])
    threshold = max(spec["baseline"]["factor"] * before, spec.get("threshold", 0.0),
                    before + spec["baseline"].get("min_delta", 0.0))
    cross = window * (threshold - before) / (after - before)   # trailing-window mix crosses it
    return {"rule": rule, "interval_s": interval, "for_s": pending, "group_wait_s": group_wait,
            "window_s": window, "threshold": threshold, "cross_s": cross,
            "expected_s": cross + interval / 2 + pending + group_wait,
            "worst_s": cross + interval + pending + group_wait}


def bench_footprint(runs: int, quick: bool, log: Path) -> dict:
    """Worker memory at 1k, 10k and 100k distinct keys; ClickHouse bytes per row (one pass)."""
    # 100k interactions even with --quick: fewer would cap the distinct keys below 100k.
    args = ["bench/footprint.py", "--json", "--events", "100000"]

    def pick(d):
        out = {}
        for r in d["runs"]:
            out[f"peak_rss_mb.{min(r['keys'], r['interactions'])}"] = r["peak_rss_mb"]
        last = d["runs"][-1]
        for t, sz in last["tables"].items():
            out[f"bytes_per_row.{t}"] = sz["bytes_per_row"]
        out["kafka_bytes_per_message"] = last.get("kafka_bytes_per_message")
        out["wire_bytes_per_message"] = last.get("wire_bytes_per_message")
        return out
    return repeated("footprint", args, 1, log, 2400, pick)


RUNNERS = {"footprint": bench_footprint, "sketch": bench_sketch, "sdk": bench_sdk, "worker": bench_worker,
           "workers2": bench_workers2, "freshness": bench_freshness, "alerts": bench_alerts, "p99": bench_p99}


# --- output -----------------------------------------------------------------------------------

def fmt(s: dict, unit: str = "", pct: bool = False, digits: int = 1) -> str:
    if s.get("median") is None:
        return "failed"
    f = (lambda v: f"{v:.2%}") if pct else (lambda v: f"{v:,.{digits}f}{unit}")
    if s["runs"] > 1:
        return f"{f(s['median'])} ({f(s['min'])}..{f(s['max'])})"
    return f(s["median"])


def markdown(results: dict) -> str:
    rows = ["| benchmark | aipulse | baseline (same run) | command |", "|---|---|---|---|"]
    r = results["benchmarks"]
    if "sdk" in r:
        f = r["sdk"]["figures"]
        rows.append(f"| SDK caller cost per interaction, median / P99 | {fmt(f.get('sdk.median_us', {}), ' µs', digits=2)} / "
                    f"{fmt(f.get('sdk.p99_us', {}), ' µs', digits=1)} | bare kafka-python send: {fmt(f.get('bare.median_us', {}), ' µs', digits=2)} / "
                    f"{fmt(f.get('bare.p99_us', {}), ' µs', digits=1)} | `bench/sdk_overhead.py` |")
    if "worker" in r:
        f = r["worker"]["figures"]
        rows.append(f"| one worker, end to end into ClickHouse | {fmt(f.get('worker.events_per_s', {}), ' ev/s', digits=0)}, "
                    f"{fmt(f.get('ratio', {}), 'x', digits=2)} of bare, {fmt(f.get('worker.cpu_us_per_event', {}), ' µs', digits=1)} CPU/event "
                    f"| bare aiokafka + json.loads (mean of a run before and after the worker): "
                    f"{fmt(f.get('bare.events_per_s', {}), ' ev/s', digits=0)}, {fmt(f.get('bare.cpu_us_per_event', {}), ' µs', digits=1)} CPU/event "
                    f"| `bench/worker_throughput.py` |")
    if "workers2" in r:
        f = r["workers2"]["figures"]
        per = " / ".join(fmt(v, ' µs', digits=1) for k, v in sorted(f.items())
                         if k.startswith("worker") and k[6:7].isdigit())
        rows.append(f"| two workers in one group, end to end into ClickHouse | {fmt(f.get('workers.events_per_s', {}), ' ev/s', digits=0)}, "
                    f"{fmt(f.get('ratio', {}), 'x', digits=2)} of bare; CPU/event per process {per} "
                    f"| bare aiokafka + json.loads (before and after): {fmt(f.get('bare.events_per_s', {}), ' ev/s', digits=0)}, "
                    f"{fmt(f.get('bare.cpu_us_per_event', {}), ' µs', digits=1)} CPU/event | `bench/workers_scaleout.py` |")
    if "p99" in r:
        f = r["p99"]["figures"]
        feats = sorted({k.split(".")[0] for k in f if k.endswith(".rel_error_vs_quantile_exact")})
        errs = ", ".join(f"{x} {fmt(f[x + '.rel_error_vs_quantile_exact'], pct=True)}" for x in feats)
        rows.append(f"| 30-day P99 by feature from window rows, relative error ({fmt(f.get('events', {}), '', digits=0)} events) | "
                    f"{errs} | quantileExact(0.99) over the raw table; stated bound {fmt(f.get('bound', {}), pct=True)} "
                    f"| `bench/p99_30d.py` |")
    if "freshness" in r:
        f = r["freshness"]["figures"]
        rows.append(f"| window freshness (row complete after window end), P50 / P99 | {fmt(f.get('p50_s', {}), ' s', digits=2)} / "
                    f"{fmt(f.get('p99_s', {}), ' s', digits=2)} | target {fmt(f.get('target_s', {}), ' s', digits=0)} | `bench/freshness.py` |")
    if "sketch" in r:
        f = r["sketch"]["figures"]
        for dist in ("lognormal", "bimodal", "pareto"):
            rows.append(f"| P50..P99.9 relative error, {dist}, median / max | "
                        f"{fmt(f.get(f'{dist}.sketch.median_rel_error', {}), pct=True)} / {fmt(f.get(f'{dist}.sketch.max_rel_error', {}), pct=True)} | "
                        f"Prometheus Histogram, default buckets: {fmt(f.get(f'{dist}.prometheus_histogram.median_rel_error', {}), pct=True)} / "
                        f"{fmt(f.get(f'{dist}.prometheus_histogram.max_rel_error', {}), pct=True)} | `bench/sketch_accuracy.py` |")
    if "alerts" in r:
        f = r["alerts"]["figures"]
        g = r["alerts"]["grafana_rule"]
        rows.append(f"| fallback surge 2 % -> 30 % to the webhook behind Alertmanager | {fmt(f.get('aipulse.detection_s', {}), ' s')} | "
                    f"Grafana rule as provisioned (every {g['interval_s']:.0f} s, for {g['for_s']:.0f} s, group_wait "
                    f"{g['group_wait_s']:.0f} s): {g['expected_s']:.0f} s expected, {g['worst_s']:.0f} s worst (computed) | "
                    f"`tests/alerts/test_e2e_alertmanager.py -s` |")
    if "footprint" in r:
        f = r["footprint"]["figures"]
        mem = [(int(k.split(".")[1]), v) for k, v in f.items() if k.startswith("peak_rss_mb.")]
        if mem:
            mem.sort()
            rows.append("| worker peak RSS by distinct window keys | "
                        + ", ".join(f"{k:,} keys: {fmt(v, ' MB', digits=0)}" for k, v in mem)
                        + f" | the same worker at {mem[0][0]:,} keys | `bench/footprint.py` |")
        bpr = {k.split(".", 1)[1]: v for k, v in f.items() if k.startswith("bytes_per_row.")}
        if bpr:
            rows.append("| ClickHouse bytes per row on disk after merge | "
                        + ", ".join(f"{t}: {fmt(v, ' B', digits=0)}" for t, v in bpr.items()
                                    if t != "partition_progress")
                        + f"; Kafka log: {fmt(f.get('kafka_bytes_per_message', {}), ' B', digits=0)} per message "
                          f"({fmt(f.get('wire_bytes_per_message', {}), ' B', digits=0)} of JSON)"
                        + " | (input for docs/scaling.md) | `bench/footprint.py` |")
    head = (f"Measured {results['date']} on {results['machine']}; median of {results['runs']} run(s), "
            f"(min..max) when repeated. `.venv/bin/python bench/run.py` reproduces it.")
    failed = [k for k, v in r.items() if v.get("failed_runs")]
    tail = f"\n\nRuns that failed or missed a target: {', '.join(failed)} (see bench/out/bench.log)." if failed else ""
    return head + "\n\n" + "\n".join(rows) + tail + "\n"


def update_readme(md: str) -> None:
    text = README.read_text()
    if MARK_START not in text:
        raise SystemExit(f"README.md has no {MARK_START} marker: add the markers where the table goes")
    pre, rest = text.split(MARK_START, 1)
    _, post = rest.split(MARK_END, 1)
    README.write_text(pre + MARK_START + "\n" + md + MARK_END + post)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each benchmark (default 3)")
    ap.add_argument("--quick", action="store_true", help="1 run each and smaller sizes")
    ap.add_argument("--only", default=None, help=f"comma list of {', '.join(BENCHMARKS)} (default: all; "
                    f"--quick leaves out {', '.join(NOT_QUICK)})")
    ap.add_argument("--readme", action="store_true", help="rewrite the README's benchmark table")
    args = ap.parse_args(argv)
    runs = 1 if args.quick else args.runs
    only = args.only if args.only is not None else ",".join(
        b for b in BENCHMARKS if not (args.quick and b in NOT_QUICK))
    chosen = [b.strip() for b in only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in RUNNERS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "bench.log"
    log.write_text("")
    load = os.getloadavg()
    results = {"date": time.strftime("%Y-%m-%d"), "runs": runs, "quick": args.quick,
               "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load {load[0]:.1f} at start",
               "benchmarks": {}}
    for i, name in enumerate(chosen, 1):
        say(f"[{i}/{len(chosen)}] {name} (full output in {log})")
        t0 = time.time()
        results["benchmarks"][name] = RUNNERS[name](runs, args.quick, log)
        results["benchmarks"][name]["seconds"] = round(time.time() - t0, 1)
        say(f"[{i}/{len(chosen)}] {name} done in {time.time() - t0:.0f}s")
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    md = markdown(results)
    (OUT / "results.md").write_text(md)
    print(md)
    if args.readme:
        update_readme(md)
        say("README.md table rewritten")
    return 1 if any(v.get("failed_runs") for v in results["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
