"""API keys: ``Authorization: Bearer KEY`` on REST, ``?token=KEY`` on the WebSocket.

`Settings.api_keys` maps each secret to its owner name and quota.  Sessions are stored with
the owner *name* as ``api_key_id`` (never the secret), which is also the quota bucket: the
broker's `create_session(record, quota)` checks and inserts in one atomic step, so several
API processes can never let a key exceed its quota.  Without configured keys everyone is
the anonymous caller (no quota, every session visible); the commands only allow that on
loopback unless ``--allow-insecure`` is given (see `insecure_listen_error`).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from server.api.errors import ApiError
from server.broker import SessionRecord
from server.settings import Settings


@dataclass(frozen=True)
class Caller:
    """Who is calling: ``key_id`` is the key's owner name (None when auth is off)."""

    key_id: str | None
    quota: int | None


ANONYMOUS = Caller(None, None)


class KeyRing:
    """Looks up callers by secret in constant time per key (no early exit on a mismatch)."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        self._keys = [
            (secret.encode(), Caller(key.name, settings.quota_for(key)))
            for secret, key in settings.api_keys.items()
        ]

    def identify(self, token: str | None) -> Caller | None:
        """The caller for ``token``; `ANONYMOUS` when auth is off; None if unknown."""
        if not self.enabled:
            return ANONYMOUS
        if not token:
            return None
        given = token.encode()
        found: Caller | None = None
        for secret, caller in self._keys:
            if hmac.compare_digest(given, secret):
                found = caller
        return found

    def may_access(self, caller: Caller, record: SessionRecord) -> bool:
        return not self.enabled or record.api_key_id == caller.key_id


bearer = HTTPBearer(auto_error=False, description="An API key (only when the server has keys configured).")


async def require_caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    """FastAPI dependency for every /v1 route: 401 ``unauthorized`` without a valid key."""
    keys: KeyRing = request.app.state.keys
    caller = keys.identify(credentials.credentials if credentials is not None else None)
    if caller is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing or unknown API key (send Authorization: Bearer KEY)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; unknown names count as non-loopback."""
    if host.strip("[]").lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def insecure_listen_error(settings: Settings) -> str | None:
    """Why the server must not start (listening beyond loopback with no keys), or None."""
    if settings.auth_enabled or settings.allow_insecure or is_loopback(settings.host):
        return None
    return (
        f"refusing to listen on {settings.host} without API keys: anyone who can reach it could "
        'start sessions. Configure keys (ROLLCAST_API_KEYS=\'{"SECRET": {"name": "me"}}\'), '
        "listen on 127.0.0.1, or pass --allow-insecure."
    )
