"""Named secrets: admins set them, agents list them, workers get them for a leased task.

A secret is `stored` (the value, encrypted with `META_AGENT_SECRET_KEY`) or `env` (the name
of a variable in the *worker's* environment; the control plane never holds that value).
What leaves this module:

- `list_secrets`: names, kinds, env variable names and times. Never a value.
- `for_task`: the decrypted values of the secrets the task's agent lists, only for the
  worker holding the task's lease (store.leases), a stale lease refused like every other
  worker call.

Every stored value this process encrypts or decrypts is registered with `kernel.redact`, so
the masking at ingest (events, results, errors, checkpoints) replaces it with `[redacted]`
wherever a tool printed it; `register_stored` does the same for all of them at start.

The key is one Fernet key, or several separated by commas to rotate: the first encrypts,
every one decrypts (`cryptography.fernet.MultiFernet`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from kernel import errors
from kernel.redact import register
from store.db import Tx
from store.leases import Lease, fenced
from store.models import Agent, utcnow
from store.secret_models import Secret

__all__ = [
    "KEY_SETTING",
    "MAX_VALUE",
    "MIN_VALUE",
    "SecretInfo",
    "TaskSecrets",
    "check_names",
    "cipher",
    "delete_secret",
    "for_task",
    "list_secrets",
    "name_problem",
    "register_stored",
    "set_secret",
]

KEY_SETTING = "META_AGENT_SECRET_KEY"
# A value shorter than this could not be masked without blanking ordinary words
# (kernel.redact masks registered values of 8 characters and more).
MIN_VALUE = 8
MAX_VALUE = 65_536
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A secret becomes an environment variable of the agent's processes: it must not replace
# what the worker sets for them (the allow-list of worker.process, TASK_*, PARAM_*) or change
# how a program loads (LD_*), nor look like the worker's own settings.
_RESERVED = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "SHELL", "PWD", "IFS"})
_RESERVED_PREFIXES = ("META_AGENT_", "TASK_", "PARAM_", "LD_")


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a secret: everything but its value."""

    name: str
    kind: str
    env: str | None
    created_at: datetime
    updated_at: datetime


