"""Stable JSON errors: every 4xx/5xx body is ``{"error": {"code", "message", "retryable"}}``.

Routes raise `ApiError`; FastAPI's own failures are translated here too: request validation
(malformed JSON, a field out of range) becomes 400 ``invalid_request`` instead of FastAPI's
422, unknown paths 404 ``not_found``, an unreachable broker 503 ``unavailable``.  Anything
else that escapes a route is caught by `RequestIdMiddleware` and becomes 500
``internal_error`` with the request id in the message and in the logs, so a bad input can
never produce a bare 500 page.  Every error response is counted in
``rollcast_http_errors_total{code}``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.metrics import HTTP_ERRORS

log = logging.getLogger("rollcast.api")

REQUEST_ID_HEADER = "x-request-id"

# What "the broker cannot be reached" looks like (redis-py's errors are not the builtin ones).
BROKER_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# HTTP status -> default code for errors raised without one (e.g. Starlette's 404/405).
_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "session_ended",
    413: "invalid_request",
    415: "invalid_request",
    429: "quota_exceeded",
    503: "unavailable",
}


class ApiError(Exception):
    """An error response with a stable code; raise it from routes and dependencies."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
        self.headers = headers or {}


def error_body(code: str, message: str, retryable: bool = False) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "retryable": retryable}}


def error_response(
    status: int, code: str, message: str, retryable: bool = False, headers: dict[str, str] | None = None
) -> JSONResponse:
    HTTP_ERRORS.labels(code=code).inc()
    return JSONResponse(error_body(code, message, retryable), status_code=status, headers=headers)


def describe_validation(errors: Sequence[Any]) -> str:
    """One readable line per problem: ``body.seed: Input should be less than or equal to ...``."""
    parts: list[str] = []
    for err in errors[:8]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    if len(errors) > 8:
        parts.append(f"... and {len(errors) - 8} more")
    return "; ".join(parts) or "invalid request"


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.retryable, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, "invalid_request", describe_validation(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _STATUS_CODES.get(status, "internal_error" if status >= 500 else "invalid_request")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if status == 404:
        message = f"no route {request.url.path}"
    return error_response(status, code, message, status in (429, 503), dict(exc.headers or {}))


async def _broker_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("broker unreachable (request %s): %s", request_id(request), exc)
    return error_response(503, "unavailable", "the session broker cannot be reached", True)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type in BROKER_ERRORS:
        app.add_exception_handler(exc_type, _broker_down)
    app.add_middleware(RequestIdMiddleware)


class RequestIdMiddleware:
    """Tag each HTTP request with an id (``X-Request-ID``, the client's if it is sane) and
    turn any exception that escaped the handlers into a JSON 500 that names that id.

    Pure ASGI (not BaseHTTPMiddleware) so that WebSockets and streaming pass untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = given if _SAFE_ID.match(given) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s (request %s)", scope["method"], scope["path"], rid)
            if started:
                raise
            response = error_response(500, "internal_error", f"internal error (request id {rid})")
            await response(scope, receive, send_with_id)
