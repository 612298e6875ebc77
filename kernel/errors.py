"""One error tree for the whole control plane.

    MetaAgentError            (status, code, title, detail, extra)
    ├── NotFound              404  <thing>_not_found
    ├── Conflict              409  e.g. name_taken
    │   ├── InvalidTransition 409  invalid_transition
    │   └── StaleLease        409  stale_lease
    ├── Invalid               422  e.g. validation_error, unknown_agent
    ├── TooLarge              413  payload_too_large
    ├── TooMany               429  e.g. too_many_streams
    ├── Unauthorized          401  unauthorized
    ├── Forbidden             403  forbidden
    └── Unavailable           503  database_unavailable

Services raise these; `board_api` renders them as RFC 9457 problem+json with the stable
`code`. Nothing here knows about HTTP beyond the status number.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "Forbidden",
    "Invalid",
    "InvalidTransition",
    "MetaAgentError",
    "NotFound",
    "StaleLease",
    "TooLarge",
    "TooMany",
    "Unauthorized",
    "Unavailable",
]


class MetaAgentError(Exception):
    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.extra = extra


class NotFound(MetaAgentError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(MetaAgentError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "Transition not allowed"


class StaleLease(Conflict):
    code = "stale_lease"
    title = "Stale lease token"


class Invalid(MetaAgentError):
    status = 422
    code = "validation_error"
    title = "Invalid request"


class TooLarge(MetaAgentError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class TooMany(MetaAgentError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"


class Unauthorized(MetaAgentError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(MetaAgentError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class Unavailable(MetaAgentError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"
