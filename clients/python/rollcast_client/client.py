"""`RollcastClient`: the REST half of the SDK (sessions, models) over one httpx.AsyncClient.

    async with RollcastClient("http://127.0.0.1:8000", api_key=None) as rc:
        session = await rc.create_session("a red fox running through snow", max_frames=96)
        async for item in session.stream():
            ...

Non-2xx answers raise the typed errors of `rollcast_client.errors` (chosen by the server's
stable ``code``); network failures raise `Unavailable`.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from rollcast_client.errors import InvalidRequest, Unavailable, error_from_body
from rollcast_client.models import MediaFormat, ModelInfo, SessionCreated, SessionInfo, Transition
from rollcast_client.session import Session

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "rollcast-client/1"


def default_base_url() -> str:
    """``ROLLCAST_SERVER`` or the local default."""
    return os.environ.get("ROLLCAST_SERVER") or DEFAULT_URL


def websocket_base(base_url: str) -> str:
    """``http(s)://host/prefix`` -> ``ws(s)://host/prefix``."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


class RollcastClient:
    """Async client for one Rollcast server.  ``api_key`` defaults to ``ROLLCAST_API_KEY``.

    Use it as an async context manager (or call `aclose`) so the connection pool is closed.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or default_base_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else (os.environ.get("ROLLCAST_API_KEY") or None)
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> RollcastClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing ---------------------------------------------------------------------------------
    async def request(self, method: str, path: str, json: Any = None) -> Any:
        """One REST call; returns the decoded JSON body or raises a typed error."""
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach {self.base_url}: {exc!r}", retryable=True) from exc
        if response.status_code >= 400:
            raise error_from_body(
                response.status_code, response.content, response.headers.get("x-request-id")
            )
        try:
            return response.json()
        except ValueError as exc:
            raise Unavailable(
                f"{method} {path}: the server answered {response.status_code} without JSON",
                code="bad_response",
                status=response.status_code,
            ) from exc

    def stream_url(self, session_id: str) -> str:
        """The WebSocket URL of a session, with ``?token=`` when this client has an API key."""
        url = f"{websocket_base(self.base_url)}/v1/sessions/{quote(session_id, safe='')}/stream"
        return self.with_token(url)

    def with_token(self, url: str) -> str:
        if not self.api_key:
            return url
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}{urlencode({'token': self.api_key})}"

    # -- sessions ---------------------------------------------------------------------------------
    async def create_session(
        self,
        prompt: str,
        seed: int | None = None,
        fps: int | None = None,
        max_frames: int | None = None,
        format: MediaFormat = "fmp4",
        transition: Transition = "cut",
        blend_chunks: int | None = None,
        model: str | None = None,
    ) -> Session:
        """Create a session (queued until a worker starts it) and return its handle."""
        body: dict[str, Any] = {"prompt": prompt, "format": format, "transition": transition}
        optional = {"seed": seed, "fps": fps, "max_frames": max_frames, "blend_chunks": blend_chunks}
        body.update({k: v for k, v in optional.items() if v is not None})
        if model is not None:
            body["model"] = model
        created = SessionCreated.model_validate(await self.request("POST", "/v1/sessions", body))
        return Session(self, created.id, created=created)

    async def get_session(self, session_id: str) -> Session:
        """A handle on an existing session, with its current `SessionInfo` in ``.info``."""
        info = await self.session_info(session_id)
        return Session(self, session_id, info=info)

    def session(self, session_id: str) -> Session:
        """A handle on a session without asking the server anything."""
        return Session(self, session_id)

    async def session_info(self, session_id: str) -> SessionInfo:
        return SessionInfo.model_validate(await self.request("GET", self._path(session_id)))

    async def list_sessions(self) -> list[SessionInfo]:
        """The caller's live sessions."""
        data = await self.request("GET", "/v1/sessions")
        return [SessionInfo.model_validate(s) for s in data.get("sessions", [])]

    async def update_session(
        self,
        session_id: str,
        *,
        prompt: str | None = None,
        transition: Transition | None = None,
        over_chunks: int | None = None,
        seed: int | None = None,
        paused: bool | None = None,
    ) -> SessionInfo:
        """PATCH a live session: a new prompt (from the next chunk), a new seed, pause/resume."""
        fields = {
            "prompt": prompt,
            "transition": transition,
            "over_chunks": over_chunks,
            "seed": seed,
            "paused": paused,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        if not body:
            raise InvalidRequest("update_session: give at least one of prompt, seed, paused")
        return SessionInfo.model_validate(await self.request("PATCH", self._path(session_id), body))

    async def delete_session(self, session_id: str) -> SessionInfo:
        """End a session (viewers get ``ended`` with reason ``deleted``); idempotent."""
        return SessionInfo.model_validate(await self.request("DELETE", self._path(session_id)))

    # -- the rest ---------------------------------------------------------------------------------
    async def list_models(self) -> list[ModelInfo]:
        data = await self.request("GET", "/v1/models")
        return [ModelInfo.model_validate(m) for m in data.get("models", [])]

    async def default_model(self) -> ModelInfo | None:
        models = await self.list_models()
        return next((m for m in models if m.default), models[0] if models else None)

    async def ready(self) -> bool:
        """True when ``/readyz`` answers 200 (a worker is ready and the server is not draining)."""
        try:
            response = await self._http.get("/readyz")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    @staticmethod
    def _path(session_id: str) -> str:
        return f"/v1/sessions/{quote(session_id, safe='')}"
