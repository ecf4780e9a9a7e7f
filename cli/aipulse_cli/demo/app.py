"""The demo's production application: a support assistant instrumented with the real SDK.

Nothing here forges events: every request goes through ``aipulse`` exactly as an application
would call it (a :class:`~aipulse.reliability.FallbackChain` behind a circuit breaker, a
:class:`~aipulse.rollout.Rollout`, :func:`~aipulse.rollout.shadow`, ``feedback()`` and
``evaluate()``). Only the model providers are simulated, since there are no real ones here:
a simulated call adds its simulated duration to the open interaction (``latency_ms``) instead
of sleeping it, so a trace hour replays in minutes, and it fails, times out or slows down as
:class:`Conditions` say. Features::

    support-chat  premium users: gpt-4o (circuit breaker) -> gpt-4o-mini; basic users: gpt-4o-mini.
                  A prompt-v2 canary (Rollout "support-prompt-v2", 5 % then 20 %).
    summarize     claude-sonnet-4-5 -> claude-haiku-4-5 (ticket summaries)
    triage        claude-haiku-4-5 with a confidence gate (escalates to a human); ground truth
                  for a sample
    kb-search     gpt-4o-mini in production, claude-haiku-4-5 as a shadow candidate

    >>> app = SupportAssistant(Conditions(), seed=1)         # doctest: +SKIP
    >>> app.handle(TraceRequest(0.0, "conv", 400, 90))       # doctest: +SKIP
"""
from __future__ import annotations

import random
import threading
import zlib
from dataclasses import dataclass, field

import aipulse
from aipulse.reliability import CircuitBreaker, ConfidenceGate, FallbackChain, FallbackExhausted, Step
from aipulse.rollout import Rollout, shadow

from .trace import TraceRequest

USERS = 600                 # distinct simulated users
PREMIUM_SHARE = 0.6         # of support-chat users, served by gpt-4o first
PRIMARY_TIMEOUT_MS = 8000   # the chain's budget for the primary (simulated time)
FALLBACK_TIMEOUT_MS = 6000
BREAKER_THRESHOLD = 5
BREAKER_RESET_S = 8.0       # real seconds: the demo's minutes are short
FEEDBACK_SHARE = 0.3        # users who click thumbs up/down
CORRECTION_SHARE = 0.25     # of thumbs-down, an agent also writes a correction
GROUND_TRUTH_SHARE = 0.2    # of triage tickets, labelled later by an agent
TASK_SHARE = 0.35           # of answers, the app later learns whether the user's task got done
ROLLOUT = "support-prompt-v2"


class ProviderError(RuntimeError):
    """The simulated provider answered 5xx / rate-limited."""


class BadRequest(RuntimeError):
    """The simulated provider refused the (candidate) prompt."""


@dataclass
class ModelProfile:
    """A simulated model: latency from tokens, an error rate, a quality (answer is good)."""

    ms_per_token: float
    ttft_base_ms: float
    error_rate: float
    quality: float


@dataclass
class Conditions:
    """What the world is like right now; the scenario changes it while traffic runs."""

    primary_slowdown: float = 1.0      # gpt-4o latency factor
    primary_error_rate: float = 0.004  # gpt-4o failures
    fallback_error_rate: float = 0.003 # gpt-4o-mini failures (rate limits when fallbacks surge)
    canary_error_rate: float = 0.004   # extra failures of the prompt-v2 candidate
    canary_slowdown: float = 1.0
    canary_quality: float = 0.0        # change of answer quality under the candidate prompt
    phase: str = "healthy"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


PROFILES = {
    "gpt-4o": ModelProfile(ms_per_token=4.0, ttft_base_ms=250, error_rate=0.0, quality=0.9),
    "gpt-4o-mini": ModelProfile(ms_per_token=2.5, ttft_base_ms=180, error_rate=0.0, quality=0.8),
    "claude-sonnet-4-5": ModelProfile(ms_per_token=4.5, ttft_base_ms=300, error_rate=0.004, quality=0.9),
    "claude-haiku-4-5": ModelProfile(ms_per_token=2.0, ttft_base_ms=150, error_rate=0.003, quality=0.8),
}


@dataclass
class Answer:
    text: str
    good: bool
    confidence: float
    model: str


