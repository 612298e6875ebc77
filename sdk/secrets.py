"""Wire models of named secrets (`/api/v1/secrets`, admin only); the resource is
`sdk.secret_api.Secrets`.

No model here carries a stored value out of the server except `TaskSecretsOut`, the answer
of the lease-fenced worker route `POST /tasks/{id}/secrets`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = ["SecretList", "SecretNames", "SecretOut", "SecretSet", "TaskSecretsOut"]

EnvName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


# An agent's `secrets`: the names its processes get as environment variables.
SecretNames = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=128)]],
    Field(max_length=64, description="Names of secrets its processes get as environment variables"),
]


class SecretSet(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as sdk.schemas.Strict (which imports this module)

    """`PUT /secrets/{name}`: a value to store (encrypted), or the worker's variable to read."""

    value: Annotated[str, StringConstraints(max_length=65_536)] | None = Field(
        default=None, description="The value, stored encrypted; never returned by any listing"
    )
    env: EnvName | None = Field(
        default=None, description="Instead of a value: the worker's environment variable holding it"
    )

    @model_validator(mode="after")
    def _one(self) -> SecretSet:
        if (self.value is None) == (self.env is None):
            raise ValueError("give either `value` or `env`")
        return self


class SecretOut(BaseModel):
    name: str
    kind: Literal["stored", "env"]
    env: str | None = Field(description="The worker's variable of an `env` secret")
    created_at: datetime
    updated_at: datetime


class SecretList(BaseModel):
    items: list[SecretOut]


class TaskSecretsOut(BaseModel):
    """A leased task's secrets: stored `values`, `env` references the worker resolves from its
    own environment, and the names it cannot have (`missing`: name -> why)."""

    values: dict[str, str] = {}
    env: dict[str, str] = {}
    missing: dict[str, str] = {}
