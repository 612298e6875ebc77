"""The client resources of where work comes from: schedules and webhooks
(`c.schedules`, `c.hooks`). Kept beside sdk/resources.py, whose resources they are
written like (sdk.schedules, sdk.hooks: the models)."""

from __future__ import annotations

from typing import Any, TypeVar

from sdk.hooks import DeliveryList, DeliveryOut, HookList, HookOut
from sdk.resources import Call, _none, _Resource, endpoint  # pyright: ignore[reportPrivateUsage]
from sdk.schedules import ScheduleList, ScheduleOut
from sdk.transport import API, clean, seg

__all__ = ["Hooks", "Schedules"]

M = TypeVar("M")


class Schedules(_Resource[M]):
    """Schedules: `GET/POST /schedules`, `GET/DELETE /schedules/{id or name}`, pause, resume."""

    @endpoint
    def list(self, limit: int = 100, cursor: str | None = None) -> Call[ScheduleList]:
        return Call(
            "GET",
            f"{API}/schedules",
            ScheduleList.model_validate,
            params=clean({"limit": limit, "cursor": cursor}),
        )

    @endpoint
    def get(self, key: str) -> Call[ScheduleOut]:
        return Call("GET", f"{API}/schedules/{seg(key)}", ScheduleOut.model_validate)

    @endpoint
    def create(self, data: dict[str, Any]) -> Call[ScheduleOut]:
        """A new schedule (see `sdk.schedules.ScheduleCreate` for the fields)."""
        return Call("POST", f"{API}/schedules", ScheduleOut.model_validate, json=data)

    @endpoint
    def pause(self, key: str) -> Call[ScheduleOut]:
        return Call("POST", f"{API}/schedules/{seg(key)}/pause", ScheduleOut.model_validate)

    @endpoint
    def resume(self, key: str) -> Call[ScheduleOut]:
        return Call("POST", f"{API}/schedules/{seg(key)}/resume", ScheduleOut.model_validate)

    @endpoint
    def delete(self, key: str) -> Call[None]:
        return Call("DELETE", f"{API}/schedules/{seg(key)}", _none)


class Hooks(_Resource[M]):
    """Webhooks in (admin): `/hooks`, each one `POST /hooks/{name}` for other servers."""

    @endpoint
    def create(self, data: dict[str, Any]) -> Call[HookOut]:
        """A new hook; the answer's `secret` is shown only this once."""
        return Call("POST", f"{API}/hooks", HookOut.model_validate, json=data)

    @endpoint
    def list(self) -> Call[list[HookOut]]:
        return Call("GET", f"{API}/hooks", lambda d: HookList.model_validate(d).items)

    @endpoint
    def get(self, key: str) -> Call[HookOut]:
        return Call("GET", f"{API}/hooks/{seg(key)}", HookOut.model_validate)

    @endpoint
    def delete(self, key: str) -> Call[None]:
        return Call("DELETE", f"{API}/hooks/{seg(key)}", _none)

    @endpoint
    def rotate_secret(self, key: str) -> Call[HookOut]:
        """A new secret (in the answer, once); the old one stops working at once."""
        return Call("POST", f"{API}/hooks/{seg(key)}/rotate-secret", HookOut.model_validate)

    @endpoint
    def deliveries(self, key: str, limit: int = 50) -> Call[list[DeliveryOut]]:
        return Call(
            "GET",
            f"{API}/hooks/{seg(key)}/deliveries",
            lambda d: DeliveryList.model_validate(d).items,
            params={"limit": limit},
        )
