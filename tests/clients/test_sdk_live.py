"""The SDK against a real `rollcast serve`: streaming, decoding, recording, live prompt
changes over the WebSocket and over REST, typed errors, and reconnecting after the
server-side socket is cut."""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import av
import pytest
from rollcast_client import (
    ChunkEvent,
    Ended,
    InvalidRequest,
    MediaChunk,
    MediaKind,
    Mp4Recorder,
    NotFound,
    PromptApplied,
    Reconnected,
    RollcastClient,
    SessionEnded,
    SessionHello,
    Started,
    Unavailable,
)
from serve_env import DropProxy, ServeProcess

pytestmark = pytest.mark.timeout(180)


async def test_stream_decode_record(rollcast_server: ServeProcess, tmp_path) -> None:
    """A bounded session streams started, init, then chunks whose fragments decode to the
    announced frame count and size; the recording decodes to exactly max_frames frames."""
    async with RollcastClient(rollcast_server.url) as rc:
        model = await rc.default_model()
        assert model is not None
        session = await rc.create_session("a red kite over a green hill", seed=7, max_frames=25)
        recorder = Mp4Recorder(tmp_path / "out.mp4")
        items = []
        async with contextlib.aclosing(session.stream(decode=True)) as stream:
            async for item in stream:
                items.append(item)
                if isinstance(item, MediaChunk):
                    recorder.write(item)
        summary = recorder.close()

    assert isinstance(items[0], SessionHello) and items[0].id == session.id
    started = next(i for i in items if isinstance(i, Started))
    assert (started.width, started.height) == (model.width, model.height)
    assert started.mime is not None and started.codec is not None and started.codec in started.mime
    media = [i for i in items if isinstance(i, MediaChunk)]
    assert media[0].kind is MediaKind.INIT
    chunks = [i for i in items if isinstance(i, ChunkEvent)]
    fragments = [m for m in media if m.kind is MediaKind.FRAGMENT]
    assert [c.index for c in chunks] == list(range(len(chunks))) == [f.chunk_index for f in fragments]
    next_frame = 0
    for event, fragment in zip(chunks, fragments, strict=True):
        assert fragment.first_frame == event.first_frame == next_frame
        assert fragment.frame_count == event.frames
        assert fragment.frames is not None and len(fragment.frames) == event.frames
        assert fragment.frames[0].shape[:2] == (started.height, started.width)
        next_frame += event.frames
    assert next_frame == 25
    ended = items[-1]
    assert isinstance(ended, Ended) and ended.reason == "completed" and ended.frames == 25
    assert summary.frames == 25 and summary.gaps == []
    with av.open(str(summary.paths[0])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 25
    assert frames[0].shape[:2] == (started.height, started.width)

    # The same media replayed as a lossy stream (a fragment missing) and as one that
    # restarted at frame 0: a hole in time in one file, then a second file.
    init, f0, f1, f2 = media[0], *fragments[:3]
    replay = Mp4Recorder(tmp_path / "replay.mp4")
    for item in (init, f0, f2, f0, f1):
        replay.write(item)
    result = replay.close()
    assert result.gaps == [(f1.first_frame, f2.first_frame)]
    assert [p.name for p in result.paths] == ["replay.mp4", "replay.1.mp4"]
    counts = []
    for path in result.paths:
        with av.open(str(path)) as container:
            counts.append(sum(1 for _ in container.decode(video=0)))
    assert counts == [f0.frame_count + f2.frame_count, f0.frame_count + f1.frame_count]


async def test_prompt_change_over_websocket(rollcast_server: ServeProcess) -> None:
    async with RollcastClient(rollcast_server.url) as rc:
        session = await rc.create_session("a quiet harbour at dawn")
        applied: list[PromptApplied] = []
        ended: Ended | None = None
        async with contextlib.aclosing(session.stream()) as stream:
            async for item in stream:
                if isinstance(item, ChunkEvent) and item.index == 0:
                    assert session.streaming
                    await session.set_prompt("a stormy harbour at night", transition="recache")
                elif isinstance(item, PromptApplied):
                    applied.append(item)
                    await session.stop()
                elif isinstance(item, Ended):
                    ended = item
    assert len(applied) == 1
    assert applied[0].prompt == "a stormy harbour at night"
    assert applied[0].transition == "recache" and applied[0].revision >= 1
    assert applied[0].chunk is not None and applied[0].chunk >= 1
    assert ended is not None and ended.reason == "stopped"


async def test_prompt_change_over_rest_and_typed_errors(rollcast_server: ServeProcess) -> None:
    async with RollcastClient(rollcast_server.url) as rc:
        session = await rc.create_session("a field of sunflowers", max_frames=400)
        applied = None
        async with contextlib.aclosing(session.stream()) as stream:
            async for item in stream:
                if isinstance(item, ChunkEvent) and item.index == 0:
                    info = await rc.update_session(session.id, prompt="a field of lavender", transition="cut")
                    assert info.id == session.id and info.state in ("starting", "running")
                elif isinstance(item, PromptApplied):
                    applied = item
                    break
        assert applied is not None and applied.prompt == "a field of lavender"
        assert applied.transition == "cut"
        assert not session.streaming  # so this goes over REST PATCH
        await session.set_prompt("a field of poppies", transition="blend", over_chunks=2)
        assert session.info is not None and session.info.state in ("starting", "running")
        info = await session.delete()
        assert info.state == "ended" and info.end_reason == "deleted"

        with pytest.raises(SessionEnded) as ended:
            await rc.update_session(session.id, prompt="too late")
        assert ended.value.status == 409 and ended.value.code == "session_ended"
        with pytest.raises(NotFound) as missing:
            await rc.get_session("s_0000000000000000")
        assert missing.value.status == 404 and missing.value.code == "not_found"
        with pytest.raises(InvalidRequest) as bad:
            await rc.create_session("ok", seed=-1)
        assert bad.value.status == 400 and bad.value.code == "invalid_request"
        assert "seed" in bad.value.message
        with pytest.raises(InvalidRequest):
            await rc.create_session("ok", model="no-such-model")
        with pytest.raises(NotFound):  # the WebSocket's 4404 close becomes the same error
            async for _ in rc.session("s_0000000000000000").stream():
                pass

    host = urlsplit(rollcast_server.url)
    async with RollcastClient(f"http://{host.hostname}:1") as nowhere:
        with pytest.raises(Unavailable) as down:
            await nowhere.list_models()
        assert down.value.retryable


async def test_reconnects_after_the_socket_is_cut(rollcast_server: ServeProcess) -> None:
    host = urlsplit(rollcast_server.url)
    proxy = await DropProxy(host.hostname or "127.0.0.1", host.port or 80).start()
    try:
        async with RollcastClient(proxy.url) as rc:
            session = await rc.create_session("a train crossing a bridge")
            items: list[object] = []
            fragments_after = 0
            dropped = False
            async with contextlib.aclosing(session.stream(decode=True, backoff_s=0.1)) as stream:
                async for item in stream:
                    items.append(item)
                    fragment = isinstance(item, MediaChunk) and item.kind is MediaKind.FRAGMENT
                    reconnected = any(isinstance(i, Reconnected) for i in items)
                    if fragment and not dropped:
                        assert proxy.drop_streams() == 1
                        dropped = True
                    elif fragment and reconnected:
                        fragments_after += 1
                        if fragments_after == 2:
                            await session.stop()
    finally:
        await proxy.close()

    reconnects = [i for i in items if isinstance(i, Reconnected)]
    assert len(reconnects) == 1 and reconnects[0].close_code == 1006
    seam = items.index(reconnects[0])
    after = items[seam + 1 :]
    # The server re-sent hello, started and the same init segment: none of them is repeated.
    assert not any(isinstance(i, SessionHello | Started) for i in after)
    assert not any(isinstance(i, MediaChunk) and i.kind is MediaKind.INIT for i in after)
    fragments = [i for i in items if isinstance(i, MediaChunk) and i.kind is MediaKind.FRAGMENT]
    indices = [f.chunk_index for f in fragments]
    assert indices == sorted(set(indices)) and len(indices) >= 3
    assert all(f.frames and len(f.frames) == f.frame_count for f in fragments)  # decodable after the seam
    assert isinstance(items[-1], Ended) and items[-1].reason == "stopped"
