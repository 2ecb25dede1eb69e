"""The secret store: AES-GCM round trip, failures that say what happened, the key file's
permissions, and values that never show up where they should not."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from pullthrough.access.sealing import KEY_ENV, SecretKeySource
from pullthrough.access.secrets import (
    SecretError,
    SecretStore,
    SecretUnreadable,
    SecretValueInvalid,
    credential_from_json,
)
from pullthrough.metadata import schema
from pullthrough.metadata.store import MetadataStore
from pullthrough.storage.layout import DataLayout
from pullthrough.upstream.credentials import Credential

PASSWORD = "dckr_pat_Sup3rSecret-value"
CREDENTIAL = Credential("robot", PASSWORD)


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def metadata(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = await MetadataStore.open(f"sqlite+aiosqlite:///{tmp_path / 'metadata.sqlite'}")
    yield store
    await store.close()


def store_with(metadata: MetadataStore, data_dir: Path, key: str | None = None) -> SecretStore:
    environ = {KEY_ENV: key} if key is not None else {}
    return SecretStore(metadata, SecretKeySource(data_dir, environ))


async def test_a_secret_round_trips_and_is_not_in_the_database_in_clear(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    store = store_with(metadata, tmp_path)

    assert await store.put("pullthrough/docker-hub", CREDENTIAL) is True
    got = await store.get("pullthrough/docker-hub")

    assert got == CREDENTIAL
    assert await store.get("pullthrough/other") is None
    await metadata.close()  # flush the WAL into the file before reading it
    for path in tmp_path.glob("metadata.sqlite*"):
        assert PASSWORD.encode() not in path.read_bytes()
        assert b"robot" not in path.read_bytes()


async def test_each_write_uses_a_fresh_nonce_and_keeps_created_at(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    store = store_with(metadata, tmp_path)
    await store.put("hub", CREDENTIAL)
    first = await metadata.secrets.get("hub")

    assert await store.put("hub", CREDENTIAL) is False
    second = await metadata.secrets.get("hub")

    assert first is not None and second is not None
    assert len(first.nonce) == 12
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert repr(second.ciphertext) not in repr(second)


async def test_the_wrong_key_fails_clearly(metadata: MetadataStore, tmp_path: Path) -> None:
    await store_with(metadata, tmp_path, new_key()).put("hub", CREDENTIAL)

    with pytest.raises(SecretUnreadable) as caught:
        await store_with(metadata, tmp_path, new_key()).get("hub")

    message = str(caught.value)
    assert "stored under another key" in message
    assert "$PULLTHROUGH_SECRET_KEY" in message
    assert "pullthrough secrets put hub" in message


async def test_a_stored_secret_without_any_key_says_where_the_key_should_be(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    await store_with(metadata, tmp_path / "one").put("hub", CREDENTIAL)

    with pytest.raises(SecretUnreadable, match="there is no key to open it") as caught:
        await store_with(metadata, tmp_path / "two").get("hub")
    assert str(DataLayout(tmp_path / "two").secret_key_file) in str(caught.value)


async def test_tampered_ciphertext_fails_authentication(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    store = store_with(metadata, tmp_path)
    await store.put("hub", CREDENTIAL)
    record = await metadata.secrets.get("hub")
    assert record is not None
    flipped = bytes([record.ciphertext[0] ^ 1]) + record.ciphertext[1:]
    async with metadata.engine.begin() as conn:
        await conn.execute(
            update(schema.secrets).where(schema.secrets.c.name == "hub").values(ciphertext=flipped)
        )

    with pytest.raises(SecretUnreadable, match="fails authentication"):
        await store.get("hub")


async def test_a_row_copied_to_another_name_does_not_open(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    store = store_with(metadata, tmp_path)
    await store.put("team/hub", CREDENTIAL)
    await store.put("team/other", Credential("someone", "else"))
    hub = await metadata.secrets.get("team/hub")
    assert hub is not None
    async with metadata.engine.begin() as conn:
        await conn.execute(
            update(schema.secrets)
            .where(schema.secrets.c.name == "team/other")
            .values(nonce=hub.nonce, ciphertext=hub.ciphertext)
        )

    with pytest.raises(SecretUnreadable, match="copied from another secret"):
        await store.get("team/other")
    assert await store.get("team/hub") == CREDENTIAL


async def test_the_key_file_is_created_0600_on_first_put(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    store = store_with(metadata, data_dir)
    key_file = DataLayout(data_dir).secret_key_file
    assert not key_file.exists()
    await store.get("hub")  # reading creates nothing
    assert not key_file.exists()

    old_umask = os.umask(0)  # even a permissive umask must not loosen it
    try:
        await store.put("hub", CREDENTIAL)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text().strip(), validate=True)) == 32
    # Another process (the server) with the same data directory opens it.
    assert await store_with(metadata, data_dir).get("hub") == CREDENTIAL


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
async def test_a_key_file_others_can_read_is_refused(
    metadata: MetadataStore, tmp_path: Path, mode: int
) -> None:
    await store_with(metadata, tmp_path).put("hub", CREDENTIAL)
    DataLayout(tmp_path).secret_key_file.chmod(mode)

    with pytest.raises(SecretError) as caught:
        await store_with(metadata, tmp_path).get("hub")

    assert f"mode {mode:04o}" in str(caught.value)
    assert f"chmod 600 {DataLayout(tmp_path).secret_key_file}" in str(caught.value)


async def test_the_environment_key_wins_and_no_key_file_is_made(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    key = new_key()
    await store_with(metadata, tmp_path, key).put("hub", CREDENTIAL)

    assert not DataLayout(tmp_path).secret_key_file.exists()
    assert await store_with(metadata, tmp_path, key).get("hub") == CREDENTIAL


@pytest.mark.parametrize("bad", ["abc", base64.b64encode(b"short").decode(), "!" * 44])
async def test_a_malformed_environment_key_is_refused_with_how_to_make_one(
    metadata: MetadataStore, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(SecretError, match="openssl rand -base64 32"):
        await store_with(metadata, tmp_path, bad).put("hub", CREDENTIAL)


async def test_list_gives_names_and_times_never_values(
    metadata: MetadataStore, tmp_path: Path
) -> None:
    store = store_with(metadata, tmp_path)
    await store.put("b/hub", CREDENTIAL)
    await store.put("a/ghcr", Credential("robot", "another-" + PASSWORD))

    listing = await store.list()

    assert [entry.name for entry in listing] == ["a/ghcr", "b/hub"]
    assert all(entry.updated_at >= entry.created_at > 0 for entry in listing)
    shown = repr(listing) + str(listing)
    assert PASSWORD not in shown
    assert "robot" not in shown
    assert await store.delete("b/hub") is True
    assert await store.delete("b/hub") is False
    assert [entry.name for entry in await store.list()] == ["a/ghcr"]


def test_reprs_hide_the_password() -> None:
    assert PASSWORD not in repr(CREDENTIAL)
    assert PASSWORD not in str(CREDENTIAL)
    assert PASSWORD not in CREDENTIAL.account


def test_rotating_the_password_changes_the_token_account() -> None:
    assert CREDENTIAL.account == Credential("robot", PASSWORD).account
    assert CREDENTIAL.account != Credential("robot", PASSWORD + "2").account
    assert CREDENTIAL.account.startswith("robot#")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"username": "robot", "accessToken": "tok"}', Credential("robot", "tok")),
        ('{"username": "robot", "password": "tok"}', Credential("robot", "tok")),
    ],
)
def test_values_in_ecr_shape_and_with_password_alias(text: str, expected: Credential) -> None:
    assert credential_from_json(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"username=robot password={PASSWORD}", "not JSON"),
        (f'["robot", "{PASSWORD}"]', "must be a JSON object"),
        (f'{{"username": "robot", "acessToken": "{PASSWORD}"}}', "unknown field(s) 'acessToken'"),
        (f'{{"username": "robot", "accessToken": "{PASSWORD}", "password": "x"}}', "not both"),
        (f'{{"accessToken": "{PASSWORD}"}}', "non-empty string 'username'"),
        ('{"username": "robot", "accessToken": ""}', "non-empty string 'accessToken'"),
        (f'{{"username": "ro:bot", "accessToken": "{PASSWORD}"}}', "cannot contain ':'"),
    ],
)
def test_bad_values_are_refused_without_echoing_them(text: str, message: str) -> None:
    with pytest.raises(SecretValueInvalid) as caught:
        credential_from_json(text)

    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("name", ["", "has space", "x" * 256, "semi;colon"])
async def test_bad_names_are_refused(metadata: MetadataStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(SecretValueInvalid, match="is not a secret name"):
        await store_with(metadata, tmp_path).put(name, CREDENTIAL)
