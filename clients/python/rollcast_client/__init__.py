"""Rollcast client SDK: REST session management and the live WebSocket stream.

Depends on the wire protocol only (docs/protocol.md): httpx, websockets and pydantic; PyAV
for the optional decoding and recording.  Quick start:

    import asyncio
    from rollcast_client import RollcastClient, ChunkEvent, MediaChunk

    async def main() -> None:
        async with RollcastClient("http://127.0.0.1:8000") as rc:
            session = await rc.create_session("a lighthouse at dusk", max_frames=64)
            async for item in session.stream():
                if isinstance(item, ChunkEvent) and item.index == 2:
                    await session.set_prompt("a lighthouse in a storm", transition="recache")
                elif isinstance(item, MediaChunk):
                    print(item.kind.name, item.chunk_index, item.frame_count, len(item.payload))

    asyncio.run(main())
"""

from rollcast_client.client import RollcastClient
from rollcast_client.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    RollcastError,
    ServerError,
    SessionEnded,
    Unauthorized,
    Unavailable,
)
from rollcast_client.events import (
    ChunkEvent,
    ChunkTimings,
    Ended,
    Error,
    ErrorEvent,
    Event,
    Paused,
    PromptApplied,
    Queued,
    Reconnected,
    Resumed,
    SessionHello,
    Started,
    UnknownEvent,
    parse_event,
)
from rollcast_client.framing import FramingError, MediaChunk, MediaKind, parse_media
from rollcast_client.models import ModelInfo, SessionCreated, SessionInfo
from rollcast_client.recorder import Mp4Recorder
from rollcast_client.session import Session, StreamClosed, StreamItem

__all__ = [
    "ChunkEvent",
    "ChunkTimings",
    "Ended",
    "Error",
    "ErrorEvent",
    "Event",
    "Forbidden",
    "FramingError",
    "InvalidRequest",
    "MediaChunk",
    "MediaKind",
    "ModelInfo",
    "Mp4Recorder",
    "NotFound",
    "Paused",
    "PromptApplied",
    "Queued",
    "QuotaExceeded",
    "Reconnected",
    "Resumed",
    "RollcastClient",
    "RollcastError",
    "ServerError",
    "Session",
    "SessionCreated",
    "SessionEnded",
    "SessionHello",
    "SessionInfo",
    "Started",
    "StreamClosed",
    "StreamItem",
    "Unauthorized",
    "Unavailable",
    "UnknownEvent",
    "parse_event",
    "parse_media",
]
