"""Shared values of the secrets tests.

kernel.redact's registry of known values lives as long as the process, so every test makes
values of its own (`fresh`): a value masked because an earlier test registered it would
prove nothing.
"""

from __future__ import annotations

import uuid

from cryptography.fernet import Fernet

KEY = Fernet.generate_key().decode()


def fresh(label: str = "value") -> str:
    """A secret value no other test has seen (and shaped like no credential pattern)."""
    return f"{label}-{uuid.uuid4().hex}"
