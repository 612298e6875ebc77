"""The Slack fixtures (tests/integrations/conftest.py), for the audit log's Slack test."""

from tests.integrations.conftest import slack, slack_db, start_plane, worker_llm

__all__ = ["slack", "slack_db", "start_plane", "worker_llm"]
