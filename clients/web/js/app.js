// The Rollcast web player: create a session, stream it, steer it live.
//
// State for tests and debugging is exposed as `window.rollcast = {state, stats, events,
// start, stop, setPrompt, setSeed, pause, resume}`; the stats are also rendered into
// elements with stable ids (#stat-fps, #stat-latency, #stat-prompt-applied, ...).

import { ApiError, request, streamUrl } from "./api.js";
import { KIND_FRAGMENT, KIND_INIT, KIND_JPEG, parseMedia } from "./framing.js";
import { JpegPlayer } from "./jpeg-player.js";
import { MsePlayer, mseSupported } from "./mse-player.js";
import { newStats, RateMeter } from "./stats.js";
import { renderView, setText } from "./view.js";

const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 1014]);
const MAX_RECONNECTS = 8;
const MAX_EVENTS = 1000;

const $ = (id) => document.getElementById(id);
const ui = {
  prompt: $("prompt"),
  seed: $("seed"),
  format: $("format"),
  transition: $("transition"),
  overChunks: $("over-chunks"),
  maxFrames: $("max-frames"),
  apiKey: $("api-key"),
  start: $("start"),
  stop: $("stop"),
  applyPrompt: $("apply-prompt"),
  applySeed: $("apply-seed"),
  pause: $("pause"),
  video: $("video"),
  canvas: $("canvas"),
  log: $("log"),
  status: $("status"),
};

const state = {
  phase: "idle", // idle | creating | queued | starting | running | paused | reconnecting | ended | error
  sessionId: null,
  format: null,
  mime: null,
  width: null,
  height: null,
  fps: null,
  endReason: null,
  error: null,
  mseSupported: mseSupported(),
};
const stats = newStats();
const events = [];
window.rollcast = { state, stats, events, start, stop, setPrompt, setSeed, pause, resume };

let ws = null;
let player = null;
let reconnects = 0;
let stopping = false;
let nextFrame = null;
let resync = false; // the next chunk event is the first after a reconnect
const shownMeter = new RateMeter(2000);
const genMeter = new RateMeter(5000);

// -- session lifecycle ---------------------------------------------------------------------
function chosenFormat() {
  const wanted = new URLSearchParams(location.search).get("format") || ui.format.value;
  if (wanted === "fmp4" || wanted === "jpeg") return wanted;
  return state.mseSupported ? "fmp4" : "jpeg";
}

async function start() {
  if (["creating", "queued", "starting", "running", "paused", "reconnecting"].includes(state.phase)) return;
  resetSession();
  resync = false;
  const body = {
    prompt: ui.prompt.value.trim(),
    format: chosenFormat(),
    transition: ui.transition.value,
  };
  if (ui.seed.value !== "") body.seed = Number(ui.seed.value);
  if (ui.maxFrames.value !== "") body.max_frames = Number(ui.maxFrames.value);
  setPhase("creating");
  try {
    const created = await request("POST", "v1/sessions", body, apiKey());
    state.sessionId = created.id;
    state.format = body.format;
    stats.queuePosition = created.queue_position;
    setPhase("queued");
    connect();
  } catch (err) {
    fail(err);
  }
}

async function stop() {
  if (!state.sessionId || ["ended", "idle"].includes(state.phase)) return;
  stopping = true;
  if (send({ type: "stop" })) return;
  try {
    await request("DELETE", `v1/sessions/${encodeURIComponent(state.sessionId)}`, undefined, apiKey());
  } catch (err) {
    fail(err);
  }
}

async function setPrompt(text, transition, overChunks) {
  const message = { type: "set_prompt", prompt: text ?? ui.prompt.value.trim() };
  const t = transition ?? ui.transition.value;
  if (t) message.transition = t;
  const n = overChunks ?? (ui.overChunks.value === "" ? null : Number(ui.overChunks.value));
  if (n !== null && message.transition === "blend") message.over_chunks = n;
  if (!send(message) && state.sessionId) {
    const { type: _type, ...body } = message;
    await request("PATCH", `v1/sessions/${encodeURIComponent(state.sessionId)}`, body, apiKey());
  }
}

async function setSeed(seed) {
  const value = Number(seed ?? ui.seed.value);
  if (!send({ type: "set_seed", seed: value }) && state.sessionId) {
    await request("PATCH", `v1/sessions/${encodeURIComponent(state.sessionId)}`, { seed: value }, apiKey());
  }
}

