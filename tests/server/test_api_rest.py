"""REST API: session life cycle, validation (every bad input is a 400 JSON error), auth,
ownership, quota (atomic, also across two API processes on Redis), errors and the stable
error envelope.  Uses the real broker (in-process, and Redis db 15 with a unique prefix)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_env import (
    KEY_A,
    KEY_B,
    create,
    keyed_settings,
    make_settings,
    metric,
    new_app,
    open_broker,
    rest_client,
)
from broker_env import BROKER_KINDS

from server.broker import Broker, RedisBroker


@pytest.fixture(params=BROKER_KINDS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    async with open_broker(request.param) as b:
        yield b


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"code", "message", "retryable"}
    assert err["code"] == code and isinstance(err["message"], str) and err["message"]
    return err


async def test_create_get_list_delete(broker: Broker) -> None:
    app = new_app(make_settings(), broker)
    async with rest_client(app) as c:
        r = await c.post("/v1/sessions", json={"prompt": "a red ball", "seed": 5, "max_frames": 24})
        assert r.status_code == 201, r.text
        body = r.json()
        sid = body["id"]
        assert body["state"] == "queued" and body["queue_position"] == 0
        assert body["stream_url"] == f"ws://testserver/v1/sessions/{sid}/stream"
        assert r.headers["location"] == f"http://testserver/v1/sessions/{sid}"
        second = await create(c, "a blue cube")
        assert second["queue_position"] == 1

        info = (await c.get(f"/v1/sessions/{sid}")).json()
        assert info["prompt"] == "a red ball" and info["seed"] == 5 and info["max_frames"] == 24
        assert info["format"] == "fmp4" and info["model"] == "test" and info["queue_position"] == 0
        assert info["state"] == "queued" and info["frames_generated"] == 0 and info["ended_at"] is None
        record = await broker.get_session(sid)
        assert record is not None and record.params["preset"] == "test"
        assert record.params["transition"] == "cut" and record.params["blend_chunks"] == 2

        listed = (await c.get("/v1/sessions")).json()["sessions"]
        assert [s["id"] for s in listed] == [sid, second["id"]]

        r = await c.delete(f"/v1/sessions/{sid}")
        assert r.status_code == 200
        assert r.json()["state"] == "ended" and r.json()["end_reason"] == "deleted"
        out = await broker.read_output(sid)
        assert [e.event for e in out] == [{"type": "ended", "reason": "deleted", "frames": 0}]
        # Idempotent; the other session moved up.
        again = await c.delete(f"/v1/sessions/{sid}")
        assert again.status_code == 200 and again.json()["end_reason"] == "deleted"
        assert len(await broker.read_output(sid)) == 1
        assert (await c.get(f"/v1/sessions/{second['id']}")).json()["queue_position"] == 0
        assert [s["id"] for s in (await c.get("/v1/sessions")).json()["sessions"]] == [second["id"]]


async def test_random_seed_and_stream_url_from_public_url() -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(public_url="https://video.example.org/"), broker)
        async with rest_client(app) as c:
            a, b = await create(c), await create(c)
            assert a["stream_url"] == f"wss://video.example.org/v1/sessions/{a['id']}/stream"
            seeds = [(await c.get(f"/v1/sessions/{s['id']}")).json()["seed"] for s in (a, b)]
            assert all(0 <= s < 2**31 for s in seeds)


BAD_CREATE: list[tuple[str, Any]] = [
    ("missing prompt", {}),
    ("empty prompt", {"prompt": ""}),
    ("prompt too long", {"prompt": "x" * 51}),
    ("prompt not a string", {"prompt": 12}),
    ("negative seed", {"prompt": "p", "seed": -1}),
    ("seed too big", {"prompt": "p", "seed": 2**31}),
    ("seed not an int", {"prompt": "p", "seed": "abc"}),
    ("fps zero", {"prompt": "p", "fps": 0}),
    ("fps too high", {"prompt": "p", "fps": 61}),
    ("max_frames zero", {"prompt": "p", "max_frames": 0}),
    ("max_frames over the server limit", {"prompt": "p", "max_frames": 1001}),
    ("unknown format", {"prompt": "p", "format": "webm"}),
    ("unknown transition", {"prompt": "p", "transition": "fade"}),
    ("blend_chunks zero", {"prompt": "p", "blend_chunks": 0}),
    ("blend_chunks too many", {"prompt": "p", "blend_chunks": 17}),
    ("unknown field", {"prompt": "p", "colour": "red"}),
    ("unknown model", {"prompt": "p", "model": "wan-99b"}),
    ("body is a list", ["prompt"]),
]


@pytest.mark.parametrize(("case", "body"), BAD_CREATE, ids=[c for c, _ in BAD_CREATE])
async def test_create_validation_errors_are_400(case: str, body: Any) -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(max_prompt_chars=50, max_frames_limit=1000), broker)
        async with rest_client(app) as c:
            err = assert_error(await c.post("/v1/sessions", json=body), 400, "invalid_request")
            assert err["retryable"] is False
        assert await broker.count_queued() == 0


async def test_malformed_json_and_wrong_content_are_400() -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(), broker)
        async with rest_client(app) as c:
            headers = {"content-type": "application/json"}
            assert_error(
                await c.post("/v1/sessions", content=b"{not json", headers=headers), 400, "invalid_request"
            )
            assert_error(await c.post("/v1/sessions", content=b"", headers=headers), 400, "invalid_request")
            r = await c.post("/v1/sessions", content=b"prompt=x", headers={"content-type": "text/plain"})
            assert_error(r, 400, "invalid_request")
            sid = (await create(c))["id"]
            r = await c.patch(f"/v1/sessions/{sid}", content=b"[1,", headers=headers)
            assert_error(r, 400, "invalid_request")


async def test_max_frames_limit_applies_to_unbounded_sessions() -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(max_frames_limit=100), broker)
        async with rest_client(app) as c:
            sid = (await create(c))["id"]
            assert (await c.get(f"/v1/sessions/{sid}")).json()["max_frames"] == 100
            sid = (await create(c, max_frames=10))["id"]
            assert (await c.get(f"/v1/sessions/{sid}")).json()["max_frames"] == 10


BAD_PATCH: list[tuple[str, Any]] = [
    ("empty", {}),
    ("all null", {"prompt": None, "seed": None}),
    ("transition without prompt", {"transition": "blend"}),
    ("over_chunks without prompt", {"over_chunks": 2}),
    ("over_chunks zero", {"prompt": "p", "over_chunks": 0}),
    ("bad transition", {"prompt": "p", "transition": "wipe"}),
    ("empty prompt", {"prompt": ""}),
    ("prompt too long", {"prompt": "y" * 51}),
    ("seed too big", {"seed": 2**31}),
    ("paused not a bool", {"paused": "maybe"}),
    ("unknown field", {"speed": 2}),
]


@pytest.mark.parametrize(("case", "body"), BAD_PATCH, ids=[c for c, _ in BAD_PATCH])
async def test_patch_validation_errors_are_400(case: str, body: Any) -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(max_prompt_chars=50), broker)
        async with rest_client(app) as c:
            sid = (await create(c))["id"]
            assert_error(await c.patch(f"/v1/sessions/{sid}", json=body), 400, "invalid_request")
        assert await broker.read_control(sid) == []


async def test_patch_forwards_control_messages_in_order(broker: Broker) -> None:
    app = new_app(make_settings(), broker)
    async with rest_client(app) as c:
        sid = (await create(c))["id"]
        body = {"prompt": "a green tree", "transition": "blend", "over_chunks": 3, "seed": 9, "paused": True}
        r = await c.patch(f"/v1/sessions/{sid}", json=body)
        assert r.status_code == 200 and r.json()["id"] == sid
        assert (await c.patch(f"/v1/sessions/{sid}", json={"paused": False})).status_code == 200
        assert (await c.patch(f"/v1/sessions/{sid}", json={"prompt": "snow"})).status_code == 200
    got = [e.message for e in await broker.read_control(sid)]
    assert got == [
        {"type": "set_prompt", "prompt": "a green tree", "transition": "blend", "over_chunks": 3},
        {"type": "set_seed", "seed": 9},
        {"type": "pause"},
        {"type": "resume"},
        {"type": "set_prompt", "prompt": "snow"},
    ]


async def test_not_found_conflict_and_unknown_routes(broker: Broker) -> None:
    app = new_app(make_settings(), broker)
    async with rest_client(app) as c:
        for method in ("GET", "PATCH", "DELETE"):
            r = await c.request(method, "/v1/sessions/s_0000000000000000", json={"seed": 1})
            assert_error(r, 404, "not_found")
        sid = (await create(c))["id"]
        await c.delete(f"/v1/sessions/{sid}")
        err = assert_error(await c.patch(f"/v1/sessions/{sid}", json={"seed": 3}), 409, "session_ended")
        assert err["retryable"] is False
        assert (await c.get(f"/v1/sessions/{sid}")).json()["state"] == "ended"
        assert_error(await c.get("/v1/nothing-here"), 404, "not_found")
        assert_error(await c.put("/v1/sessions"), 405, "method_not_allowed")


async def test_auth_401_and_ownership_403(broker: Broker) -> None:
    app = new_app(keyed_settings(), broker)
    async with rest_client(app) as anon, rest_client(app, "sk-wrong") as wrong:
        for client in (anon, wrong):
            r = await client.post("/v1/sessions", json={"prompt": "p"})
            assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
            assert_error(await client.get("/v1/sessions"), 401, "unauthorized")
            assert_error(await client.get("/v1/models"), 401, "unauthorized")
    async with rest_client(app, KEY_A) as alice, rest_client(app, KEY_B) as bob:
        sid = (await create(alice))["id"]
        bob_sid = (await create(bob))["id"]
        assert (await broker.get_session(sid)).api_key_id == "alice"  # type: ignore[union-attr]
        assert_error(await bob.get(f"/v1/sessions/{sid}"), 403, "forbidden")
        assert_error(await bob.patch(f"/v1/sessions/{sid}", json={"seed": 1}), 403, "forbidden")
        assert_error(await bob.delete(f"/v1/sessions/{sid}"), 403, "forbidden")
        assert (await alice.get(f"/v1/sessions/{sid}")).json()["state"] == "queued"
        assert [s["id"] for s in (await alice.get("/v1/sessions")).json()["sessions"]] == [sid]
        assert [s["id"] for s in (await bob.get("/v1/sessions")).json()["sessions"]] == [bob_sid]
        # Health and metrics need no key.
        assert (await anon_get(app, "/healthz")).status_code == 200
        assert (await anon_get(app, "/metrics")).status_code == 200


async def anon_get(app: Any, path: str) -> httpx.Response:
    async with rest_client(app) as c:
        return await c.get(path)


async def test_quota_429_until_a_session_ends(broker: Broker) -> None:
    app = new_app(keyed_settings(), broker)  # alice's quota is 2
    async with rest_client(app, KEY_A) as alice, rest_client(app, KEY_B) as bob:
        first = await create(alice)
        await create(alice)
        r = await alice.post("/v1/sessions", json={"prompt": "third"})
        err = assert_error(r, 429, "quota_exceeded")
        assert err["retryable"] is True and r.headers["retry-after"]
        await create(bob)  # another key's quota is separate
        await alice.delete(f"/v1/sessions/{first['id']}")
        await create(alice, "third, now")


async def test_quota_is_atomic_across_two_api_processes(broker: Broker) -> None:
    """20 concurrent creates with quota 2, through two apps (two brokers on Redis)."""
    settings = keyed_settings()
    second: Broker = broker
    if isinstance(broker, RedisBroker):
        second = RedisBroker.from_url(pytest_redis_url(), broker.config)
    try:
        apps = [new_app(settings, broker), new_app(settings, second)]
        clients = [rest_client(a, KEY_A) for a in apps]
        try:
            posts = [clients[i % 2].post("/v1/sessions", json={"prompt": f"p{i}"}) for i in range(20)]
            results = await asyncio.gather(*posts)
        finally:
            for c in clients:
                await c.aclose()
        codes = sorted(r.status_code for r in results)
        assert codes == [201] * 2 + [429] * 18
        assert len(await broker.list_sessions("alice")) == 2
    finally:
        if second is not broker:
            await second.close()


def pytest_redis_url() -> str:
    from broker_env import REDIS_URL

    return REDIS_URL


async def test_unreachable_broker_is_503() -> None:
    from server.broker import BrokerConfig

    broker = RedisBroker.from_url("redis://127.0.0.1:1/0", BrokerConfig(prefix="rollcast-test:down"))
    app = new_app(make_settings(), broker)
    try:
        async with rest_client(app) as c:
            err = assert_error(await c.post("/v1/sessions", json={"prompt": "p"}), 503, "unavailable")
            assert err["retryable"] is True
            assert_error(await c.get("/v1/sessions/s_1"), 503, "unavailable")
            assert_error(await c.get("/readyz"), 503, "unavailable")
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/metrics")).status_code == 200
    finally:
        await broker.close()


async def test_unexpected_exception_is_a_json_500_with_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_broker("memory") as broker:

        async def boom(session_id: str) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(broker, "get_session", boom)
        app = new_app(make_settings(), broker)
        before = metric("rollcast_http_errors_total", code="internal_error")
        async with rest_client(app) as c:
            r = await c.get("/v1/sessions/s_1", headers={"x-request-id": "req-42"})
        err = assert_error(r, 500, "internal_error")
        assert "req-42" in err["message"] and r.headers["x-request-id"] == "req-42"
        assert "a bug" not in err["message"]
        assert metric("rollcast_http_errors_total", code="internal_error") == before + 1


async def test_error_responses_are_counted_by_code() -> None:
    async with open_broker("memory") as broker:
        app = new_app(make_settings(), broker)
        before = metric("rollcast_http_errors_total", code="invalid_request")
        before_nf = metric("rollcast_http_errors_total", code="not_found")
        async with rest_client(app) as c:
            await c.post("/v1/sessions", json={})
            await c.post("/v1/sessions", json={"prompt": ""})
            await c.get("/v1/sessions/s_x")
        assert metric("rollcast_http_errors_total", code="invalid_request") == before + 2
        assert metric("rollcast_http_errors_total", code="not_found") == before_nf + 1


async def test_models_lists_the_served_presets() -> None:
    from server.broker import WorkerInfo

    async with open_broker("memory") as broker:
        app = new_app(make_settings(preset="test"), broker)
        async with rest_client(app) as c:
            models = (await c.get("/v1/models")).json()["models"]
            assert models == [{"id": "test", "width": 48, "height": 32, "fps": 16, "default": True}]
            await broker.heartbeat(WorkerInfo(id="w1", preset="tiny"), ttl_s=30)
            ids = [m["id"] for m in (await c.get("/v1/models")).json()["models"]]
            assert ids == ["test", "tiny"]
            sid = (await create(c, model="tiny"))["id"]
            assert (await c.get(f"/v1/sessions/{sid}")).json()["model"] == "tiny"
