// Live statistics of the player. Definitions (also in docs/operations.md):
//
// * fps         frames actually presented per second by the <video> (counted with
//               requestVideoFrameCallback, or getVideoPlaybackQuality() where that is
//               missing) or drawn on the canvas in JPEG mode; over the last 2 s.
// * gen fps     frames the server generated per second, from `chunk` events (last 5 s).
// * latency     now − arrival time of the chunk whose frame is on screen, in ms: how long
//               the frame being shown has been in the browser (a live viewer that keeps up
//               sees at most about one chunk's duration plus the small buffer).
// * lag         seconds of video buffered ahead of the playhead (what live-edge chasing
//               keeps under 1.5 s).
// * dropped     frames that never arrived (holes in the frame indices: backpressure or a
//               reconnect).

export class RateMeter {
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.samples = []; // [time, count]
  }

  add(count = 1, t = performance.now()) {
    this.samples.push([t, count]);
    this._expire(t);
  }

  rate(t = performance.now()) {
    this._expire(t);
    if (!this.samples.length) return 0;
    const total = this.samples.reduce((sum, [, n]) => sum + n, 0);
    const span = Math.max(t - this.samples[0][0], this.windowMs / 4);
    return (total * 1000) / Math.max(span, 1);
  }

  _expire(t) {
    while (this.samples.length && t - this.samples[0][0] > this.windowMs) this.samples.shift();
  }
}

export function newStats() {
  return {
    fps: 0,
    genFps: 0,
    latencyMs: null,
    lagS: 0,
    framesReceived: 0,
    framesShown: 0,
    chunks: 0,
    dropped: 0,
    queuePosition: null,
    genMs: null,
    promptApplied: null,
    reconnects: 0,
    jumps: 0,
    currentTime: 0,
    lastError: null,
  };
}
