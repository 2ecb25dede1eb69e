"""The secret store's key, and sealing values with it (AES-GCM).

The key is 32 bytes: from `PULLTHROUGH_SECRET_KEY` (base64, 44 characters) when set, else from
`<data_dir>/secret.key`, which is created with mode 0600 the first time a secret is stored. A key
file that other users can read is refused rather than used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pullthrough.storage.layout import DataLayout

KEY_ENV = "PULLTHROUGH_SECRET_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12  # 96 bits, random per write: AES-GCM's recommended nonce size
_MAKE_KEY = "`openssl rand -base64 32`"


class SecretKeyError(Exception):
    """The key is missing, malformed or unsafe; the message says what to do."""


class SealBroken(Exception):
    """A sealed value failed authentication: tampered with, or stored under another name."""


@dataclass(frozen=True)
class SecretKey:
    """The AES-256 key, where it came from, and a short id that reveals nothing about it."""

    material: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        # An HMAC of a constant: tells keys apart without revealing or weakening them.
        return hmac.new(self.material, b"pullthrough secret key id", hashlib.sha256).hexdigest()[
            :16
        ]

    def seal(self, name: str, plaintext: bytes) -> tuple[bytes, bytes]:
        """(nonce, ciphertext) of `plaintext`, bound to the secret's `name`."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, AESGCM(self.material).encrypt(nonce, plaintext, _associated(name))

    def open(self, name: str, nonce: bytes, ciphertext: bytes) -> bytes:
        """The plaintext sealed under `name`; SealBroken when it does not authenticate."""
        try:
            return AESGCM(self.material).decrypt(nonce, ciphertext, _associated(name))
        except (InvalidTag, ValueError) as exc:
            raise SealBroken(name) from exc


def _associated(name: str) -> bytes:
    return name.encode("utf-8")


class SecretKeySource:
    """Finds the key: the environment variable first, then the key file in the data directory.

    A key that was found is kept; a missing one is looked for again next time, so a key file
    that `pullthrough secrets put` creates while the server runs is picked up.
    """

    def __init__(self, data_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.key_file = DataLayout(data_dir).secret_key_file
        self._environ = environ
        self._key: SecretKey | None = None

    def load(self, *, create: bool = False) -> SecretKey | None:
        """The key; None when there is none yet and `create` is false. Blocking file I/O."""
        if self._key is None:
            self._key = self._from_env() or self._from_file(create=create)
        return self._key

    def describe(self) -> str:
        """Where the key is (or would be) read from, for messages."""
        environ = os.environ if self._environ is None else self._environ
        return f"${KEY_ENV}" if environ.get(KEY_ENV) else f"the key file {self.key_file}"

    def _from_env(self) -> SecretKey | None:
        environ = os.environ if self._environ is None else self._environ
        text = environ.get(KEY_ENV, "").strip()
        if not text:
            return None
        return SecretKey(_decode(text, f"${KEY_ENV}"), f"${KEY_ENV}")

    def _from_file(self, *, create: bool) -> SecretKey | None:
        path = self.key_file
        if create:
            created = _create_key_file(path)
            if created is not None:
                return SecretKey(created, f"the key file {path}")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretKeyError(f"cannot read the secret key file {path}: {exc}") from None
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise SecretKeyError(f"the secret key file {path} is not a regular file")
            if mode & 0o077:
                raise SecretKeyError(
                    f"refusing the secret key file {path}: its mode "
                    f"{stat.S_IMODE(mode):04o} lets other users read it; run `chmod 600 {path}` "
                    "(and consider re-storing the secrets if others may have read the key)"
                )
            text = handle.read(256).decode("ascii", errors="replace").strip()
        return SecretKey(_decode(text, f"the key file {path}"), f"the key file {path}")


def _decode(text: str, where: str) -> bytes:
    try:
        material = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        material = b""
    if len(material) != KEY_BYTES:
        raise SecretKeyError(
            f"{where} must hold {KEY_BYTES} bytes in base64 (44 characters); make a key with "
            f"{_MAKE_KEY}"
        )
    return material


def new_key_text() -> str:
    """A fresh key, base64-encoded as `PULLTHROUGH_SECRET_KEY` and the key file hold it."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _create_key_file(path: Path) -> bytes | None:
    """Write a new key to `path` (0600, fsynced) unless a file is there: the new key, or None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes creating it at once, one wins and the other reads its key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return None
    text = new_key_text()
    try:
        os.fchmod(fd, 0o600)  # the mode above is subject to the umask; never looser than 0600
        os.write(fd, f"{text}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return base64.b64decode(text)
