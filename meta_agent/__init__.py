"""meta-agent: a self-hosted control plane for agentic task executions.

This package is the meta agent itself (the chat agent that plans tasks). The floors below
it: kernel, store, sdk, then tools / worker / integrations / board_api; cli on top.
"""

from kernel import __version__

__all__ = ["__version__"]
