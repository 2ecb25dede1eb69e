"""What replicas share and how they name themselves: the token key from the environment, so a
token one replica issued verifies on another, and the URL each advertises to the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from pullthrough.access.registry_policy.document import Principal
from pullthrough.access.tokens import TokenKeyError, TokenSigner, load_or_create_key
from pullthrough.config import ConfigError, Settings, load_settings
from pullthrough.errors import Unauthorized

KEY = "0123456789abcdef" * 4  # 32 bytes in hex
ALICE = Principal(name="alice", kind="user")


def _signer(data_dir: Path, environ: dict[str, str]) -> TokenSigner:
    data_dir.mkdir(exist_ok=True)
    return TokenSigner(load_or_create_key(data_dir, environ), service="pullthrough")


def test_a_token_from_one_replica_verifies_on_another_with_the_same_key(tmp_path: Path) -> None:
    environ = {"PULLTHROUGH_TOKEN_KEY": KEY}
    replica_a, replica_b = _signer(tmp_path / "a", environ), _signer(tmp_path / "b", environ)
    token = replica_a.issue(ALICE, 60, stamp=None)
    assert replica_b.verify(token, "registry").principal.name == "alice"
    assert load_settings(None, environ=environ).listen  # a key, not a setting
    assert not (tmp_path / "a" / "token.key").exists()  # the key file is not made or read


def test_without_the_shared_key_each_data_directory_has_its_own(tmp_path: Path) -> None:
    replica_a, replica_b = _signer(tmp_path / "a", {}), _signer(tmp_path / "b", {})
    token = replica_a.issue(ALICE, 60, stamp=None)
    with pytest.raises(Unauthorized, match="the token is not valid"):
        replica_b.verify(token, "registry")


@pytest.mark.parametrize("value", ["not-hex", "abcd", KEY + "00"])
def test_a_malformed_token_key_is_refused_with_what_to_do(tmp_path: Path, value: str) -> None:
    with pytest.raises(TokenKeyError) as refused:
        load_or_create_key(tmp_path, {"PULLTHROUGH_TOKEN_KEY": value})
    assert str(refused.value) == (
        "$PULLTHROUGH_TOKEN_KEY must hold 32 bytes in hex (64 characters); make a key with "
        "`openssl rand -hex 32`"
    )
    assert isinstance(refused.value, ConfigError)  # `serve` reports it as one and exits 2


def test_the_advertise_url_comes_from_the_environment_or_the_listen_address() -> None:
    environ = {"PULLTHROUGH_ADVERTISE_URL": "http://cache-1.internal:5000/"}
    assert load_settings(None, environ=environ).advertised_url == "http://cache-1.internal:5000"
    assert Settings(listen="10.0.0.7:5000", auth={"allow_anonymous": True}).advertised_url == (
        "http://10.0.0.7:5000"
    )
    assert Settings(listen="[::1]:5000").advertised_url == "http://[::1]:5000"
    with pytest.raises(ConfigError, match="advertise_url 'cache-1:5000' is not an http"):
        load_settings(None, environ={"PULLTHROUGH_ADVERTISE_URL": "cache-1:5000"})
