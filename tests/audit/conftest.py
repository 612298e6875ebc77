"""The Slack fixtures (tests/integrations/conftest.py) and the A2A plane (tests/a2a), for
the audit log's tests of those surfaces."""

from tests.a2a.conftest import plane
from tests.integrations.conftest import slack, slack_db, start_plane, worker_llm

__all__ = ["plane", "slack", "slack_db", "start_plane", "worker_llm"]
