"""The real request trace that drives the demo: arrival times and token counts.

    >>> trace = load_trace()                       # doctest: +SKIP
    >>> trace.requests[0]                          # doctest: +SKIP
    TraceRequest(offset_s=0.0, source='conv', input_tokens=374, output_tokens=44)

Azure LLM inference trace 2023, CC-BY 4.0, Patel et al., "Splitwise: Efficient generative LLM
inference using phase splitting", ISCA 2024 (keep this attribution wherever it is used).
Read from ``$AIPULSE_DEMO_TRACE``, else the whole trace in ``../shared/data/azure-llm-trace-2023``
when a checkout sits beside it, else the sample packaged with aipulse (:data:`PACKAGED_DIR`,
every second request, its README and licence beside it), so a plain install runs the demo.
Any folder with ``conv.csv`` / ``code.csv`` of the same columns can be passed instead.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from aipulse_stream.config import DemoConfig

ATTRIBUTION = ('Azure LLM inference trace 2023 (CC-BY 4.0), Patel et al., "Splitwise: Efficient '
               'generative LLM inference using phase splitting", ISCA 2024')
FILES = ("conv", "code")  # conversation service, code-completion service
SHARED_REL = Path("shared") / "data" / "azure-llm-trace-2023"
ENV_DIR = "AIPULSE_DEMO_TRACE"  # a folder with conv.csv and code.csv, overrides the search
# Package data: every second request of the trace, with the dataset's README (licence, attribution).
PACKAGED_DIR = Path(__file__).resolve().parent / "data" / "azure-llm-trace-2023"


class TraceMissing(FileNotFoundError):
    """No trace folder was found: the message says where it was looked for."""


@dataclass(frozen=True)
class TraceRequest:
    offset_s: float       # seconds since the first request of the trace
    source: str           # "conv" or "code"
    input_tokens: int
    output_tokens: int


@dataclass
class Trace:
    requests: list[TraceRequest]
    span_s: float
    origin: str           # where it was read from (for the summary)


def default_dir() -> Path | None:
    """$AIPULSE_DEMO_TRACE, else the first ``shared/data/azure-llm-trace-2023`` beside the
    checkout or one of its parents (``../shared`` of the main checkout, ``../../shared`` of a
    worktree), else the packaged sample; None only when a broken install lacks it too."""
    configured = DemoConfig.from_env().demo_trace   # ENV_DIR
    if configured:
        return configured
    for parent in Path(__file__).resolve().parents[3:]:
        cand = parent / SHARED_REL
        if (cand / "conv.csv").exists():
            return cand
    return PACKAGED_DIR if (PACKAGED_DIR / "conv.csv").exists() else None


def _rows(text: Iterable[str], source: str) -> Iterable[tuple[float, str, int, int]]:
    for row in csv.DictReader(text):
        # 100 ns precision: Python parses at most microseconds.
        ts = datetime.fromisoformat(row["TIMESTAMP"][:26]).replace(tzinfo=timezone.utc).timestamp()
        yield ts, source, int(row["ContextTokens"]), int(row["GeneratedTokens"])


def load_trace(folder: Path | str | None = None, progress: Callable[[int, int], None] | None = None) -> Trace:
    """All requests of ``conv.csv`` and ``code.csv`` in ``folder`` (default: the shared copy),
    merged by arrival time; ``progress(done_bytes, total_bytes)`` is called while reading."""
    folder = Path(folder) if folder is not None else default_dir()
    if folder is None:
        raise TraceMissing(f"the demo trace is missing: no ../{SHARED_REL} beside the checkout and no "
                           f"packaged sample in {PACKAGED_DIR}; set {ENV_DIR} to a folder holding conv.csv and code.csv")
    paths = [folder / f"{name}.csv" for name in FILES]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise TraceMissing(f"the demo trace is incomplete: {', '.join(missing)} not found")
    total = sum(p.stat().st_size for p in paths)
    done = 0
    out: list[tuple[float, str, int, int]] = []
    for name, path in zip(FILES, paths):
        data = path.read_text()
        out.extend(_rows(io.StringIO(data), name))
        done += path.stat().st_size
        if progress:
            progress(done, total)
    if not out:
        raise TraceMissing(f"the demo trace in {folder} has no rows")
    out.sort()
    t0 = out[0][0]
    reqs = [TraceRequest(t - t0, s, i, o) for t, s, i, o in out]
    return Trace(reqs, reqs[-1].offset_s, str(folder))


def thin(trace: Trace, keep: float) -> list[TraceRequest]:
    """Every request with a deterministic keep-probability (0 < keep <= 1): a thinned Poisson
    process keeps the trace's burstiness shape at a lower rate."""
    if keep >= 1.0:
        return list(trace.requests)
    step = 1.0 / keep
    out, acc = [], 0.0
    for i, r in enumerate(trace.requests):
        if i >= acc:
            out.append(r)
            acc += step
    return out
