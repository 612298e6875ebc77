"""RFC 9457 problem+json for every error, with a stable `code`; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kernel.errors import MetaAgentError
from kernel.redact import redact

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    detail = redact(detail)  # details are built from other errors, which may quote a secret
    body = {
        "type": f"https://meta-agent.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="meta-agent"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def domain_problem(exc: MetaAgentError) -> JSONResponse:
    extra = {k: v for k, v in exc.extra.items() if isinstance(v, str | int | float | bool | None)}
    return problem(exc.status, exc.code, exc.title, exc.detail, **extra)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(MetaAgentError)
    async def _domain(_: Request, exc: MetaAgentError) -> JSONResponse:
        return domain_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first: dict[str, Any] = errs[0] if errs else {}
        if first.get("type") == "json_invalid":
            return problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON")
        detail = "; ".join(f"{_loc(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errs[:5])
        fields = [{"field": _loc(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in errs[:20]]
        return problem(422, "validation_error", "Invalid request", detail, errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500, "internal_error", "Internal error", "an unexpected error occurred; it has been logged"
        )
