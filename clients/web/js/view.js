// Renders the player's state and statistics into the page (stable element ids, which the
// browser tests read too) and enables the controls that make sense in the current phase.

const LIVE = ["queued", "starting", "running", "paused", "reconnecting"];

export function setText(id, text) {
  const el = document.getElementById(id);
  if (el && el.textContent !== text) el.textContent = text;
}

export function renderView(state, stats, ui) {
  const live = LIVE.includes(state.phase);
  ui.start.disabled = live || state.phase === "creating";
  ui.stop.disabled = !live;
  ui.applyPrompt.disabled = !live;
  ui.applySeed.disabled = !live;
  ui.pause.disabled = !["running", "paused"].includes(state.phase);
  ui.pause.textContent = state.phase === "paused" ? "Resume" : "Pause";
  const detail = state.error || state.endReason;
  setText("stat-state", detail ? `${state.phase} (${detail})` : state.phase);
  setText("stat-session", state.sessionId || "–");
  setText("stat-format", state.format ? `${state.format}${state.mime ? ` ${state.mime}` : ""}` : "–");
  setText("stat-size", state.width ? `${state.width}×${state.height} @ ${state.fps} fps` : "–");
  setText("stat-queue", stats.queuePosition === null ? "–" : String(stats.queuePosition));
  setText("stat-fps", stats.fps.toFixed(1));
  setText("stat-gen-fps", stats.genFps.toFixed(1));
  setText("stat-latency", stats.latencyMs === null ? "–" : `${Math.round(stats.latencyMs)} ms`);
  setText("stat-lag", `${stats.lagS.toFixed(2)} s`);
  setText("stat-frames", `${stats.framesShown} / ${stats.framesReceived}`);
  setText("stat-chunks", String(stats.chunks));
  setText("stat-dropped", String(stats.dropped));
  setText("stat-gen-ms", stats.genMs === null ? "–" : `${Math.round(stats.genMs)} ms`);
  setText("stat-reconnects", String(stats.reconnects));
  const p = stats.promptApplied;
  setText("stat-prompt-applied", p ? `#${p.revision} at frame ${p.frame} (${p.transition}): ${p.prompt}` : "–");
  ui.status.dataset.phase = state.phase;
}
