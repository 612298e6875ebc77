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
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=\-]{6,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),  # GitHub fine-grained tokens
    re.compile(r"\bwhsec_[A-Za-z0-9_\-]{16,}"),  # webhook signing secrets (ours: store/hooks.py)
]
_KEY = r"[\w\-]*(?:password|passwd|secret|token|api[_\-]?key|apikey|access[_\-]?key)"
# key=value (query strings, env, DSN options) and "key": "value" (JSON) for credential-ish
# keys; the key name is kept. Prose ("token: must be an integer") is left alone.
_ASSIGN = re.compile(
    rf"""(?ix)
    (?P<key>\b{_KEY}|"{_KEY}"|'{_KEY}')
    (?P<sep>=|\s*:\s*(?=["']))
    (?P<q>["']?)
    (?P<value>[^\s"'&,;}}]{{4,}})
    """
)
_URL_PASSWORD = re.compile(r"(?P<pre>\b[a-z][a-z0-9+.\-]*://[^/\s:@]+:)(?P<pw>[^@\s/]+)(?P<at>@)", re.I)

_known: set[str] = set()
_lock = threading.Lock()


def register(*secrets: str | None) -> None:
    """Remember the process's own secrets so that they are masked wherever they appear."""
    with _lock:
        _known.update(s for s in secrets if s and len(s) >= _MIN_SECRET)


def redact(text: str) -> str:
    """`text` with secrets masked."""
    if not text:
        return text
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}{m['at']}", text)
    return _ASSIGN.sub(lambda m: f"{m['key']}{m['sep']}{m['q']}{MASK}", text)


_CREDENTIAL_KEY = re.compile(rf"(?i){_KEY}")


def redact_data(value: Any) -> Any:
    """A JSON value (dicts, lists, strings, numbers) with every string passed through
    `redact`, and any string under a credential-named key (`"api_key": "..."`) masked whole:
    structured data has no `key=value` text left for `redact` to recognise."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        obj = cast("dict[Any, Any]", value)  # isinstance leaves a JSON object's types unknown
        return {
            k: MASK
            if isinstance(v, str) and len(v) >= 4 and isinstance(k, str) and _CREDENTIAL_KEY.fullmatch(k)
            else redact_data(v)
            for k, v in obj.items()
        }
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in cast("list[Any] | tuple[Any, ...]", value)]
    return value