class SimulatedModel:
    """One provider model: ``__call__(req, variant)`` returns an :class:`Answer` or raises."""

    def __init__(self, name: str, conditions: Conditions, rng: random.Random):
        self.name = name
        self.profile = PROFILES[name]
        self.cond = conditions
        self.rng = rng

    def _slowdown(self) -> float:
        return self.cond.primary_slowdown if self.name == "gpt-4o" else 1.0

    def _error_rate(self) -> float:
        if self.name == "gpt-4o":
            return self.cond.primary_error_rate
        if self.name == "gpt-4o-mini":
            return self.cond.fallback_error_rate
        return self.profile.error_rate

    def __call__(self, req: TraceRequest, variant: str = "control", budget_ms: float = 1e9) -> Answer:
        rng, p = self.rng, self.profile
        slow = self._slowdown() * (self.cond.canary_slowdown if variant == "candidate" else 1.0)
        ttft = (p.ttft_base_ms + 0.03 * req.input_tokens) * rng.lognormvariate(0, 0.3) * slow
        spent = ttft + req.output_tokens * p.ms_per_token * rng.lognormvariate(0, 0.25) * slow
        call = aipulse.current_interaction()
        if call is not None:
            _LAST.id = call.id  # the app's handle on this request, for feedback later
        timed_out = spent > budget_ms
        if call is not None:  # the simulated provider's time, in place of a real wait
            f = call.fields
            f["latency_ms"] = f.get("latency_ms", 0.0) + min(spent, budget_ms)
            f.setdefault("ttft_ms", round(min(ttft, budget_ms), 2))
        if timed_out:
            raise TimeoutError(f"{self.name} exceeded {budget_ms:.0f} ms")
        err = self._error_rate() + (self.cond.canary_error_rate if variant == "candidate" else 0.0)
        x = rng.random()
        if x < err:
            raise (BadRequest if variant == "candidate" and x < self.cond.canary_error_rate else ProviderError)(
                f"{self.name}: simulated provider failure")
        if call is not None:
            call.add_tokens(req.input_tokens, req.output_tokens)
        quality = p.quality + (self.cond.canary_quality if variant == "candidate" else 0.0)
        good = rng.random() < quality
        conf = min(0.99, max(0.05, rng.betavariate(8, 2) if good else rng.betavariate(3, 3)))
        text = f"[{self.name}] {'a good' if good else 'a poor'} answer to a {req.input_tokens}-token ticket"
        if call is not None:  # kept only where the app enabled text capture (the demo does)
            call.update(prompt=f"({req.source} ticket of {req.input_tokens} tokens, simulated)", response=text)
        return Answer(text, good, round(conf, 3), self.name)


