"""One key per purpose, derived from ``SECRET_KEY`` with HKDF (``cryptography``).

``SECRET_KEY`` as configured is never used as a key itself. At start-up
:func:`install_keys` derives, with HKDF-SHA256, a subkey for Flask's session
cookie and one for CSRF tokens, and puts those in the config Flask and
Flask-WTF read (``SECRET_KEY``, ``WTF_CSRF_SECRET_KEY``). Everything else asks
:func:`subkey` for a key named after its purpose: a key that signs links can
then never be used to check a rate-limit hash, and a leaked subkey tells
nothing about the others.

Plugins derive their own keys the same way, naming the purpose after
themselves (``subkey("plugin:number_question")``).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app

#: Where the derived keys live (``app.extensions[EXTENSION]``).
EXTENSION = "clamor.keys"


class Keys:
    """The subkeys of one app, derived on first use and cached."""

    def __init__(self, root: str | bytes) -> None:
        self._root = root.encode() if isinstance(root, str) else bytes(root)
        self._cache: dict[str, bytes] = {}

    def get(self, purpose: str) -> bytes:
        """The 32-byte key for ``purpose``: the same for the same root key and purpose, unrelated otherwise."""
        key = self._cache.get(purpose)
        if key is None:
            hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"clamor/" + purpose.encode())
            key = self._cache[purpose] = hkdf.derive(self._root)
        return key


def install_keys(app: Flask, root: str | bytes) -> None:
    """Derive ``app``'s keys from ``root``; give Flask and Flask-WTF their own subkeys."""
    keys = app.extensions[EXTENSION] = Keys(root)
    app.config["SECRET_KEY"] = keys.get("flask-session")
    app.config["WTF_CSRF_SECRET_KEY"] = keys.get("csrf")


def subkey(purpose: str, app: Flask | None = None) -> bytes:
    """The key for ``purpose`` in ``app`` (default: the current app). Never the raw ``SECRET_KEY``."""
    app = app or current_app
    return app.extensions[EXTENSION].get(purpose)
