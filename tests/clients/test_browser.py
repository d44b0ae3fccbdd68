"""The web player in headless Chromium (system package, driven by Playwright) against a
real `rollcast serve`: H.264/fMP4 through Media Source Extensions, and the JPEG canvas
fallback; live prompt changes and Stop through the page's own controls."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator

import av
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from serve_env import ServeProcess, ThreadedDropProxy

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 150_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        page.close()
    assert not errors, errors


def pixels(png: bytes) -> np.ndarray:
    with av.open(io.BytesIO(png)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def assert_not_uniform(png: bytes) -> None:
    image = pixels(png).astype(np.float32)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 8.0, "the video area is one flat colour"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 64


def wait_for_fps(page: Page) -> None:
    """The measured presentation rate shows while frames are played (it reads 0 while the
    player waits for the next chunk, so this waits for a moment of playback)."""
    page.wait_for_function("parseFloat(document.getElementById('stat-fps').textContent) > 0", timeout=WAIT_MS)


def change_prompt_and_stop(page: Page, server: ServeProcess, text: str, transition: str) -> None:
    page.fill("#prompt", text)
    page.select_option("#transition", transition)
    page.click("#apply-prompt")
    page.wait_for_function(
        "t => document.getElementById('stat-prompt-applied').textContent.includes(t)",
        arg=text,
        timeout=WAIT_MS,
    )
    applied = page.evaluate("rollcast.stats.promptApplied")
    assert applied["prompt"] == text and applied["transition"] == transition and applied["revision"] >= 1
    assert any(e["type"] == "prompt_applied" for e in page.evaluate("rollcast.events"))
    session_id = page.evaluate("rollcast.state.sessionId")
    page.click("#stop")
    page.wait_for_function("rollcast.state.phase === 'ended'", timeout=60_000)
    assert "stopped" in page.text_content("#stat-state")
    info = httpx.get(f"{server.url}/v1/sessions/{session_id}").json()
    assert info["state"] == "ended" and info["end_reason"] == "stopped"


def test_fmp4_through_media_source_extensions(rollcast_server: ServeProcess, page: Page) -> None:
    proxy = ThreadedDropProxy(rollcast_server.url)  # to cut the stream's socket later
    try:
        page.goto(proxy.url + "/")
        assert page.evaluate("rollcast.state.mseSupported"), "Chromium reports no H.264 MSE support"
        page.fill("#prompt", "a hot air balloon over a canyon")
        page.click("#start")
        page.wait_for_function("document.getElementById('video').currentTime > 2", timeout=WAIT_MS)
        state = page.evaluate("rollcast.state")
        assert state["format"] == "fmp4" and state["mime"].startswith("video/mp4; codecs=")
        assert page.evaluate("m => MediaSource.isTypeSupported(m)", state["mime"])
        assert page.is_visible("#video") and not page.is_visible("#canvas")
        assert_not_uniform(page.locator("#video").screenshot())
        stats = page.evaluate("rollcast.stats")
        assert stats["framesShown"] > 16 and stats["framesReceived"] >= stats["framesShown"] - 1
        assert stats["chunks"] >= 2 and stats["latencyMs"] is not None and stats["latencyMs"] >= 0
        wait_for_fps(page)
        assert page.text_content("#stat-latency").endswith("ms")
        # Live-edge chasing brings the playhead back near the newest data.
        page.wait_for_function("rollcast.stats.lagS < 2.6", timeout=WAIT_MS)

        # Cut the socket: the page reconnects, appends the re-sent init segment, plays on.
        shown = page.evaluate("rollcast.stats.framesReceived")
        assert proxy.drop_streams() == 1
        page.wait_for_function("rollcast.stats.reconnects === 1", timeout=30_000)
        page.wait_for_function(
            "n => rollcast.stats.framesReceived > n + 12 && rollcast.state.phase === 'running'",
            arg=shown,
            timeout=WAIT_MS,
        )
        played = page.evaluate("document.getElementById('video').currentTime")
        page.wait_for_function(
            "t => document.getElementById('video').currentTime > t + 0.5", arg=played, timeout=WAIT_MS
        )
        assert page.evaluate("rollcast.stats.lastError") is None
        change_prompt_and_stop(page, rollcast_server, "a hot air balloon in a thunderstorm", "recache")
    finally:
        proxy.close()


def test_jpeg_fallback_on_canvas(rollcast_server: ServeProcess, page: Page) -> None:
    page.goto(rollcast_server.url + "/?format=jpeg")
    page.fill("#prompt", "a koi pond in autumn")
    page.fill("#seed", "11")
    page.click("#start")
    page.wait_for_function("rollcast.stats.framesShown > 32", timeout=WAIT_MS)  # > 2 s at 16 fps
    state = page.evaluate("rollcast.state")
    assert state["format"] == "jpeg" and state["width"] and state["height"]
    assert page.is_visible("#canvas") and not page.is_visible("#video")
    size = page.evaluate(
        "[document.getElementById('canvas').width, document.getElementById('canvas').height]"
    )
    assert size == [state["width"], state["height"]]
    assert_not_uniform(page.locator("#canvas").screenshot())
    wait_for_fps(page)
    change_prompt_and_stop(page, rollcast_server, "a koi pond in winter", "blend")
