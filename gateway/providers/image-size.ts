// Reads an image's pixel size from the header of its base64 text, decoding only the bytes the header needs.
//
// Budget reservation prices images by width and height, and clients send them as base64 inside JSON,
// often megabytes of it. Decoding the whole payload per request would cost O(image) time and memory
// for a few header bytes, so bytes are decoded in small windows at computed offsets (4 base64
// characters hold 3 bytes, so byte b starts in the quad at character floor(b / 3) * 4).
//
// The format is sniffed from the bytes, not taken from the data URL's media type, which the client
// chose. Sizes are as stored: JPEG EXIF orientation is not applied, because the providers' pricing
// rules (tiles, pixel area) give the same price for w×h and h×w.

export interface ImageSize {
  width: number
  height: number
}

// Beyond this a "size" is a hostile or corrupt header, not an image a provider would accept.
const MAX_DIMENSION = 100_000
// Fewer real segments precede a JPEG's frame header (even with many ICC-profile chunks); past this
// the walk is being stalled on purpose.
const MAX_JPEG_STEPS = 1_000
// Fill bytes in a row: a few in real files; thousands are only ever a way to make the walk long.
const MAX_JPEG_FILL = 32
// Decoded per window: enough for every fixed header and several JPEG markers at once.
const WINDOW_BYTES = 64
// Media types with parameters stay short; never scan a multi-megabyte string for the comma.
const MAX_DATA_URL_PREFIX = 1_024

type ByteReader = (offset: number, length: number) => Uint8Array | undefined
type SizeReader = (read: ByteReader) => ImageSize | undefined

// The pixel size from the image's header, or undefined when the format is unknown, the header is
// malformed or truncated. Takes the bare base64 payload or a whole `data:...;base64,` URL. Never
// throws, whatever the input.
export function readImageSize(base64: string): ImageSize | undefined {
  // Typed as string, but it comes from untrusted JSON through casts.
  if (typeof base64 !== 'string') return undefined
  const start = findPayloadStart(base64)
  if (start === undefined) return undefined
  const read = openBase64(base64, start)
  for (const readSize of SIZE_READERS) {
    const size = readSize(read)
    if (size) return size
  }
  return undefined
}

function findPayloadStart(text: string): number | undefined {
  if (!text.startsWith('data:')) return 0
  const end = Math.min(text.length, MAX_DATA_URL_PREFIX)
  for (let i = 5; i < end; i++) {
    if (text.charCodeAt(i) !== 44 /* , */) continue
    return text.slice(0, i).toLowerCase().endsWith(';base64') ? i + 1 : undefined
  }
  return undefined
}

const SEXTETS = (() => {
  const table = new Int8Array(128).fill(-1)
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i
  return table
})()

function sextetAt(text: string, i: number): number {
  if (i >= text.length) return -1
  const code = text.charCodeAt(i)
  return code < 128 ? (SEXTETS[code] ?? -1) : -1
}

// A reader of decoded bytes by offset, keeping the last decoded window so that neighbouring reads
// (a marker, then its length) cost nothing. Bytes at or after the end, a padding `=`, or any
// character outside the base64 alphabet are unavailable: a read touching them returns undefined.
function openBase64(text: string, start: number): ByteReader {
  let windowOffset = 0
  let window: Uint8Array = new Uint8Array(0)
  return (offset, length) => {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0) return undefined
    if (offset < windowOffset || offset + length > windowOffset + window.length) {
      windowOffset = offset - (offset % 3)
      const quadStart = start + (windowOffset / 3) * 4
      window = decodeWindow(text, quadStart, Math.max(WINDOW_BYTES, offset - windowOffset + length))
    }
    const from = offset - windowOffset
    return from + length <= window.length ? window.subarray(from, from + length) : undefined
  }
}

// Decodes up to `maxBytes` from the quad at `charStart`, stopping before the first byte whose
// characters are missing or invalid. Each byte depends only on two sextets, so that is exact.
function decodeWindow(text: string, charStart: number, maxBytes: number): Uint8Array {
  const out = new Uint8Array(Math.ceil(maxBytes / 3) * 3)
  let n = 0
  for (let i = charStart; n < maxBytes; i += 4) {
    const a = sextetAt(text, i)
    const b = sextetAt(text, i + 1)
    if (a < 0 || b < 0) break
    out[n++] = (a << 2) | (b >> 4)
    const c = sextetAt(text, i + 2)
    if (c < 0) break
    out[n++] = ((b & 0x0f) << 4) | (c >> 2)
    const d = sextetAt(text, i + 3)
    if (d < 0) break
    out[n++] = ((c & 0x03) << 6) | d
  }
  return out.subarray(0, Math.min(n, maxBytes))
}

function toSize(width: number, height: number): ImageSize | undefined {
  const fits = (v: number) => Number.isInteger(v) && v > 0 && v <= MAX_DIMENSION
  return fits(width) && fits(height) ? { width, height } : undefined
}

function hasBytes(bytes: Uint8Array, offset: number, expected: readonly number[]): boolean {
  return expected.every((v, i) => bytes[offset + i] === v)
}

function hasAscii(bytes: Uint8Array, offset: number, expected: string): boolean {
  return hasBytes(bytes, offset, [...expected].map((ch) => ch.charCodeAt(0)))
}

// Unsigned little/big-endian integers; callers have read enough bytes, `?? 0` only satisfies the index type.
function readUintLe(bytes: Uint8Array, offset: number, size: number): number {
  let v = 0
  for (let i = size - 1; i >= 0; i--) v = v * 256 + (bytes[offset + i] ?? 0)
  return v
}

