"""API keys through the SDK against `rollcast serve` with keys configured: Bearer on REST,
``?token=`` on the WebSocket, and the typed errors for 401, 403 and 429."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from rollcast_client import (
    Forbidden,
    QuotaExceeded,
    RollcastClient,
    SessionHello,
    Unauthorized,
)
from serve_env import ServeProcess

pytestmark = pytest.mark.timeout(120)

ALICE, BOB = "sk-test-alice-0123456789", "sk-test-bob-0123456789"


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[ServeProcess]:
    keys = {ALICE: {"name": "alice", "quota": 1}, BOB: {"name": "bob"}}
    server = ServeProcess(env={"ROLLCAST_API_KEYS": json.dumps(keys)}).start()
    try:
        yield server
    finally:
        server.stop()


async def test_keys_quota_and_ownership(keyed_server: ServeProcess) -> None:
    async with (
        RollcastClient(keyed_server.url, api_key=ALICE) as alice,
        RollcastClient(keyed_server.url, api_key=BOB) as bob,
        RollcastClient(keyed_server.url, api_key="") as anonymous,
        RollcastClient(keyed_server.url, api_key="sk-wrong") as stranger,
    ):
        with pytest.raises(Unauthorized) as no_key:
            await anonymous.list_models()
        assert no_key.value.status == 401 and no_key.value.code == "unauthorized"
        with pytest.raises(Unauthorized):
            await stranger.create_session("a cat")

        session = await alice.create_session("a cat on a windowsill", max_frames=2000)
        try:
            with pytest.raises(QuotaExceeded) as quota:
                await alice.create_session("a second cat")
            assert quota.value.status == 429 and quota.value.retryable

            with pytest.raises(Forbidden) as other:
                await bob.get_session(session.id)
            assert other.value.status == 403 and other.value.code == "forbidden"
            with pytest.raises(Forbidden):  # WebSocket: error event + close 1008
                async for _ in bob.session(session.id).stream():
                    pass
            with pytest.raises(Unauthorized):
                async for _ in stranger.session(session.id).stream():
                    pass

            async with contextlib.aclosing(session.stream()) as stream:  # the owner's token works
                first = await anext(stream)
            assert isinstance(first, SessionHello) and first.id == session.id
            assert [s.id for s in await alice.list_sessions()] == [session.id]
            assert await bob.list_sessions() == []
        finally:
            await session.delete()
        replacement = await alice.create_session("quota is free again")
        await replacement.delete()
