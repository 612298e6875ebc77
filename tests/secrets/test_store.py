"""Named secrets in the store, on real SQLite and PostgreSQL: encryption round trip, the
missing key, names only in listings, agents' names checked, masking of stored values."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from kernel import errors
from kernel.redact import MASK, redact
from store import catalog, secrets
from store.db import Database
from store.models import Agent
from store.secret_models import Secret
from tests.secrets.helpers import KEY, fresh


async def test_a_stored_value_is_encrypted_and_decrypts_with_the_key(db: Database) -> None:
    value = fresh()
    async with db.tx() as tx:
        info, created = await secrets.set_secret(tx, "API_TOKEN", value=value, key=KEY)
    async with db.read() as s:
        ciphertext = (await s.execute(sa.select(Secret.ciphertext))).scalar_one()

    assert created and info.kind == "stored" and info.env is None
    assert ciphertext and value not in ciphertext
    assert Fernet(KEY.encode()).decrypt(ciphertext.encode()).decode() == value
    # Another key reads nothing; a rotated key list (new first, old after) still does.
    other = Fernet.generate_key().decode()
    box = secrets.cipher(f"{other},{KEY}")
    assert box is not None and box.decrypt(ciphertext.encode()).decode() == value
    with pytest.raises(InvalidToken):
        Fernet(other.encode()).decrypt(ciphertext.encode())


async def test_without_a_key_a_value_is_refused_naming_the_setting_and_env_works(db: Database) -> None:
    async with db.tx() as tx:
        with pytest.raises(errors.Invalid) as refused:
            await secrets.set_secret(tx, "API_TOKEN", value=fresh(), key=None)
        info, _ = await secrets.set_secret(tx, "FROM_WORKER", env="WORKER_VAR", key=None)

    assert refused.value.code == "secret_key_missing" and "META_AGENT_SECRET_KEY" in refused.value.detail
    assert info.kind == "env" and info.env == "WORKER_VAR"


async def test_the_listing_holds_names_and_kinds_never_values(db: Database) -> None:
    value = fresh()
    async with db.tx() as tx:
        await secrets.set_secret(tx, "B_TOKEN", value=value, key=KEY)
        await secrets.set_secret(tx, "A_REF", env="SOME_VAR")
        _, created = await secrets.set_secret(tx, "B_TOKEN", env="OTHER_VAR")  # replaced by a reference
    async with db.read() as s:
        listed = await secrets.list_secrets(s)
        row = (await s.execute(sa.select(Secret).where(Secret.name == "B_TOKEN"))).scalar_one()

    assert [(i.name, i.kind, i.env) for i in listed] == [
        ("A_REF", "env", "SOME_VAR"),
        ("B_TOKEN", "env", "OTHER_VAR"),
    ]
    assert not created and row.ciphertext is None  # the old ciphertext is gone with the value
    assert value not in repr(listed)


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("1BAD", "x" * 12, "invalid_secret_name"),
        ("has-dash", "x" * 12, "invalid_secret_name"),
        ("PATH", "x" * 12, "invalid_secret_name"),
        ("META_AGENT_API_KEY", "x" * 12, "invalid_secret_name"),
        ("LD_PRELOAD", "x" * 12, "invalid_secret_name"),
        ("TASK_ID", "x" * 12, "invalid_secret_name"),
        ("SHORT", "1234567", "invalid_secret"),  # too short to be masked
    ],
)
async def test_bad_names_and_values_are_refused(db: Database, name: str, value: str, code: str) -> None:
    async with db.tx() as tx:
        with pytest.raises(errors.Invalid) as refused:
            await secrets.set_secret(tx, name, value=value, key=KEY)
    assert refused.value.code == code and value not in refused.value.detail


async def test_an_agent_may_list_only_existing_secrets_and_a_used_secret_stays(db: Database) -> None:
    async with db.tx() as tx:
        await secrets.set_secret(tx, "KNOWN", env="KNOWN_VAR")
        with pytest.raises(errors.Invalid) as unknown:
            await catalog.create_agent(tx, Agent(name="a1", runtime="noop", secrets=["KNOWN", "NOPE"]))
    async with db.tx() as tx:
        await catalog.create_agent(tx, Agent(name="a1", runtime="noop", secrets=["KNOWN"]))
    async with db.tx() as tx:
        with pytest.raises(errors.Invalid) as patched:
            await catalog.update_agent(tx, "a1", {"secrets": ["KNOWN", "ALSO_NOPE"]})
    async with db.tx() as tx:
        with pytest.raises(errors.Conflict) as in_use:
            await secrets.delete_secret(tx, "KNOWN")
    async with db.tx() as tx:
        await catalog.update_agent(tx, "a1", {"secrets": []})
        await secrets.delete_secret(tx, "KNOWN")
    async with db.read() as s:
        left = await secrets.list_secrets(s)

    assert unknown.value.code == "unknown_secret" and "NOPE" in unknown.value.detail
    assert patched.value.code == "unknown_secret" and "ALSO_NOPE" in patched.value.detail
    assert in_use.value.code == "secret_in_use" and "a1" in in_use.value.detail
    assert left == []


async def test_stored_values_are_masked_by_the_process_that_loads_them(db: Database) -> None:
    # Written as another replica would have: this process never saw the value.
    value = fresh()
    token = Fernet(KEY.encode()).encrypt(value.encode()).decode()
    async with db.tx() as tx:
        tx.session.add(Secret(name="ELSEWHERE", kind="stored", ciphertext=token))
    before = redact(f"printed {value}")
    async with db.read() as s:
        without_key = await secrets.register_stored(s, None)
        wrong_key = await secrets.register_stored(s, Fernet.generate_key().decode())
        after_wrong = redact(f"printed {value}")
        right_key = await secrets.register_stored(s, KEY)

    assert before == after_wrong == f"printed {value}"
    assert without_key == wrong_key == (0, ["ELSEWHERE"])
    assert right_key == (1, []) and redact(f"printed {value}") == f"printed {MASK}"


def test_a_malformed_key_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="META_AGENT_SECRET_KEY"):
        secrets.cipher("not-a-fernet-key")
    assert secrets.cipher(None) is None and secrets.cipher(" , ") is None