@dataclass
class TaskSecrets:
    """A task's secrets for its worker: stored values by name, env references (name ->
    the worker's variable), and the names that cannot be had, with the reason."""

    values: dict[str, str] = field(default_factory=dict[str, str])
    env: dict[str, str] = field(default_factory=dict[str, str])
    missing: dict[str, str] = field(default_factory=dict[str, str])


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a secret (it becomes an environment variable), or None."""
    if not _NAME.match(name):
        return (
            f"secret name {name!r} must be 1-128 letters, digits or '_' and not start with a digit "
            "(it becomes an environment variable)"
        )
    upper = name.upper()
    if upper in _RESERVED or upper.startswith(_RESERVED_PREFIXES):
        return f"secret name {name!r} is reserved (PATH, HOME, ..., META_AGENT_*, TASK_*, PARAM_*, LD_*)"
    return None


def cipher(key: str | None) -> MultiFernet | None:
    """The cipher of the `META_AGENT_SECRET_KEY` setting; None when it is unset.

    Raises ValueError naming the setting for a malformed key (checked when settings load)."""
    keys = [k.strip() for k in (key or "").split(",") if k.strip()]
    if not keys:
        return None
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise ValueError(
            f"{KEY_SETTING} must be Fernet keys (32 url-safe base64-encoded bytes, comma-separated): {exc}"
        ) from None


def _info(row: Secret) -> SecretInfo:
    return SecretInfo(row.name, row.kind, row.env, row.created_at, row.updated_at)


def _check_value(value: str, box: MultiFernet | None) -> MultiFernet:
    if box is None:
        raise errors.Invalid(
            f"the server has no {KEY_SETTING}, so it cannot store a secret's value: set it to a Fernet "
            'key (python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())") '
            "and restart, or reference a variable of the worker's environment instead (--from-env)",
            code="secret_key_missing",
        )
    if not MIN_VALUE <= len(value) <= MAX_VALUE:
        raise errors.Invalid(
            f"a secret's value must be {MIN_VALUE} to {MAX_VALUE} characters (shorter ones could not be "
            "masked in the task's output)",
            code="invalid_secret",
        )
    return box


async def set_secret(
    tx: Tx, name: str, *, value: str | None = None, env: str | None = None, key: str | None = None
) -> tuple[SecretInfo, bool]:
    """Create or replace secret `name`: a `value` (encrypted with `key`) or an `env` reference.
    Returns (what may be shown of it, whether it was created)."""
    problem = name_problem(name)
    if problem:
        raise errors.Invalid(problem, code="invalid_secret_name")
    if (value is None) == (env is None):
        raise errors.Invalid("give either a value or an env variable name, not both", code="invalid_secret")
    if env is not None and not _NAME.match(env):
        raise errors.Invalid(f"env variable name {env!r} is not a variable name", code="invalid_secret")
    ciphertext = None
    if value is not None:
        ciphertext = _check_value(value, cipher(key)).encrypt(value.encode()).decode()
        register(value)
    row = (await tx.session.execute(select(Secret).where(col(Secret.name) == name))).scalars().first()
    created = row is None
    if row is None:
        row = Secret(name=name, kind="stored", created_at=utcnow())
        tx.session.add(row)
    row.kind = "stored" if value is not None else "env"
    row.ciphertext = ciphertext
    row.env = env
    row.updated_at = utcnow()
    await tx.session.flush()
    return _info(row), created


async def list_secrets(session: AsyncSession) -> list[SecretInfo]:
    """Every secret by name, without values."""
    rows = (await session.execute(select(Secret).order_by(col(Secret.name)))).scalars().all()
    return [_info(r) for r in rows]


async def _users(session: AsyncSession, name: str) -> list[str]:
    """The agents that list secret `name`, in `secrets` or `requires.secrets` (agents are
    few: read them all)."""
    rows = (await session.execute(sa.select(col(Agent.name), col(Agent.secrets), col(Agent.requires)))).all()
    return sorted(
        n for n, names, req in rows if name in [*(names or ()), *((req or {}).get("secrets") or ())]
    )


async def delete_secret(tx: Tx, name: str) -> None:
    """Delete secret `name`; refused while an agent lists it (its tasks would fail)."""
    row = (await tx.session.execute(select(Secret).where(col(Secret.name) == name))).scalars().first()
    if row is None:
        raise errors.NotFound(f"secret {name!r} not found", code="secret_not_found")
    users = await _users(tx.session, name)
    if users:
        raise errors.Conflict(
            f"secret {name!r} is used by agent(s) {', '.join(users)}: remove it from their `secrets` first",
            code="secret_in_use",
        )
    await tx.session.delete(row)
    await tx.session.flush()


async def check_names(session: AsyncSession, names: Sequence[str]) -> None:
    """Refuse (422 `unknown_secret`) an agent listing a secret that does not exist."""
    if not names:
        return
    known = set(
        (await session.execute(sa.select(col(Secret.name)).where(col(Secret.name).in_(set(names)))))
        .scalars()
        .all()
    )
    unknown = [n for n in dict.fromkeys(names) if n not in known]
    if unknown:
        raise errors.Invalid(
            f"unknown secret(s): {', '.join(unknown)} (create them with `meta-agent secrets set NAME`)",
            code="unknown_secret",
        )


def _decrypt(rows: Iterable[Secret], box: MultiFernet | None, out: TaskSecrets) -> None:
    for row in rows:
        if row.kind == "env" and row.env:
            out.env[row.name] = row.env
        elif box is None:
            out.missing[row.name] = f"the server has no {KEY_SETTING} to decrypt it"
        else:
            try:
                value = box.decrypt((row.ciphertext or "").encode()).decode()
            except InvalidToken:
                out.missing[row.name] = f"it cannot be decrypted with the server's {KEY_SETTING}"
                continue
            register(value)  # this replica masks it at ingest from now on
            out.values[row.name] = value


async def for_task(tx: Tx, task_id: str, lease: Lease, key: str | None) -> TaskSecrets:
    """The secrets of the running task's agent, for the worker holding `lease` (stale: 409)."""
    task = await fenced(tx, task_id, lease)
    out = TaskSecrets()
    if not task.agent:
        return out
    names = (
        await tx.session.execute(sa.select(col(Agent.secrets)).where(col(Agent.name) == task.agent))
    ).scalar()
    wanted = list(dict.fromkeys(names or ()))
    if not wanted:
        return out
    rows = (await tx.session.execute(select(Secret).where(col(Secret.name).in_(wanted)))).scalars().all()
    _decrypt(rows, cipher(key), out)
    for name in wanted:
        if name not in out.values and name not in out.env and name not in out.missing:
            out.missing[name] = "it does not exist (deleted?)"
    return out


async def register_stored(session: AsyncSession, key: str | None) -> tuple[int, list[str]]:
    """Register every stored value that `key` decrypts with kernel.redact (at start), so this
    process masks them at ingest before any worker asked for them. Returns how many, and the
    names it could not decrypt (a wrong or missing key: their tasks will fail)."""
    rows = (await session.execute(select(Secret).where(col(Secret.kind) == "stored"))).scalars().all()
    out = TaskSecrets()
    _decrypt(rows, cipher(key), out)
    return len(out.values), sorted(out.missing)
