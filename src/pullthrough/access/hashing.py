"""Hashing what principals prove themselves with: bcrypt for passwords, SHA-256 for API keys.

API keys are long random strings, so a fast hash is enough and keeps every request cheap;
passwords are chosen by people, so they get bcrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import bcrypt

API_KEY_PREFIX = "ptk_"
_BCRYPT_ROUNDS = 12


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(_BCRYPT_ROUNDS)).decode()


def check_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def check_api_key(key: str, hashed: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), hashed)
