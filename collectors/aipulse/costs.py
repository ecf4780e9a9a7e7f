"""Cost of a model call from its tokens, when the application did not give one.

Prices come from the `genai-prices <https://github.com/pydantic/genai-prices>`_ package, a
maintained price table (no hand-written prices here). Private or fine-tuned models go in the
``price_overrides`` table of the config, in USD per million tokens; an override wins over the
table. Each event records where its cost came from in ``cost_source``:

==================  ==========================================================
``app``             the application gave ``cost_usd``
``override``        from ``price_overrides``
``genai-prices``    from the genai-prices table (its version in ``cost_source``
                    would churn dashboards, so it is in :data:`PRICES_VERSION`)
``unknown``         tokens known but the model is in neither table: no cost
==================  ==========================================================

    >>> pricer = Pricer({"acme-ft-1": (1.0, 2.0)})
    >>> pricer.price("acme-ft-1", "", 1_000_000, 500_000)
    (2.0, 'override')
    >>> pricer.price("gpt-4o", "openai", 1000, 500)
    (0.0075, 'genai-prices')
    >>> pricer.price("no-such-model-xyz", "", 10, 10)
    (None, 'unknown')

A lookup costs ~75 µs, so it runs on the sender thread and is cached per
(model, provider, tokens); unknown models are remembered too.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Mapping

log = logging.getLogger("aipulse")

SOURCE_APP = "app"
SOURCE_OVERRIDE = "override"
SOURCE_TABLE = "genai-prices"
SOURCE_UNKNOWN = "unknown"
PRICE_CACHE_SIZE = 16_384
PER_MILLION = 1_000_000

try:
    from importlib.metadata import version as _version

    PRICES_VERSION = _version("genai-prices")
except Exception:  # pragma: no cover - metadata missing in odd installs
    PRICES_VERSION = "unknown"


class Pricer:
    """Computes ``(cost_usd, cost_source)`` for a model and its token counts."""

    def __init__(self, overrides: Mapping[str, tuple[float, float]] | None = None):
        self._overrides = {k: (float(v[0]), float(v[1])) for k, v in dict(overrides or {}).items()}
        self._unknown: set[tuple[str, str]] = set()
        self._table = lru_cache(maxsize=PRICE_CACHE_SIZE)(self._table_price)

    def price(self, model: str, provider: str, input_tokens: int, output_tokens: int) -> tuple[float | None, str]:
        over = self._overrides.get(model)
        if over is not None:
            usd = (input_tokens * over[0] + output_tokens * over[1]) / PER_MILLION
            return round(usd, 12), SOURCE_OVERRIDE
        if (model, provider) in self._unknown:
            return None, SOURCE_UNKNOWN
        usd = self._table(model, provider, input_tokens, output_tokens)
        if usd is None:
            self._unknown.add((model, provider))
            return None, SOURCE_UNKNOWN
        return usd, SOURCE_TABLE

    def fill(self, event: dict) -> None:
        """Set ``cost_usd``/``cost_source`` on an interaction dict, in place."""
        if event.get("cost_usd") is not None:
            event.setdefault("cost_source", SOURCE_APP)
            return
        model = event.get("model")
        tin = event.get("input_tokens") or 0
        tout = event.get("output_tokens") or 0
        if not model or not (tin or tout):
            return
        usd, source = self.price(str(model), str(event.get("provider") or ""), int(tin), int(tout))
        if usd is not None:
            event["cost_usd"] = usd
        event["cost_source"] = source

    @staticmethod
    def _table_price(model: str, provider: str, input_tokens: int, output_tokens: int) -> float | None:
        from genai_prices import Usage, calc_price

        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        try:
            calc = calc_price(usage, model, provider_id=provider or None)
        except LookupError:
            if not provider:
                return None
            try:  # the provider name the app used may not be genai-prices' id for it
                calc = calc_price(usage, model)
            except LookupError:
                return None
        except Exception:
            log.debug("aipulse: genai-prices failed for %s/%s", provider, model, exc_info=True)
            return None
        return float(calc.total_price)