function readUintBe(bytes: Uint8Array, offset: number, size: number): number {
  let v = 0
  for (let i = 0; i < size; i++) v = v * 256 + (bytes[offset + i] ?? 0)
  return v
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

// The IHDR chunk must come first: signature, length, "IHDR", width, height (big-endian).
function readPngSize(read: ByteReader): ImageSize | undefined {
  const h = read(0, 24)
  if (!h || !hasBytes(h, 0, PNG_SIGNATURE) || !hasAscii(h, 12, 'IHDR')) return undefined
  return toSize(readUintBe(h, 16, 4), readUintBe(h, 20, 4))
}

// The logical screen descriptor follows the 6-byte signature: width, height (little-endian).
function readGifSize(read: ByteReader): ImageSize | undefined {
  const h = read(0, 10)
  if (!h || !(hasAscii(h, 0, 'GIF87a') || hasAscii(h, 0, 'GIF89a'))) return undefined
  return toSize(readUintLe(h, 6, 2), readUintLe(h, 8, 2))
}

// BITMAPCOREHEADER (12 bytes) has 16-bit sizes; every later DIB header has signed 32-bit ones,
// with a negative height meaning a top-down bitmap.
function readBmpSize(read: ByteReader): ImageSize | undefined {
  const h = read(0, 18)
  if (!h || !hasAscii(h, 0, 'BM')) return undefined
  const dibSize = readUintLe(h, 14, 4)
  if (dibSize === 12) {
    const core = read(18, 4)
    return core && toSize(readUintLe(core, 0, 2), readUintLe(core, 2, 2))
  }
  if (dibSize < 16) return undefined
  const info = read(18, 8)
  if (!info) return undefined
  const view = new DataView(info.buffer, info.byteOffset, info.byteLength)
  return toSize(view.getInt32(0, true), Math.abs(view.getInt32(4, true)))
}

// RIFF header, then the first chunk says which of the three bitstreams this is; its header sits at byte 20.
function readWebpSize(read: ByteReader): ImageSize | undefined {
  const h = read(0, 16)
  if (!h || !hasAscii(h, 0, 'RIFF') || !hasAscii(h, 8, 'WEBP')) return undefined
  if (hasAscii(h, 12, 'VP8 ')) {
    // Lossy: a 3-byte frame tag (bit 0 clear on a key frame), start code, then 14-bit sizes with 2 scale bits.
    const v = read(20, 10)
    if (!v || ((v[0] ?? 1) & 1) === 1 || !hasBytes(v, 3, [0x9d, 0x01, 0x2a])) return undefined
    return toSize(readUintLe(v, 6, 2) & 0x3fff, readUintLe(v, 8, 2) & 0x3fff)
  }
  if (hasAscii(h, 12, 'VP8L')) {
    // Lossless: signature 0x2f, then width-1 and height-1 in 14 bits each, then a 3-bit version that must be 0.
    const v = read(20, 5)
    if (!v || v[0] !== 0x2f) return undefined
    const bits = readUintLe(v, 1, 4)
    if (bits >>> 29 !== 0) return undefined
    return toSize((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1)
  }
  if (hasAscii(h, 12, 'VP8X')) {
    // Extended: flags and 3 reserved bytes, then canvas width-1 and height-1 in 24 bits each.
    const v = read(24, 6)
    return v && toSize(readUintLe(v, 0, 3) + 1, readUintLe(v, 3, 3) + 1)
  }
  return undefined
}

// SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc
}

// Markers with no length field: TEM, RST0..RST7, and a stray SOI.
function isStandalone(marker: number): boolean {
  return marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)
}

// Walks the segments after SOI, jumping over each by its length (APPn/EXIF blocks can be 64 KB each
// and there can be several) so only marker headers are decoded. Gives up at SOS/EOI before a frame
// header, on anything that is not a marker, after MAX_JPEG_STEPS markers or fill bytes, and after
// MAX_JPEG_FILL fill bytes in a row.
function readJpegSize(read: ByteReader): ImageSize | undefined {
  const soi = read(0, 2)
  if (!soi || !hasBytes(soi, 0, [0xff, 0xd8])) return undefined
  let pos = 2
  let fill = 0
  for (let step = 0; step < MAX_JPEG_STEPS; step++) {
    const m = read(pos, 2)
    if (!m || m[0] !== 0xff) return undefined
    const marker = m[1] ?? 0
    if (marker === 0xff) {
      if (++fill > MAX_JPEG_FILL) return undefined
      pos += 1 // fill byte: the marker starts at the next 0xFF
      continue
    }
    fill = 0
    if (isStandalone(marker)) {
      pos += 2
      continue
    }
    if (marker === 0x00 || marker === 0xd9 || marker === 0xda) return undefined
    const segment = read(pos + 2, isStartOfFrame(marker) ? 7 : 2)
    if (!segment) return undefined
    const length = readUintBe(segment, 0, 2)
    if (isStartOfFrame(marker)) {
      // Length, precision, height, width; a height of 0 (defined later by DNL) is rejected by toSize.
      return length >= 8 ? toSize(readUintBe(segment, 5, 2), readUintBe(segment, 3, 2)) : undefined
    }
    if (length < 2) return undefined
    pos += 2 + length
  }
  return undefined
}

const SIZE_READERS: readonly SizeReader[] = [readPngSize, readJpegSize, readGifSize, readWebpSize, readBmpSize]
