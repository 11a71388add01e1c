// Image data URLs for tests: a PNG header of any pixel size (the gateway reads only the header).
const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

// A PNG signature and IHDR chunk for width x height, then `padding` bytes standing in for pixel data.
export function pngDataUrl(width: number, height: number, padding = 64): string {
  const bytes = new Uint8Array(8 + 25 + padding)
  bytes.set(SIGNATURE, 0)
  const view = new DataView(bytes.buffer)
  view.setUint32(8, 13)
  bytes.set([0x49, 0x48, 0x44, 0x52], 12) // IHDR
  view.setUint32(16, width)
  view.setUint32(20, height)
  bytes.set([8, 2, 0, 0, 0], 24) // 8-bit RGB, no interlace
  view.setUint32(29, crc32(bytes.subarray(12, 29)))
  return `data:image/png;base64,${Buffer.from(bytes).toString('base64')}`
}

function crc32(data: Uint8Array): number {
  let c = 0xffffffff
  for (const b of data) {
    c ^= b
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  }
  return (c ^ 0xffffffff) >>> 0
}
