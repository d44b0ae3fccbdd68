"""Typed errors carrying the server's stable error ``code`` (docs/protocol.md, "Errors").

Every failure the SDK raises is a `RollcastError`; the subclass is picked from the server's
``code`` first (it is the contract) and from the HTTP status only when a body has none (a
proxy's error page, say).  Transport failures (connection refused, timeouts) become
`Unavailable` with ``retryable=True`` so callers need to catch only one family.
"""

from __future__ import annotations

import json
from typing import Any


class RollcastError(Exception):
    """Base class: ``code`` is the server's stable error code, ``status`` the HTTP status
    (None for WebSocket and transport errors), ``retryable`` whether trying again may help."""

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retryable: bool = False,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.retryable = retryable
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"HTTP {self.status}, " if self.status is not None else ""
        return f"{self.message} ({where}code {self.code})"


class InvalidRequest(RollcastError):
    """400 ``invalid_request`` (or an ``invalid_message`` answer to a control message)."""

    default_code = "invalid_request"


class Unauthorized(RollcastError):
    """401 ``unauthorized``: missing or unknown API key (WebSocket close 1008)."""

    default_code = "unauthorized"


class Forbidden(RollcastError):
    """403 ``forbidden``: the session belongs to another API key (WebSocket close 1008)."""

    default_code = "forbidden"


class NotFound(RollcastError):
    """404 ``not_found``: unknown or expired session (WebSocket close 4404)."""

    default_code = "not_found"


class SessionEnded(RollcastError):
    """409 ``session_ended``: the session has ended and cannot be changed."""

    default_code = "session_ended"


class QuotaExceeded(RollcastError):
    """429 ``quota_exceeded``: the key's concurrent-session quota is used up (retryable)."""

    default_code = "quota_exceeded"


class Unavailable(RollcastError):
    """503 ``unavailable`` or the server cannot be reached at all (retryable)."""

    default_code = "unavailable"


class ServerError(RollcastError):
    """500 ``internal_error`` or any other code this SDK does not know."""

    default_code = "internal_error"


BY_CODE: dict[str, type[RollcastError]] = {
    "invalid_request": InvalidRequest,
    "invalid_message": InvalidRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "session_ended": SessionEnded,
    "quota_exceeded": QuotaExceeded,
    "unavailable": Unavailable,
    "internal_error": ServerError,
}

BY_STATUS: dict[int, type[RollcastError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: SessionEnded,
    422: InvalidRequest,
    429: QuotaExceeded,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for(
    code: str | None,
    message: str,
    *,
    status: int | None = None,
    retryable: bool | None = None,
    request_id: str | None = None,
) -> RollcastError:
    """The typed error for a server ``code`` (falling back to the HTTP ``status``)."""
    cls = BY_CODE.get(code or "") or BY_STATUS.get(status or 0)
    if cls is None:
        cls = ServerError if status is None or status >= 500 else InvalidRequest
    if retryable is None:
        retryable = cls in (QuotaExceeded, Unavailable)
    return cls(message, code=code, status=status, retryable=retryable, request_id=request_id)


def error_from_body(status: int, body: bytes, request_id: str | None = None) -> RollcastError:
    """Parse ``{"error": {"code", "message", "retryable"}}``; tolerate any other body."""
    code: str | None = None
    message = ""
    retryable: bool | None = None
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    detail = data.get("error") if isinstance(data, dict) else None
    if isinstance(detail, dict):
        code = detail.get("code") if isinstance(detail.get("code"), str) else None
        message = str(detail.get("message") or "")
        if isinstance(detail.get("retryable"), bool):
            retryable = detail["retryable"]
    if not message:
        text = body[:200].decode("utf-8", "replace").strip()
        message = text or f"HTTP {status}"
    return error_for(code, message, status=status, retryable=retryable, request_id=request_id)
