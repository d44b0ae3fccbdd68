// Plays the fMP4 stream in a <video> through Media Source Extensions.
//
// * One SourceBuffer, created with the `mime` of the `started` event, in "sequence" mode so
//   that fragments are laid end to end: a fragment lost to backpressure or a reconnect
//   leaves no hole for playback to stall at.
// * Appends go through a queue, one operation at a time (`updateend` starts the next).
// * The init segment is appended first, and again whenever a new one arrives (a reconnect
//   sends it again; a failover may send a different one, with `changeType` if the codec
//   string changed).
// * Live edge: the server paces generation to real time, keeping about 1 s (+ one chunk, 0.75 s)
//   of video ahead of playback, so a buffer of up to ~2 s is normal and is played through.
//   Beyond `catchUpS` the player plays 10 % faster; beyond `maxLagS` (after a stall or a
//   background tab) it jumps to `targetLagS` before the end.
// * Trimming: data more than `keepBehindS` behind the playhead is removed, so a session
//   that runs for hours keeps a bounded buffer (and QuotaExceededError forces a trim).

const TICK_MS = 200;

export class MsePlayer {
  constructor(video, options = {}) {
    this.video = video;
    this.maxLagS = options.maxLagS ?? 3.0;
    this.catchUpS = options.catchUpS ?? 2.0;
    this.targetLagS = options.targetLagS ?? 0.5;
    this.keepBehindS = options.keepBehindS ?? 10;
    this.onError = options.onError ?? (() => {});
    this.mediaSource = null;
    this.sourceBuffer = null;
    this.mime = null;
    this.queue = [];
    this.segments = []; // {chunk, firstFrame, frameCount, start, end, arrivedAt}
    this.lastChunk = -1;
    this.jumps = 0;
    this.appended = 0;
    this.timer = null;
    this.objectUrl = null;
    this.closed = false;
  }

  /** Attach a MediaSource to the video and create the SourceBuffer for `mime`. */
  async open(mime) {
    this.mime = mime;
    this.mediaSource = new MediaSource();
    this.objectUrl = URL.createObjectURL(this.mediaSource);
    this.video.src = this.objectUrl;
    await new Promise((resolve) => this.mediaSource.addEventListener("sourceopen", resolve, { once: true }));
    this.sourceBuffer = this.mediaSource.addSourceBuffer(mime);
    this.sourceBuffer.mode = "sequence";
    this.sourceBuffer.addEventListener("updateend", () => this._onUpdateEnd());
    this.sourceBuffer.addEventListener("error", () => this.onError(new Error("SourceBuffer error")));
    this.timer = setInterval(() => this._tick(), TICK_MS);
    this._pump();
  }

  /** A (new) stream description: switch the SourceBuffer's type if the codec changed. */
  changeMime(mime) {
    if (!mime || mime === this.mime) return;
    this.queue.push({ op: "type", mime });
    this._pump();
  }

  appendInit(payload) {
    this.queue.push({ op: "append", data: payload, meta: null });
    this._pump();
  }

  /** Queue one fragment; `media` is the parsed header, `arrivedAt` performance.now(). */
  appendFragment(media, arrivedAt) {
    if (media.chunk <= this.lastChunk) return false; // a repeat after a reconnect
    this.lastChunk = media.chunk;
    const meta = { chunk: media.chunk, firstFrame: media.firstFrame, frameCount: media.frameCount, arrivedAt };
    this.queue.push({ op: "append", data: media.payload, meta });
    this._pump();
    return true;
  }

  /** The session restarted at frame 0: accept chunk indices from 0 again ("sequence" mode
   * lays the new fragments after the old ones). */
  restart() {
    this.lastChunk = -1;
  }

  /** Seconds of video buffered ahead of the playhead. */
  lag() {
    const b = this.video.buffered;
    return b.length ? Math.max(0, b.end(b.length - 1) - this.video.currentTime) : 0;
  }

  /** The appended fragment that holds media time `t` (for latency), or null. */
  segmentAt(t) {
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const s = this.segments[i];
      if (t >= s.start - 1e-3 && t < s.end + 1e-3) return s;
    }
    return null;
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    this.queue = [];
    try {
      if (this.mediaSource && this.mediaSource.readyState === "open" && !this.sourceBuffer?.updating) {
        this.mediaSource.endOfStream();
      }
    } catch {
      /* already closed */
    }
  }

  _bufferedEnd() {
    const b = this.sourceBuffer.buffered;
    return b.length ? b.end(b.length - 1) : null;
  }

  _pump() {
    const sb = this.sourceBuffer;
    if (this.closed || !sb || sb.updating || !this.queue.length) return;
    if (this.mediaSource.readyState !== "open") return;
    const item = this.queue[0];
    try {
      if (item.op === "append") {
        item.before = this._bufferedEnd();
        sb.appendBuffer(item.data);
      } else if (item.op === "remove") {
        sb.remove(item.start, item.end);
      } else if (item.op === "type") {
        this.queue.shift();
        if (typeof sb.changeType === "function") sb.changeType(item.mime);
        this.mime = item.mime;
        this._pump();
      }
    } catch (err) {
      if (err.name === "QuotaExceededError" && item.op === "append") {
        // Full: drop everything before the playhead minus a second, then retry the append.
        const t = this.video.currentTime;
        const start = sb.buffered.length ? sb.buffered.start(0) : 0;
        if (t - 1 > start) this.queue.unshift({ op: "remove", start, end: t - 1 });
        else this.queue.shift(); // nothing to free: lose this fragment rather than stall
        setTimeout(() => this._pump(), 0);
        return;
      }
      this.queue.shift();
      this.onError(err);
      setTimeout(() => this._pump(), 0);
    }
  }

  _onUpdateEnd() {
    const item = this.queue.shift();
    if (item && item.op === "append") {
      this.appended += 1;
      const end = this._bufferedEnd();
      if (item.meta && end !== null) {
        const b = this.sourceBuffer.buffered;
        const start = item.before !== null && item.before !== undefined ? item.before : b.start(0);
        this.segments.push({ ...item.meta, start, end });
        if (this.segments.length > 256) this.segments.splice(0, this.segments.length - 256);
        this._startPlayback();
      }
    }
    this._pump();
  }

  _startPlayback() {
    const v = this.video;
    const b = v.buffered;
    if (!b.length) return;
    if (v.currentTime < b.start(0)) v.currentTime = b.start(0);
    if (v.paused) v.play().catch(() => {});
  }

  _tick() {
    const v = this.video;
    const b = v.buffered;
    if (this.closed || !b.length) return;
    const end = b.end(b.length - 1);
    const lag = end - v.currentTime;
    if (lag > this.maxLagS || v.currentTime < b.start(0)) {
      v.currentTime = Math.max(b.start(0), end - this.targetLagS);
      this.jumps += 1;
    } else {
      v.playbackRate = lag > this.catchUpS ? 1.1 : 1.0;
    }
    if (v.paused && lag > 0.05) v.play().catch(() => {});
    const start = b.start(0);
    const behind = v.currentTime - start;
    const trimming = this.queue.some((q) => q.op === "remove");
    if (behind > this.keepBehindS + 2 && !trimming) {
      this.queue.push({ op: "remove", start, end: v.currentTime - this.keepBehindS });
      this._pump();
    }
  }
}

/** Can this browser play `mime` (or Rollcast's usual H.264 type) through MSE? */
export function mseSupported(mime = 'video/mp4; codecs="avc1.42C01E"') {
  return typeof window.MediaSource === "function" && MediaSource.isTypeSupported(mime);
}
