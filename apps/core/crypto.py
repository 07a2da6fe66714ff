"""Encryption at rest for write-only values (environment secrets, repository credentials).

MultiFernet over settings.ENCRYPTION_KEYS: the first key encrypts, every key decrypts, so
keys rotate by prepending a new one and re-encrypting (``manage.py rotate_secrets``).
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"STRATUS_ENCRYPTION_KEYS holds an invalid Fernet key: {exc}") from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> bytes:
    return fernet().encrypt(plaintext.encode("utf-8"))


def decrypt(ciphertext: bytes) -> str:
    try:
        return fernet().decrypt(bytes(ciphertext)).decode("utf-8")
    except InvalidToken:
        raise ImproperlyConfigured("a stored secret cannot be decrypted with any configured key") from None


def rotate(ciphertext: bytes) -> bytes:
    return fernet().rotate(bytes(ciphertext))
