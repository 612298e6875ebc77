"""The A2A routes: the agent card and the authenticated JSON-RPC endpoint.

The key is checked here, before a2a-sdk's dispatcher reads the body: no key (on a server
with keys) or a wrong one gets 401 with `WWW-Authenticate: Bearer` and nothing is parsed.
The caller is handed to the handler in the call context. Like every route, these pass the
host guard (board_api/hostguard.py): calls from other servers carry no browser `Origin`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from integrations.a2a.handler import BASE_URL, PRINCIPAL, MetaAgentHandler
from integrations.a2a.paths import RPC_PATH
from kernel import __version__
from kernel.settings import Settings
from store import catalog
from store.auth import OPEN, Principal, bearer_token

__all__ = ["Routes"]

SCOPE_KEY = "meta_agent.a2a_principal"


class _Context(DefaultServerCallContextBuilder):
    """The SDK's call context, plus our caller and the URL it reached us at."""

    def __init__(self, public_url: str | None) -> None:
        self.public_url = public_url

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        # The SDK reads the A2A-Version header from here; the caller's key stays out of it.
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        context.state["headers"] = headers
        context.state[PRINCIPAL] = request.scope.get(SCOPE_KEY)
        context.state[BASE_URL] = _base(request, self.public_url)
        return context


def _base(request: Request, public_url: str | None) -> str:
    # The Host was checked by the host guard, so the URL the caller used is one of ours.
    return (public_url or str(request.base_url)).rstrip("/")


def _unauthorized(detail: str) -> JSONResponse:
    return JSONResponse(
        {
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "code": "unauthorized",
            "detail": detail,
        },
        status_code=401,
        media_type="application/problem+json",
        headers={"WWW-Authenticate": 'Bearer realm="meta-agent"'},
    )


class Routes:
    def __init__(
        self,
        handler: MetaAgentHandler,
        settings: Settings,
        verify: Callable[[str], Awaitable[Principal | None]],
        is_open: Callable[[], Awaitable[bool]],
    ) -> None:
        self.handler, self.settings, self.verify, self.is_open = handler, settings, verify, is_open
        self.dispatcher = JsonRpcDispatcher(
            request_handler=handler, context_builder=_Context(settings.public_url), enable_v0_3_compat=True
        )

    async def _caller(self, request: Request) -> Principal | str:
        """The caller, or why it is refused."""
        token = bearer_token(request.headers.get("authorization", ""))
        if token:
            found = await self.verify(token)
            return found if found is not None else "the API key is not valid (unknown, revoked or mistyped)"
        if await self.is_open():
            return OPEN
        return "an API key is required: send `Authorization: Bearer <key>`"

    async def rpc(self, request: Request) -> Response:
        caller = await self._caller(request)
        if isinstance(caller, str):
            return _unauthorized(caller)
        request.scope[SCOPE_KEY] = caller
        return await self.dispatcher.handle_requests(request)

    async def card(self, request: Request) -> Response:
        """The agent card; its skills (our agents) only for a caller with a key, or when open."""
        caller = await self._caller(request)
        skills: list[AgentSkill] = []
        if isinstance(caller, Principal) and caller.can("viewer") and self.handler.db is not None:
            async with self.handler.db.read() as s:
                agents = await catalog.list_agents(s)
            skills = [
                AgentSkill(
                    id=a.name,
                    name=a.name,
                    description=a.description or f"the {a.name} agent ({a.runtime})",
                    tags=[a.runtime],
                )
                for a in agents
            ]
        return JSONResponse(agent_card_to_dict(self._card(_base(request, self.settings.public_url), skills)))

    def _card(self, base: str, skills: list[AgentSkill]) -> AgentCard:
        bearer = SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="bearer", description="a meta-agent API key (viewer reads, operator sends)"
            )
        )
        return AgentCard(
            name="meta-agent",
            description="Durable tasks run by our agents on workers. Pick an agent with the message "
            "metadata `skill`; questions come back as input-required.",
            version=__version__,
            supported_interfaces=[
                AgentInterface(
                    url=base + RPC_PATH,
                    protocol_binding=TransportProtocol.JSONRPC.value,
                    protocol_version=PROTOCOL_VERSION_1_0,
                )
            ],
            capabilities=AgentCapabilities(streaming=True),
            security_schemes={"bearer": bearer},
            security_requirements=[SecurityRequirement(schemes={"bearer": StringList()})],
            default_input_modes=["text/plain", "application/json"],
            default_output_modes=["text/plain", "application/json"],
            skills=skills,
        )