class SupportAssistant:
    """The application: one :meth:`handle` per trace request, on the caller's thread."""

    def __init__(self, conditions: Conditions, seed: int = 2023):
        self.cond = conditions
        self.rng = random.Random(seed)
        self.models = {m: SimulatedModel(m, conditions, random.Random(seed + i)) for i, m in enumerate(PROFILES)}
        self.breaker = CircuitBreaker("openai/gpt-4o", failure_threshold=BREAKER_THRESHOLD,
                                      reset_timeout_s=BREAKER_RESET_S)
        self.rollout = Rollout(ROLLOUT, stage=5)
        self.handled = 0
        self.errors = 0

        def timed(model: str, budget: float):
            m = self.models[model]
            return lambda req, variant="control": m(req, variant, budget)

        answer_ok = lambda a: bool(a and a.text)  # noqa: E731
        self.premium_chat = FallbackChain(
            [Step("primary", timed("gpt-4o", PRIMARY_TIMEOUT_MS), model="gpt-4o", provider="openai",
                  breaker=self.breaker),
             Step("fallback", timed("gpt-4o-mini", FALLBACK_TIMEOUT_MS), model="gpt-4o-mini", provider="openai")],
            feature="support-chat", validate_output=answer_ok)
        self.basic_chat = FallbackChain(
            [Step("primary", timed("gpt-4o-mini", FALLBACK_TIMEOUT_MS), model="gpt-4o-mini", provider="openai")],
            feature="support-chat", validate_output=answer_ok)
        self.summarize = FallbackChain(
            [Step("primary", timed("claude-sonnet-4-5", PRIMARY_TIMEOUT_MS), model="claude-sonnet-4-5",
                  provider="anthropic"),
             Step("fallback", timed("claude-haiku-4-5", FALLBACK_TIMEOUT_MS), model="claude-haiku-4-5",
                  provider="anthropic")],
            feature="summarize", validate_output=answer_ok)
        self.gate = ConfidenceGate(0.45)

    # ------------------------------------------------------------ one request

    def handle(self, req: TraceRequest) -> None:
        user = f"user-{self.rng.randint(1, USERS)}"
        r = self.rng.random()
        try:
            if req.source == "conv":
                if r < 0.7:
                    self._chat(req, user)
                else:
                    self._chain(self.summarize, req, user, {"prompt_version": "v1"})
            else:
                if r < 0.5:
                    self._triage(req, user)
                else:
                    self._search(req, user)
        finally:
            self.handled += 1

    def _chat(self, req: TraceRequest, user: str) -> None:
        arm = self.rollout.assign(user)
        premium = zlib.crc32(user.encode()) % 100 < PREMIUM_SHARE * 100
        fields = {**arm.fields(), "prompt_version": "v2" if arm.variant == "candidate" else "v1",
                  "user_id": user, "provider": "openai", "plan": "premium" if premium else "basic"}
        self._chain(self.premium_chat if premium else self.basic_chat, req, user, fields, arm.variant)

    def _chain(self, chain: FallbackChain, req: TraceRequest, user: str, fields: dict,
               variant: str = "control") -> None:
        fields = {"user_id": user, **fields}
        try:
            answer = chain(req, variant, aipulse_fields=fields)
        except FallbackExhausted:
            self.errors += 1
            return
        self._react(answer, fields)

    def _react(self, answer: Answer, fields: dict, iid: str | None = None) -> None:
        """The user's thumbs (and an agent's correction) on some answers; whether the task got
        done (the ticket closed without a reopen) on others."""
        iid = iid or _last_id()
        if not iid:
            return
        if self.rng.random() < TASK_SHARE:
            done = self.rng.random() < (0.92 if answer.good else 0.35)
            aipulse.feedback(iid, "task_completed" if done else "task_failed", user_id=fields.get("user_id"))
        if self.rng.random() >= FEEDBACK_SHARE:
            return
        up = self.rng.random() < (0.9 if answer.good else 0.25)
        aipulse.feedback(iid, "thumbs_up" if up else "thumbs_down", user_id=fields.get("user_id"))
        if not up and self.rng.random() < CORRECTION_SHARE:
            aipulse.feedback(iid, "human_correction", correction="(agent's corrected answer)")

    def _triage(self, req: TraceRequest, user: str) -> None:
        model = self.models["claude-haiku-4-5"]
        try:
            with aipulse.interaction(feature="triage", model="claude-haiku-4-5", provider="anthropic",
                                     user_id=user, prompt_version="v3") as call:
                answer = model(req, "control", FALLBACK_TIMEOUT_MS)
                self.gate.check(answer.confidence)
        except (ProviderError, TimeoutError):  # recorded by the SDK; the ticket goes to the queue
            self.errors += 1
            return
        if self.rng.random() < GROUND_TRUTH_SHARE:
            aipulse.evaluate(call.id, correct=answer.good, source="ground_truth", evaluator="support-agent")
        self._react(answer, {"user_id": user}, call.id)

    def _search(self, req: TraceRequest, user: str) -> None:
        prod, cand = self.models["gpt-4o-mini"], self.models["claude-haiku-4-5"]
        holder: dict = {}

        def production(q):
            a = prod(q, "control", FALLBACK_TIMEOUT_MS)
            holder["id"] = aipulse.current_interaction().id
            return a

        def candidate(q):
            return cand(q, "control", FALLBACK_TIMEOUT_MS)

        try:  # a provider failure is recorded by the SDK and shown to the user as an error
            answer = shadow(production, candidate, req, feature="kb-search", model="gpt-4o-mini",
                            candidate_model="claude-haiku-4-5", fields={"user_id": user},
                            compare=lambda p, c: p.good == c.good)
        except (ProviderError, TimeoutError):
            self.errors += 1
            return
        self._react(answer, {"user_id": user}, holder.get("id"))


_LAST = threading.local()


def _last_id() -> str | None:
    return getattr(_LAST, "id", None)
