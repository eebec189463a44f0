"""AWS-style access keys of API tokens: made, and their secrets sealed and opened.

SigV4 signatures are HMACs under the secret access key, so unlike a bearer token (kept only as
a SHA-256) the secret must be readable by the server. It is sealed with AES-256-GCM under a key
derived (HKDF-SHA256) from KENPIN_ACCESS_KEY_ENCRYPTION_KEY, or from Django's SECRET_KEY when
that is not set; the access key id is bound in as associated data, so a sealed secret copied to
another row does not open. Keys in SECRET_KEY_FALLBACKS (or KENPIN_ACCESS_KEY_ENCRYPTION_KEY_FALLBACKS)
still open secrets sealed before a rotation; a secret no key opens makes its access key unusable,
and its owner creates a new token (docs/migrating-from-lookout-for-vision.md).
"""

import base64
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

ACCESS_KEY_PREFIX = "AKKP"  # AWS's long-term keys start AKIA; Kenpin's say whose they are
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_VERSION = "v1"


def new_access_key_id() -> str:
    """20 characters like AWS's: the prefix and 16 random base-32 characters (80 bits)."""
    return ACCESS_KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(16))


def new_secret() -> str:
    """40 characters like AWS's secret access keys (240 random bits)."""
    return secrets.token_urlsafe(30)


def _master_keys() -> list[str]:
    dedicated = getattr(settings, "KENPIN_ACCESS_KEY_ENCRYPTION_KEY", "")
    if dedicated:
        return [dedicated, *getattr(settings, "KENPIN_ACCESS_KEY_ENCRYPTION_KEY_FALLBACKS", [])]
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


def _aead(master: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"kenpin access key secrets v1").derive(
        master.encode()
    )
    return AESGCM(key)


def seal(secret: str, *, access_key_id: str) -> str:
    nonce = os.urandom(12)
    sealed = _aead(_master_keys()[0]).encrypt(nonce, secret.encode(), access_key_id.encode())
    return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode()}"


def open_sealed(ciphertext: str, *, access_key_id: str) -> str | None:
    """The secret, or None when no current or fallback key opens it (rotated away, or tampered)."""
    version, _, payload = ciphertext.partition(":")
    if version != _VERSION:
        return None
    raw = base64.b64decode(payload)
    for master in _master_keys():
        try:
            return _aead(master).decrypt(raw[:12], raw[12:], access_key_id.encode()).decode()
        except InvalidTag:
            continue
    return None
