"""Provider settings of one model client: an agent's `provider` field, the meta agent's
`META_AGENT_MODEL_*` settings, both over a worker's or server's defaults.

The key is never stored: an agent names an environment variable of the worker
(`api_key_env`), and only a name that says it holds an API key (`*_API_KEY`, not one of
meta-agent's own `META_AGENT_*`) may be read, so an agent cannot send the worker's other
secrets to a server of its choice. An agent with its own `api_base` never gets the worker's
default key either: it sends its named key or a placeholder.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from kernel.llm import ProviderConfig

if TYPE_CHECKING:
    from kernel.settings import Settings

__all__ = [
    "FIELDS",
    "NO_KEY",
    "KeyMissing",
    "key_env_problem",
    "meta_agent_config",
    "tool_choice_problem",
    "with_agent_provider",
]

# The agent fields besides api_base/api_key_env, with the ProviderConfig attribute they set.
FIELDS = (
    "tool_choice",
    "first_tool_choice",
    "max_tokens",
    "temperature",
    "timeout",
    "retries",
    "backoff",
    "input_cost_per_token",
    "output_cost_per_token",
)
NO_KEY = "no-key"  # OpenAI-compatible clients need some key; local servers ignore it
_KEY_ENV = re.compile(r"[A-Z][A-Z0-9_]*_API_KEY")
_TOOL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class KeyMissing(Exception):
    """The agent names a key variable that the worker does not have."""


def key_env_problem(name: str) -> str | None:
    """Why `name` may not be read as an agent's API key variable (None: it may)."""
    if not _KEY_ENV.fullmatch(name):
        return (
            "must be the NAME of an environment variable ending in _API_KEY (e.g. OPENAI_API_KEY), not a key"
        )
    if name.startswith("META_AGENT_"):
        return "meta-agent's own variables cannot be lent to an agent"
    return None


def tool_choice_problem(value: str) -> str | None:
    """Why `value` is not a tool choice: auto, required, none, omit or a tool's name."""
    return None if _TOOL.fullmatch(value) else "must be auto, required, none, omit or the name of a tool"


def provider_problem(provider: Any) -> str | None:
    """What is wrong with an agent's `provider` mapping (catalog files; the API has a schema)."""
    if not isinstance(provider, Mapping):
        return "provider must be a mapping"
    # A mapping read from a catalog file: isinstance leaves its key and value types unknown.
    spec = cast(Mapping[Any, Any], provider)
    if "api_key" in spec:
        return "provider.api_key: never store a key; set api_key_env to the NAME of its variable"
    unknown = set(spec) - {*FIELDS, "api_base", "api_key_env"}
    if unknown:
        return f"provider: unknown field(s) {', '.join(sorted(unknown))}"
    if spec.get("api_key_env") is not None:
        problem = key_env_problem(str(spec["api_key_env"]))
        if problem:
            return f"provider.api_key_env: {problem}"
    for k in ("tool_choice", "first_tool_choice"):
        problem = spec.get(k) is not None and tool_choice_problem(str(spec[k]))
        if problem:
            return f"provider.{k}: {problem}"
    return None


def with_agent_provider(
    base: ProviderConfig, provider: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> ProviderConfig:
    """`base` (the worker's defaults) with an agent's `provider` settings applied."""
    provider = provider or {}
    changes: dict[str, Any] = {k: provider[k] for k in FIELDS if provider.get(k) is not None}
    key_env = provider.get("api_key_env")
    if key_env:
        problem = key_env_problem(str(key_env))
        if problem:
            raise KeyMissing(f"provider.api_key_env {key_env!r}: {problem}")
        if not environ.get(str(key_env)):
            raise KeyMissing(f"the worker has no environment variable {key_env} (provider.api_key_env)")
        changes["api_key"] = environ[str(key_env)]
    if provider.get("api_base"):
        changes["api_base"] = str(provider["api_base"])
        changes.setdefault("api_key", NO_KEY)  # never the worker's own key to the agent's server
    return dataclasses.replace(base, **changes)


def keyless(config: ProviderConfig, environ: Mapping[str, str]) -> ProviderConfig:
    """A custom `api_base` and no key anywhere: local servers (Ollama, llama.cpp) need none,
    but the openai client refuses to send a request without one ("Missing credentials")."""
    if config.api_base and not config.api_key and not environ.get("OPENAI_API_KEY"):
        return dataclasses.replace(config, api_key=NO_KEY)
    return config


def meta_agent_config(
    settings: Settings,
    model: str | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> ProviderConfig:
    """The meta agent's model client from `META_AGENT_MODEL_*` (explicit arguments win)."""

    config = ProviderConfig(
        model or settings.model or "",
        api_base=api_base or settings.model_api_base or settings.llm_api_base,
        api_key=api_key or settings.model_api_key or settings.llm_api_key,
    )
    # Settings has a `model_<field>` for every field of FIELDS.
    changes: dict[str, Any] = {k: getattr(settings, f"model_{k}") for k in FIELDS}
    for k in ("tool_choice", "first_tool_choice"):
        problem = changes[k] and tool_choice_problem(changes[k])
        if problem:
            raise ValueError(f"META_AGENT_MODEL_{k.upper()}: {problem}")
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    return keyless(config, environ)
