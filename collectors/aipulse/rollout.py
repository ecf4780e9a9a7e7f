"""Rollouts and shadow runs.

**Rollout**: a deterministic percentage assignment of a user (or request) to the candidate
variant. The same unit always lands in the same bucket (SHA-256 of rollout name and unit id,
10,000 buckets), so raising the stage 5 -> 20 -> 50 -> 100 only ever *adds* units to the
candidate; lowering it (a rollback) removes them. The stage can change at run time from any
thread. Each assignment gives the ``variant`` and ``rollout_stage`` fields to record::

    >>> r = Rollout("reranker-v2", stage=5)
    >>> a = r.assign("user-42")
    >>> a.variant in ("candidate", "control"), a.stage
    (True, 5.0)
    >>> r.set_stage(100); r.assign("user-42").variant
    'candidate'

    with aipulse.interaction(feature="search", **r.assign(user.id).fields()) as call: ...

**Shadow**: run a candidate beside production on the same input, without showing its output.
The production call is an interaction as usual; the candidate's is an interaction with
``shadow=True`` and ``shadow_of`` = the production id, and when a ``compare`` function is
given, an evaluation (``source="shadow"``) of the candidate against production::

    answer = shadow(prod_answer, cand_answer, question, feature="search",
                    model="gpt-4o", candidate_model="gpt-4o-mini",
                    compare=lambda prod, cand: prod == cand)

The candidate runs on a small thread pool after production has answered; when the pool is
busy the shadow run is skipped (counted in :data:`SHADOW_STATS`) rather than queued.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from .client import evaluate
from .scope import interaction

log = logging.getLogger("aipulse")

BUCKETS = 10_000
STAGES = (5.0, 20.0, 50.0, 100.0)   # the usual ladder; any 0..100 is accepted
CANDIDATE = "candidate"
CONTROL = "control"
SHADOW_WORKERS = 4
SHADOW_MAX_PENDING = 64              # beyond this, shadow runs are skipped, not queued

SHADOW_STATS = {"started": 0, "skipped": 0, "failed": 0}


@dataclass(frozen=True)
class Assignment:
    variant: str
    stage: float

    def fields(self) -> dict[str, Any]:
        """Keywords for ``aipulse.interaction``: ``variant`` and ``rollout_stage``."""
        return {"variant": self.variant, "rollout_stage": self.stage}


class Rollout:
    """Deterministic percentage rollout of one candidate against control."""

    def __init__(self, name: str, stage: float = STAGES[0], *, candidate: str = CANDIDATE,
                 control: str = CONTROL):
        if not name:
            raise ValueError("a rollout needs a name")
        self.name = name
        self.candidate = candidate
        self.control = control
        self._stage = 0.0
        self.set_stage(stage)

    @property
    def stage(self) -> float:
        return self._stage

    def set_stage(self, stage: float) -> None:
        """Move to a new percentage (0..100) at run time; takes effect at the next assign()."""
        stage = float(stage)
        if not 0.0 <= stage <= 100.0:
            raise ValueError(f"stage must be 0..100 percent, got {stage}")
        self._stage = stage  # one attribute store: atomic for readers on other threads

    def bucket(self, unit_id: str) -> int:
        digest = hashlib.sha256(f"{self.name}\x00{unit_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % BUCKETS

    def assign(self, unit_id: str) -> Assignment:
        stage = self._stage
        variant = self.candidate if self.bucket(str(unit_id)) < stage * BUCKETS / 100.0 else self.control
        return Assignment(variant, stage)


_pool: ThreadPoolExecutor | None = None
_pending = 0
_lock = threading.Lock()


def _reset_after_fork() -> None:
    # A forked child inherits the pool object but none of its threads (tasks would wait
    # forever), and possibly a lock held by a thread that is gone: start afresh.
    global _pool, _pending, _lock
    _pool, _pending, _lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _submit(fn: Callable[[], None]) -> bool:
    global _pool, _pending
    with _lock:
        if _pending >= SHADOW_MAX_PENDING:
            SHADOW_STATS["skipped"] += 1
            return False
        if _pool is None:
            _pool = ThreadPoolExecutor(SHADOW_WORKERS, thread_name_prefix="aipulse-shadow")
        _pending += 1
        SHADOW_STATS["started"] += 1

    def run() -> None:
        global _pending
        try:
            fn()
        finally:
            with _lock:
                _pending -= 1

    _pool.submit(run)
    return True


def shadow(production: Callable[..., Any], candidate: Callable[..., Any], *args: Any,
           feature: str = "", model: str = "", candidate_model: str = "",
           compare: Callable[[Any, Any], bool | float] | None = None,
           fields: dict[str, Any] | None = None, wait: bool = False, **kwargs: Any) -> Any:
    """Return ``production(*args, **kwargs)``; run ``candidate`` on the same input in the
    background as a shadow interaction. ``compare(prod, cand)`` returning a bool records
    ``correct``, a float in 0..1 records ``score``. ``wait=True`` runs the candidate inline
    (tests, batch jobs)."""
    base = dict(fields or {})
    if feature:
        base["feature"] = feature
    with interaction(model=model, **base) as prod_call:
        result = production(*args, **kwargs)

    def run_candidate() -> None:
        cand_result = None
        ok = False
        try:
            with interaction(model=candidate_model, shadow=True, shadow_of=prod_call.id, **base) as cand_call:
                cand_result = candidate(*args, **kwargs)
                ok = True
        except Exception:
            SHADOW_STATS["failed"] += 1
        if ok and compare is not None:
            try:
                verdict = compare(result, cand_result)
            except Exception:
                log.warning("aipulse: shadow compare failed", exc_info=True)
                return
            if isinstance(verdict, bool):
                evaluate(cand_call.id, correct=verdict, source="shadow", evaluator="shadow-compare")
            else:
                evaluate(cand_call.id, score=float(verdict), source="shadow", evaluator="shadow-compare")

    if wait:
        run_candidate()
    else:
        _submit(run_candidate)
    return result
