"""The client resource of named secrets (admin): `c.secrets.list()`, `.set(...)`, `.delete(...)`.

Values go in, never out: the listing carries names and kinds (sdk.secrets). Kept beside
sdk/resources.py, whose resources it is written like.
"""

from __future__ import annotations

from typing import TypeVar

from sdk.resources import Call, _Resource, endpoint  # pyright: ignore[reportPrivateUsage]
from sdk.secrets import SecretList, SecretOut
from sdk.transport import API, seg

__all__ = ["Secrets"]

M = TypeVar("M")


class Secrets(_Resource[M]):
    """Named secrets: `GET /secrets`, `PUT/DELETE /secrets/{name}`."""

    @endpoint
    def list(self) -> Call[list[SecretOut]]:
        return Call("GET", f"{API}/secrets", lambda d: SecretList.model_validate(d).items)

    @endpoint
    def set(self, name: str, value: str | None = None, env: str | None = None) -> Call[SecretOut]:
        """Store `value` (encrypted), or reference the worker's variable `env`."""
        body = {"value": value} if env is None else {"env": env}
        return Call("PUT", f"{API}/secrets/{seg(name)}", SecretOut.model_validate, json=body)

    @endpoint
    def delete(self, name: str) -> Call[None]:
        return Call("DELETE", f"{API}/secrets/{seg(name)}", lambda _: None)
