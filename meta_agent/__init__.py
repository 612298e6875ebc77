"""meta-agent: a self-hosted control plane for agentic task executions."""

__version__ = "0.1.0"
