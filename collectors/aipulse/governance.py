"""What leaves the process about people and their words.

- **User ids are hashed** (HMAC-SHA256 with a configurable secret salt, 32 hex characters) unless
  ``hash_user_ids=False``. The same id and salt always give the same hash, so per-user metrics
  and joins still work; without the salt nobody can test guesses against the hashes.
- **Text is off by default**: ``prompt``, ``response`` and feedback ``correction``/``comment``
  are removed before sending unless ``capture_text=True``. When on, each is truncated to
  ``max_text_chars`` and passed through the ``redact`` hook (``(text, field) -> text | None``;
  ``None`` removes the field). :func:`redact_common` is a starting point.

    >>> from aipulse.config import Config
    >>> g = Governance(Config.load(user_salt="s3cret", capture_text=True, max_text_chars=20,
    ...                            redact=redact_common))
    >>> ev = {"user_id": "alice@example.com", "prompt": "mail me at bob@example.com please"}
    >>> g.apply(ev)
    >>> len(ev["user_id"]), ev["prompt"]
    (32, 'mail me at [email] …')

Runs on the sender thread, never on the application's.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from functools import lru_cache

from .config import Config

log = logging.getLogger("aipulse")

TEXT_FIELDS = ("prompt", "response", "correction", "comment")
HASH_HEX_CHARS = 32          # 128 bits: collision-free for any realistic user count
HASH_PREFIX = ""             # hashed ids look like hex; raw ids pass through unchanged
TRUNCATION_MARK = "…"
# Redaction sees at most this many times max_text_chars (bounds the regex work per event).
REDACT_WINDOW = 4

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_LONG_DIGITS = re.compile(r"\+?\d[\d \-]{7,}\d")  # phone and card numbers


def redact_common(text: str, field: str) -> str:
    """Mask e-mail addresses and long digit runs (phones, cards). A sample redaction hook."""
    return _LONG_DIGITS.sub("[number]", _EMAIL.sub("[email]", text))


class Governance:
    """Applies the privacy settings of a :class:`~aipulse.config.Config` to one event dict."""

    def __init__(self, config: Config):
        self._hash = config.hash_user_ids
        self._capture = config.capture_text
        self._max_chars = config.max_text_chars
        self._redact = config.redact
        salt = config.user_salt
        if self._hash and not salt:
            # A fixed, public salt still hides ids from casual readers but not from someone who
            # can guess them; say so once.
            log.warning("aipulse: AIPULSE_USER_SALT is not set; user ids are hashed with the "
                        "service name as salt. Set a secret salt in production.")
            salt = f"aipulse:{config.service}"
        key = salt.encode()
        self.hash_user_id = lru_cache(maxsize=65_536)(
            lambda uid: hmac.new(key, uid.encode(), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]
        )

    def apply(self, event: dict) -> None:
        uid = event.get("user_id")
        if uid and self._hash:
            event["user_id"] = self.hash_user_id(str(uid))
        for name in TEXT_FIELDS:
            text = event.get(name)
            if text is None:
                continue
            if not self._capture:
                del event[name]
                continue
            # Redact before truncating, so a cut can never split a secret past the pattern.
            text = str(text)[: self._max_chars * REDACT_WINDOW]
            if self._redact is not None:
                try:
                    text = self._redact(text, name)
                except Exception:
                    # A failing hook must not leak the unredacted text: drop the field.
                    log.warning("aipulse: redact hook failed on %s; field removed", name, exc_info=True)
                    text = None
            if text is not None and len(text) > self._max_chars:
                text = text[: self._max_chars - len(TRUNCATION_MARK)] + TRUNCATION_MARK
            if text is None:
                del event[name]
            else:
                event[name] = text
