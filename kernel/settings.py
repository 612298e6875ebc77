"""Settings, loaded once from the environment (prefix META_AGENT_).

Components take explicit arguments; only entry points (CLI, `serve`) build a `Settings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///meta-agent.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="META_AGENT_", extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, description="SQLAlchemy URL of the store")
    host: str = "127.0.0.1"
    port: int = 8080
    allowed_hosts: str | None = Field(
        default=None,
        description="more names this server answers to (comma-separated host, host:port or "
        "*.domain): a reverse proxy's, Slack's public URL (see board_api/hostguard.py)",
    )
    url: str = Field(default="http://127.0.0.1:8080", description="control plane URL for clients and workers")
    api_key: str | None = None
    public_url: str | None = Field(default=None, description="URL people reach the board at (links in chat)")
    model: str | None = Field(default=None, description="litellm model of the meta agent")
    llm_api_base: str | None = Field(
        default=None, description="api_base for litellm calls of the embedded worker"
    )
    llm_api_key: str | None = Field(
        default=None, description="api_key for litellm calls of the embedded worker"
    )
    # The meta agent's model client (META_AGENT_MODEL_*): unset = META_AGENT_LLM_API_* and
    # the defaults of kernel.llm.ProviderConfig. Same meaning as an agent's `provider`.
    model_api_base: str | None = Field(default=None, description="api_base of the meta agent's model")
    model_api_key: str | None = Field(default=None, description="api_key of the meta agent's model")
    model_tool_choice: str | None = Field(
        default=None, description="auto, required, none, omit or a tool name"
    )
    model_first_tool_choice: str | None = Field(
        default=None, description="tool_choice of the first model call after each message"
    )
    model_max_tokens: int | None = Field(
        default=None, ge=1, description="output tokens per model call (4096)"
    )
    model_temperature: float | None = Field(default=None, ge=0, le=2)
    model_timeout: float | None = Field(default=None, gt=0, description="seconds per model call (600)")
    model_retries: int | None = Field(default=None, ge=0, le=20, description="retries of a failed call (4)")
    model_backoff: float | None = Field(default=None, ge=0, description="first retry delay, doubling (0.5 s)")
    model_input_cost_per_token: float | None = Field(default=None, ge=0)
    model_output_cost_per_token: float | None = Field(default=None, ge=0)
    approvals: Literal["risky", "always", "never"] = Field(
        default="risky", description="which meta-agent plans wait for the person's approval in chat"
    )

    lease_seconds: float = Field(default=30.0, description="how long a claim lasts without a heartbeat")
    max_attempts: int = Field(default=3, description="claims a task gets before lost leases fail it")
    reaper_interval: float = 1.0
    # Retention (store/retention.py): 0 keeps finished tasks forever.
    retention_days: int = Field(
        default=0,
        ge=0,
        le=36_500,
        description="delete finished tasks (with events, artifacts) older than this",
    )
    retention_interval: float = Field(default=3600.0, gt=0, description="seconds between retention rounds")
    max_prompt_chars: int = 100_000
    max_body_bytes: int = 2_000_000
    max_artifact_bytes: int = 10_000_000
    max_streams_per_key: int = Field(
        default=1024, description="open SSE streams and long-polls one API key may hold"
    )
    max_chat_turns_per_key: int = Field(
        default=8, description="meta-agent turns (POST /chat) one API key may run at once"
    )

    embedded_worker: bool = Field(default=True, description="run a worker inside `serve`")
    embedded_worker_queue: str = "default"
    embedded_worker_concurrency: int = 4
    workspace_root: str = Field(
        default=".meta-agent/workspaces", description="where workers put task workspaces"
    )
    sandbox: Literal["auto", "off"] = Field(
        default="auto",
        description="`off` runs agents' processes unsandboxed, with the worker's rights (worker.sandbox)",
    )
    sandbox_user: str = Field(
        default="nobody", description="the user agents' processes run as when the worker is root"
    )
    examples: str | None = Field(default=None, description="YAML file of agents/queues to load at start")
    secret_key: str | None = Field(
        default=None,
        description="Fernet key(s) encrypting stored secrets (comma-separated: the first encrypts, "
        "all decrypt); unset: only env-referenced secrets (store/secrets.py)",
    )

    mcp_state_keys: list[str] = Field(
        default=[], description="secrets sealing MCP elicitation state; the same on every replica (JSON list)"
    )
    mcp_stateless: bool | None = Field(
        default=None,
        description="MCP over HTTP keeps no sessions, so any replica answers any request "
        "(default: on with PostgreSQL, off with SQLite)",
    )
    log_format: str = Field(default="text", description="`text` or `json` (one object per line)")
    log_level: str = "INFO"
    otel_exporter: str | None = Field(
        default=None, description="`otlp` or `console`: trace requests (needs the otel extra)"
    )

    hook_callback_allow: str | None = Field(
        default=None,
        description="webhook callbacks: hosts or networks (comma-separated) opened beyond the "
        "default, which refuses loopback, private and link-local addresses (docs/webhooks.md)",
    )

    # --- Slack (integrations/slack). The tokens also take Slack's conventional unprefixed names.
    slack_bot_token: str | None = Field(
        default=None,
        validation_alias=AliasChoices("slack_bot_token", "META_AGENT_SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN"),
    )
    slack_signing_secret: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "slack_signing_secret", "META_AGENT_SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET"
        ),
    )
    slack_app_token: str | None = Field(
        default=None,
        validation_alias=AliasChoices("slack_app_token", "META_AGENT_SLACK_APP_TOKEN", "SLACK_APP_TOKEN"),
    )
    slack_mode: str | None = Field(
        default=None, description="`http` or `socket` (default: socket when an app token is set)"
    )
    slack_api_base: str = Field(default="https://slack.com/api/", description="Slack Web API base URL")
    slack_allowed_users: str | None = Field(
        default=None,
        description="Slack user ids (comma-separated) who may answer; default: the thread's participants",
    )
    slack_api_key: str | None = Field(
        default=None, description="API key the Slack integration acts with (not in open mode)"
    )
    slack_update_interval: float = Field(
        default=1.0, description="seconds between updates of one Slack message"
    )

    def model_post_init(self, _context: object) -> None:
        # Whatever process loaded these settings masks their secrets in every error and log
        # line it writes (kernel.redact), whichever entry point built them.
        from urllib.parse import unquote, urlsplit

        from kernel.redact import register

        # urllib, not SQLAlchemy's make_url: a worker or the CLI should not import SQLAlchemy.
        try:
            password = urlsplit(self.database_url).password
        except ValueError:  # a malformed URL fails later, with its own clear error
            password = None
        register(
            self.api_key,
            self.llm_api_key,
            self.model_api_key,
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.slack_api_key,
            None if password is None else unquote(password),
            *self.mcp_state_keys,
            *(self.secret_key or "").split(","),
        )

    def open_mode_allowed(self) -> bool:
        """Without keys, the API is open only to a loopback-bound server.

        An empty host is not loopback: uvicorn (like `bind()`) takes it as every interface.
        """
        import ipaddress

        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
