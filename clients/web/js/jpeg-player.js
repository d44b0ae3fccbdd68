// JPEG fallback: draws one JPEG per frame on a <canvas>, paced at the stream's fps.
//
// Frames are decoded off the main thread with createImageBitmap and shown in order on a
// fixed clock; if more than `maxLagS` of frames wait, the player skips to `targetLagS`
// behind the newest (the same live-edge rule as the MSE player).

export class JpegPlayer {
  constructor(canvas, options = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.fps = options.fps || 16;
    this.maxLagS = options.maxLagS ?? 1.5;
    this.targetLagS = options.targetLagS ?? 0.25;
    this.onFrame = options.onFrame ?? (() => {});
    this.onError = options.onError ?? (() => {});
    this.frames = []; // {bitmap, firstFrame, chunk, arrivedAt}
    this.lastFrame = -1;
    this.lastChunk = -1;
    this.shown = 0;
    this.jumps = 0;
    this.timer = null;
    this.pending = Promise.resolve();
  }

  start(fps) {
    if (fps) this.fps = fps;
    clearInterval(this.timer);
    this.timer = setInterval(() => this._draw(), 1000 / this.fps);
  }

  /** Queue one JPEG message (decoding keeps message order). */
  push(media, arrivedAt) {
    if (media.firstFrame <= this.lastFrame) return false;
    this.lastFrame = media.firstFrame;
    this.lastChunk = media.chunk;
    const blob = new Blob([media.payload], { type: "image/jpeg" });
    this.pending = this.pending
      .then(() => createImageBitmap(blob))
      .then((bitmap) => this.frames.push({ bitmap, frame: media.firstFrame, chunk: media.chunk, arrivedAt }))
      .catch((err) => this.onError(err));
    return true;
  }

  /** The session restarted at frame 0: accept frame indices from 0 again. */
  restart() {
    this.lastFrame = -1;
  }

  /** Seconds of frames waiting to be shown. */
  lag() {
    return this.frames.length / this.fps;
  }

  close() {
    clearInterval(this.timer);
    for (const f of this.frames) f.bitmap.close();
    this.frames = [];
  }

  _draw() {
    if (!this.frames.length) return;
    if (this.frames.length / this.fps > this.maxLagS) {
      const keep = Math.max(1, Math.round(this.targetLagS * this.fps));
      for (const f of this.frames.splice(0, this.frames.length - keep)) f.bitmap.close();
      this.jumps += 1;
    }
    const f = this.frames.shift();
    if (this.canvas.width !== f.bitmap.width || this.canvas.height !== f.bitmap.height) {
      this.canvas.width = f.bitmap.width;
      this.canvas.height = f.bitmap.height;
    }
    this.ctx.drawImage(f.bitmap, 0, 0);
    f.bitmap.close();
    this.shown += 1;
    this.onFrame(f);
  }
}
