"""The console's session cookie and CSRF tokens.

A signed-in browser holds one cookie: the caller's API token (token mode) or hub OAuth token
(JupyterHub mode), encrypted and authenticated with Fernet under a key kept in the gateway home, so
every gateway worker can read it and the browser cannot. The cookie is ``HttpOnly`` and
``SameSite=Strict``; each request re-authenticates the token exactly as the HTTP API does, so a
revoked token ends the session at once.

Every form carries a CSRF token: an HMAC of the session's random id (signed-in) or of a pre-session
nonce cookie (the sign-in form), compared in constant time on every POST.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

SESSION_COOKIE = "sandbox_console"
NONCE_COOKIE = "sandbox_console_nonce"
SESSION_SECONDS = 8 * 3600
KEY_FILE = "console.key"


@dataclass(frozen=True)
class Session:
    """What the cookie holds: the bearer token and a random id the CSRF token is bound to."""

    token: str
    sid: str
    issued: int


class SessionKeys:
    """The Fernet key (cookie encryption) and the HMAC key (CSRF), read or created once per process."""

    def __init__(self, home: Path) -> None:
        self.path = home / KEY_FILE
        self._fernet: Fernet | None = None
        self._mac_key = b""

    def _load(self) -> Fernet:
        if self._fernet is None:
            key = _read_or_create(self.path)
            self._fernet = Fernet(key)
            self._mac_key = hashlib.sha256(b"console-csrf:" + key).digest()
        return self._fernet

    def seal(self, token: str) -> tuple[str, Session]:
        """A new session for ``token`` and its cookie value."""
        session = Session(token=token, sid=secrets.token_urlsafe(16), issued=int(time.time()))
        payload = json.dumps({"t": session.token, "s": session.sid}).encode("utf-8")
        return self._load().encrypt_at_time(payload, session.issued).decode("ascii"), session

    def open(self, cookie: str | None) -> Session | None:
        """The session in a cookie value, or ``None`` if absent, forged or older than 8 hours."""
        if not cookie:
            return None
        fernet = self._load()
        try:
            payload = fernet.decrypt(cookie.encode("ascii"), ttl=SESSION_SECONDS)
            issued = fernet.extract_timestamp(cookie.encode("ascii"))
            data = json.loads(payload)
        except (InvalidToken, ValueError, UnicodeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("t"), str):
            return None
        return Session(token=data["t"], sid=str(data.get("s", "")), issued=issued)

    def csrf_for(self, binding: str) -> str:
        """The CSRF token bound to a session id or a pre-session nonce."""
        self._load()
        return hmac.new(self._mac_key, binding.encode("utf-8"), hashlib.sha256).hexdigest()

    def csrf_ok(self, binding: str | None, submitted: str | None) -> bool:
        """Whether ``submitted`` is the CSRF token of ``binding`` (constant-time)."""
        if not binding or not submitted:
            return False
        return hmac.compare_digest(self.csrf_for(binding), submitted)


def _read_or_create(path: Path) -> bytes:
    """The key in ``path``; created (mode 0600, exclusively, so workers agree) when missing."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
