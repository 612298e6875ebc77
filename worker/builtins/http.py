"""`http_request`: one HTTP request from the worker machine."""

from __future__ import annotations

from typing import Any

import httpx

from kernel.netguard import Blocked, GuardedTransport, NetGuard
from kernel.redact import redact
from worker.builtins.base import ToolEnv, ToolError
from worker.builtins.shell import clip
from worker.runtime import TaskFailed
from worker.shapes import as_dict

__all__ = ["HttpRequest"]

TIMEOUT = 30.0
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
SHOWN_HEADERS = ("content-type", "content-length", "location", "retry-after")


class HttpRequest:
    name = "http_request"
    description = (
        "Send an HTTP request and return the status, a few response headers and the body "
        "(shortened when long). Redirects are followed. This machine (loopback), the control "
        "plane, cloud metadata and link-local addresses are refused unless the agent's policy "
        "allows them, and the policy may limit the destinations further."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "http:// or https:// URL"},
            "method": {"type": "string", "enum": list(METHODS), "description": "default GET"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"type": "string", "description": "request body (text)"},
        },
        "required": ["url"],
    }

    async def run(self, args: dict[str, Any], env: ToolEnv) -> str:
        url = args.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ToolError("`url` must be an http:// or https:// URL")
        method = str(args.get("method") or "GET").upper()
        if method not in METHODS:
            raise ToolError(f"`method` must be one of {', '.join(METHODS)}")
        headers = as_dict(args.get("headers") or {})
        if headers is None:
            raise ToolError("`headers` must be an object of strings")
        body = args.get("body")
        plane = None if env.ctx.client is None else env.ctx.client.url
        try:
            guard = NetGuard((env.ctx.agent or {}).get("policy"), control_plane=plane)
        except ValueError as exc:
            raise TaskFailed("invalid_policy", str(exc)) from exc
        try:
            # Every connection (each redirect hop too) is checked where it is made (netguard).
            async with httpx.AsyncClient(
                timeout=TIMEOUT, follow_redirects=True, transport=GuardedTransport(guard), trust_env=False
            ) as client:
                resp = await client.request(
                    method,
                    url,
                    headers={str(k): str(v) for k, v in headers.items()},
                    content=None if body is None else str(body).encode(),
                )
        except Blocked as exc:
            raise ToolError(f"refused: {exc}") from None
        except httpx.HTTPError as exc:
            # The URL may carry a token (?api_key=...): the error goes to the model and the board.
            raise ToolError(redact(f"{method} {url} failed: {type(exc).__name__}: {exc}")) from exc
        shown = "\n".join(f"{h}: {resp.headers[h]}" for h in SHOWN_HEADERS if h in resp.headers)
        text = f"HTTP {resp.status_code} {resp.reason_phrase}\n{shown}\n\n{clip(resp.text)}"
        env.output(text[:4000])
        return text
