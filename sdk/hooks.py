"""The wire models of webhooks in (`/api/v1/hooks`, `POST /hooks/{name}`): plain pydantic,
like `sdk.schemas`, kept apart so the feature reads in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["DeliveryList", "DeliveryOut", "HookAccepted", "HookIn", "HookList", "HookOut"]

Template = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
ParamName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]


class HookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    agent: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    queue: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    prompt_template: Template = Field(description="Jinja (sandboxed): the task's prompt from the payload")
    params: dict[ParamName, Template] = Field(
        default={}, max_length=50, description="parameter name -> Jinja template"
    )
    scheme: Literal["github", "generic"] = "github"
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="gets the task's outcome (POST, JSON) when the task ends"
    )


class HookOut(BaseModel):
    id: str
    name: str
    agent: str
    queue: str | None
    prompt_template: str
    params: dict[str, str]
    scheme: str
    callback_url: str | None
    url_path: str = Field(description="where senders post: this path on the public URL")
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(default=None, description="shown by create and rotate-secret only")


class HookList(BaseModel):
    items: list[HookOut]


class DeliveryOut(BaseModel):
    id: str
    delivery_id: str
    task_id: str
    callback_status: str
    callback_attempts: int
    callback_error: str | None
    created_at: datetime


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class HookAccepted(BaseModel):
    """The answer to a delivery: the task it made (or made before, when `duplicate`)."""

    task_id: str
    delivery_id: str
    duplicate: bool
    status: str
