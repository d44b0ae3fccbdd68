// Binary media messages (docs/protocol.md, "Binary media messages"): a 16-byte header
// (magic "RC", version 1, kind, chunk index u32, first frame u32, frame count u16, reserved)
// followed by the payload. All integers are big-endian (DataView's default).

export const KIND_INIT = 1;
export const KIND_FRAGMENT = 2;
export const KIND_JPEG = 3;
export const HEADER_SIZE = 16;

/** Parse one binary message; throws on anything that is not a version-1 media message. */
export function parseMedia(buffer) {
  if (buffer.byteLength < HEADER_SIZE) throw new Error(`media message too short (${buffer.byteLength} B)`);
  const v = new DataView(buffer);
  if (v.getUint8(0) !== 0x52 || v.getUint8(1) !== 0x43) throw new Error("bad media magic");
  if (v.getUint8(2) !== 1) throw new Error(`unsupported media version ${v.getUint8(2)}`);
  const kind = v.getUint8(3);
  if (kind < KIND_INIT || kind > KIND_JPEG) throw new Error(`unknown media kind ${kind}`);
  if (v.getUint16(14) !== 0) throw new Error("reserved media header bytes are not zero");
  return {
    kind,
    chunk: v.getUint32(4),
    firstFrame: v.getUint32(8),
    frameCount: v.getUint16(12),
    payload: new Uint8Array(buffer, HEADER_SIZE),
  };
}
