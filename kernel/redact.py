"""Take secrets out of text that leaves the process: error details, task errors, log lines.

Errors are built from other errors (a provider's 401 says "Incorrect API key provided:
sk-...", a failed HTTP call names its URL with `?token=...`, a database error names its
DSN), and they end up where many can read them: problem+json bodies, the board, Slack, logs.
`redact()` replaces

- every value registered with `register()` (the process's own keys and tokens: the control
  plane registers its settings' secrets at start, the worker its API key), and
- anything shaped like a credential: our keys (`ma_<prefix>_<secret>`), provider keys
  (`sk-...`, `sk-ant-...`), Slack tokens (`xoxb-`, `xapp-`, ...), `Bearer <token>`,
  `password`/`token`/`api_key`/`secret` assignments in URLs, JSON and text, and the
  password in a `scheme://user:password@host` URL,

with `[redacted]`. It is a last line of defence, not a reason to put secrets in messages.
"""

from __future__ import annotations

import re
import threading
from typing import Any, cast

__all__ = ["MASK", "redact", "redact_data", "register"]

MASK = "[redacted]"
_MIN_SECRET = 8  # shorter "secrets" (test fixtures, "changeme") would blank out normal words

_PATTERNS = [
    re.compile(r"\bma_[0-9a-f]{6,}_[A-Za-z0-9_\-]{8,}"),  # our API keys
    re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-*]{8,}"),  # OpenAI / Anthropic style
    re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{6,}"),  # Slack bot / user tokens
    re.compile(r"\bxapp-[A-Za-z0-9\-]{6,}"),  # Slack app-level tokens
    re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=\-]{6,}", re.I),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),  # GitHub fine-grained tokens
    re.compile(r"\bwhsec_[A-Za-z0-9_\-]{16,}"),  # webhook signing secrets (ours: store/hooks.py)
]
_KEY = r"[\w\-]*(?:password|passwd|secret|token|api[_\-]?key|apikey|access[_\-]?key)"
# key=value (query strings, env, DSN options) and "key": "value" (JSON) for credential-ish
# keys; the key name is kept. Prose ("token: must be an integer") is left alone.
_ASSIGN = re.compile(
    rf"""
    (?P<key>\b{_KEY}|"{_KEY}"|'{_KEY}')
    (?P<sep>=|\s*:\s*(?=["']))
    (?P<q>["']?)
    (?P<value>[^\s"'&,;}}]{{4,}})
    """,
    re.I | re.X,
)
_URL_PASSWORD = re.compile(r"(?P<pre>\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:)(?P<pw>[^@\s/]+)(?P<at>@)", re.I)


def _scoped(pattern: re.Pattern[str]) -> str:
    flags = ("i" if pattern.flags & re.I else "") + ("x" if pattern.flags & re.X else "")
    return f"(?{flags}:{pattern.pattern})"


# Every pattern as one alternation, searched once: it matches somewhere exactly when one of
# them would, so text it does not match (nearly every event: a model's words, a tool's
# output) comes back as it is, in one scan instead of a substitution per pattern.
_ANY = re.compile("|".join(_scoped(p) for p in (*_PATTERNS, _URL_PASSWORD, _ASSIGN)))

_known: set[str] = set()
_lock = threading.Lock()
# The registered secrets, longest first (a secret containing another is masked whole), and
# one search that finds whether any of them is in a text; rebuilt by `register`.
_known_sorted: tuple[str, ...] = ()
_known_any: re.Pattern[str] | None = None


def register(*secrets: str | None) -> None:
    """Remember the process's own secrets so that they are masked wherever they appear."""
    global _known_sorted, _known_any
    with _lock:
        _known.update(s for s in secrets if s and len(s) >= _MIN_SECRET)
        ordered = tuple(sorted(_known, key=len, reverse=True))
        _known_any = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        _known_sorted = ordered


def redact(text: str) -> str:
    """`text` with secrets masked."""
    if not text:
        return text
    known = _known_any
    if known is not None and known.search(text):
        for secret in _known_sorted:
            if secret in text:
                text = text.replace(secret, MASK)
    if _ANY.search(text) is None:
        return text
    # Applied one after the other, as ever: each sees what the previous one left.
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}{m['at']}", text)
    return _ASSIGN.sub(lambda m: f"{m['key']}{m['sep']}{m['q']}{MASK}", text)


_CREDENTIAL_KEY = re.compile(rf"(?i){_KEY}")
# Keys seen, and whether each is credential-named: an event stream repeats the same few keys
# ("text", "n", ...), so the regex runs once per key instead of once per value. Bounded, so
# data with ever new keys cannot grow it without end.
_KEYS_SEEN: dict[str, bool] = {}
_KEYS_MAX = 4096


def _credential_key(key: str) -> bool:
    named = _KEYS_SEEN.get(key)
    if named is None:
        named = _CREDENTIAL_KEY.fullmatch(key) is not None
        if len(_KEYS_SEEN) < _KEYS_MAX:
            _KEYS_SEEN[key] = named
    return named


def redact_data(value: Any) -> Any:
    """A JSON value (dicts, lists, strings, numbers) with every string passed through
    `redact`, and any string under a credential-named key (`"api_key": "..."`) masked whole:
    structured data has no `key=value` text left for `redact` to recognise."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        obj = cast("dict[Any, Any]", value)  # isinstance leaves a JSON object's types unknown
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(v, str):
                out[k] = MASK if len(v) >= 4 and isinstance(k, str) and _credential_key(k) else redact(v)
            elif v is None or isinstance(v, int | float):  # most of an event's values: no call
                out[k] = v
            else:
                out[k] = redact_data(v)
        return out
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in cast("list[Any] | tuple[Any, ...]", value)]
    return value