function pause() {
  send({ type: "pause" });
}

function resume() {
  send({ type: "resume" });
}

function resetSession() {
  closePlayer();
  Object.assign(stats, newStats());
  events.length = 0;
  Object.assign(state, { sessionId: null, format: null, mime: null, width: null, height: null, fps: null });
  Object.assign(state, { endReason: null, error: null });
  reconnects = 0;
  stopping = false;
  nextFrame = null;
  ui.log.textContent = "";
}

// -- the WebSocket -------------------------------------------------------------------------
function connect() {
  const socket = new WebSocket(streamUrl(state.sessionId, apiKey()));
  socket.binaryType = "arraybuffer";
  ws = socket;
  socket.onopen = () => {
    if (reconnects) {
      log(`reconnected (try ${reconnects})`);
      resync = true;
    }
  };
  socket.onmessage = (ev) => {
    if (typeof ev.data === "string") onEvent(JSON.parse(ev.data));
    else onMedia(ev.data);
  };
  socket.onclose = (ev) => {
    if (ws === socket) ws = null;
    if (state.phase === "ended" || state.phase === "error") return;
    if (ev.code === 1000) return setPhase("ended");
    if (RECONNECT_CODES.has(ev.code) && reconnects < MAX_RECONNECTS) {
      reconnects += 1;
      stats.reconnects += 1;
      setPhase("reconnecting");
      const delay = Math.min(5000, 250 * 2 ** (reconnects - 1));
      log(`connection lost (${ev.code}); reconnecting in ${delay} ms`);
      setTimeout(connect, delay);
      return;
    }
    const reason = stats.lastError ? `${stats.lastError.code}: ${stats.lastError.message}` : `closed ${ev.code}`;
    fail(new Error(reason));
  };
}

function send(message) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(message));
  return true;
}

function onEvent(event) {
  event.receivedAt = Date.now();
  events.push(event);
  if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
  if (event.type !== "chunk") log(describe(event));
  switch (event.type) {
    case "session":
      if (event.state === "queued") setPhase("queued");
      break;
    case "queued":
      stats.queuePosition = event.position;
      setPhase("queued");
      break;
    case "started":
      onStarted(event);
      break;
    case "chunk":
      // Indices only grow within one run of a session; a smaller one right after a
      // reconnect means the session restarted at frame 0 while we were away.
      if (resync && player && event.index < player.lastChunk) restartCounters();
      resync = false;
      reconnects = 0;
      stats.chunks += 1;
      genMeter.add(event.frames);
      if (event.timings) {
        const t = event.timings;
        stats.genMs = (t.denoise_ms || 0) + (t.decode_ms || 0) + (t.encode_ms || 0);
      }
      break;
    case "prompt_applied":
      stats.promptApplied = {
        prompt: event.prompt,
        revision: event.revision,
        transition: event.transition,
        frame: event.frame,
        chunk: event.chunk,
      };
      break;
    case "paused":
      setPhase("paused");
      break;
    case "resumed":
      setPhase("running");
      break;
    case "error":
      stats.lastError = { code: event.code, message: event.message };
      if (event.code === "session_restarted") restartCounters();
      break;
    case "ended":
      state.endReason = event.reason;
      setPhase("ended");
      if (player) player.close();
      break;
    default:
      break;
  }
  render();
}

function onStarted(event) {
  stats.queuePosition = null;
  Object.assign(state, { width: event.width, height: event.height, fps: event.fps });
  state.format = event.format || state.format;
  setPhase("running");
  if (state.format === "jpeg") {
    if (!player) {
      player = new JpegPlayer(ui.canvas, { onFrame: onCanvasFrame, onError: playerError });
      showSurface("canvas");
    }
    player.start(event.fps);
    return;
  }
  if (player) {
    player.changeMime(event.mime);
    state.mime = event.mime;
    return;
  }
  if (!mseSupported(event.mime)) {
    fail(new Error(`this browser cannot play ${event.mime} with Media Source Extensions; choose JPEG`));
    return;
  }
  state.mime = event.mime;
  player = new MsePlayer(ui.video, { onError: playerError });
  showSurface("video");
  player.open(event.mime).catch(playerError);
  watchVideoFrames();
}

