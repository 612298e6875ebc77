"""The typed HTTP client of the control plane (what workers, the MCP tools, the CLI and
scripts use), and the wire models the API serves (`sdk.schemas`)."""

from sdk.client import ApiError, AsyncControlPlaneClient, ControlPlaneClient

__all__ = ["ApiError", "AsyncControlPlaneClient", "ControlPlaneClient"]