function onMedia(buffer) {
  const arrivedAt = performance.now();
  let media;
  try {
    media = parseMedia(buffer);
  } catch (err) {
    log(`bad media message: ${err.message}`);
    return;
  }
  if (!player) return;
  if (media.kind === KIND_INIT) {
    player.appendInit(media.payload);
    return;
  }
  const fresh =
    media.kind === KIND_FRAGMENT ? player.appendFragment(media, arrivedAt) : player.push(media, arrivedAt);
  if (!fresh) return;
  if (nextFrame !== null && media.firstFrame > nextFrame) stats.dropped += media.firstFrame - nextFrame;
  nextFrame = media.firstFrame + media.frameCount;
  stats.framesReceived += media.frameCount;
}

// -- presentation and stats -----------------------------------------------------------------
function watchVideoFrames() {
  const video = ui.video;
  if (typeof video.requestVideoFrameCallback !== "function") return;
  const onFrame = (_now, meta) => {
    shownMeter.add(1);
    stats.framesShown += 1;
    const seg = player && player.segmentAt ? player.segmentAt(meta.mediaTime) : null;
    if (seg) stats.latencyMs = performance.now() - seg.arrivedAt;
    if (player && !player.closed) video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

let lastQuality = null;
function sampleVideoQuality() {
  // Fallback frame counter for browsers without requestVideoFrameCallback.
  if (typeof ui.video.requestVideoFrameCallback === "function" || !ui.video.getVideoPlaybackQuality) return;
  const total = ui.video.getVideoPlaybackQuality().totalVideoFrames;
  if (lastQuality !== null && total > lastQuality) {
    shownMeter.add(total - lastQuality);
    stats.framesShown += total - lastQuality;
  }
  lastQuality = total;
}

function onCanvasFrame(frame) {
  shownMeter.add(1);
  stats.framesShown += 1;
  stats.latencyMs = performance.now() - frame.arrivedAt;
}

function playerError(err) {
  log(`player: ${err.message || err}`);
  stats.lastError = { code: "player", message: String(err.message || err) };
}

function restartCounters() {
  // The session began again at frame 0 (a worker took it over without a snapshot).
  if (player) player.restart();
  nextFrame = null;
}

function closePlayer() {
  if (player) player.close();
  player = null;
}

function showSurface(which) {
  ui.video.hidden = which !== "video";
  ui.canvas.hidden = which !== "canvas";
}

function setPhase(phase) {
  state.phase = phase;
  render();
}

function fail(err) {
  state.error = err instanceof ApiError ? `${err.code}: ${err.message}` : String(err.message || err);
  setPhase("error");
  log(`error: ${state.error}`);
}

function apiKey() {
  const key = ui.apiKey.value.trim();
  if (key) localStorage.setItem("rollcast.apiKey", key);
  else localStorage.removeItem("rollcast.apiKey");
  return key || null;
}

function describe(event) {
  const { type, receivedAt: _r, ...rest } = event;
  return `${type} ${JSON.stringify(rest)}`;
}

function log(text) {
  const line = document.createElement("div");
  line.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  ui.log.prepend(line);
  while (ui.log.childElementCount > 100) ui.log.lastElementChild.remove();
}

function render() {
  renderView(state, stats, ui);
}

setInterval(() => {
  sampleVideoQuality();
  stats.fps = shownMeter.rate();
  stats.genFps = genMeter.rate();
  if (player) {
    stats.lagS = player.lag();
    stats.jumps = player.jumps;
  }
  stats.currentTime = ui.video.currentTime;
  render();
}, 250);

// -- wiring -------------------------------------------------------------------------------
ui.apiKey.value = localStorage.getItem("rollcast.apiKey") || "";
const wanted = new URLSearchParams(location.search).get("format");
if (wanted) ui.format.value = wanted;
ui.start.addEventListener("click", () => start());
ui.stop.addEventListener("click", () => stop());
ui.applyPrompt.addEventListener("click", () => setPrompt().catch(fail));
ui.applySeed.addEventListener("click", () => setSeed().catch(fail));
ui.pause.addEventListener("click", () => (state.phase === "paused" ? resume() : pause()));
ui.prompt.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    if (ui.applyPrompt.disabled) start();
    else setPrompt().catch(fail);
  }
});
window.addEventListener("beforeunload", () => {
  if (ws && !stopping) send({ type: "stop" });
});
setText("stat-mse", state.mseSupported ? "supported" : "not supported (JPEG fallback)");
render();
