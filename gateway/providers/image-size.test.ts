// Tests readImageSize on images built byte by byte here: real headers, truncations, garbage and hostile inputs.
import { describe, expect, it } from 'bun:test'
import { deflateSync } from 'node:zlib'
import { readImageSize } from './image-size.ts'

const toBase64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64')
const toDataUrl = (mime: string, bytes: Uint8Array) => `data:${mime};base64,${toBase64(bytes)}`
const ascii = (s: string) => [...s].map((ch) => ch.charCodeAt(0))
const u16be = (v: number) => [(v >> 8) & 0xff, v & 0xff]
const u16le = (v: number) => [v & 0xff, (v >> 8) & 0xff]
const u24le = (v: number) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff]
const u32be = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]
const u32le = (v: number) => [...u32be(v)].reverse()
const concat = (...parts: ArrayLike<number>[]) => Uint8Array.from(parts.flatMap((p) => Array.from(p)))

// A seeded generator, so a failing fuzz case can be replayed.
function createRandom(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

function pngChunk(type: string, data: Uint8Array): number[] {
  const body = concat(ascii(type), data)
  return [...u32be(data.length), ...body, ...u32be(Bun.hash.crc32(body))]
}

function buildPngHeader(width: number, height: number): Uint8Array {
  const ihdr = concat(u32be(width), u32be(height), [8, 0, 0, 0, 0]) // 8-bit greyscale
  return concat([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], pngChunk('IHDR', ihdr))
}

function buildPng(width: number, height: number): Uint8Array {
  const rows = new Uint8Array((width + 1) * height) // filter byte 0, black pixels
  return concat(buildPngHeader(width, height), pngChunk('IDAT', deflateSync(rows)), pngChunk('IEND', new Uint8Array(0)))
}

// A 2-colour screen of width×height holding one 1×1 image.
function buildGif(width: number, height: number, version = '89a'): Uint8Array {
  return concat(ascii(`GIF${version}`), u16le(width), u16le(height), [0x80, 0, 0], [0, 0, 0, 255, 255, 255],
    [0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0], [2, 2, 0x44, 0x01, 0], [0x3b])
}

function jpegSegment(marker: number, payloadLength: number, fill = 0x41): Uint8Array {
  const out = new Uint8Array(4 + payloadLength).fill(fill)
  out.set([0xff, marker, ...u16be(payloadLength + 2)])
  return out
}

const JFIF = concat([0xff, 0xe0], u16be(16), ascii('JFIF\0'), [1, 1, 0, 0, 1, 0, 1, 0, 0])

// SOI, JFIF, the given segments, DQT, the frame header, a minimal DHT and SOS, EOI.
function buildJpeg(width: number, height: number, opts: { sof?: number; before?: Uint8Array[] } = {}): Uint8Array {
  const sof = concat([0xff, opts.sof ?? 0xc0], u16be(17), [8], u16be(height), u16be(width), [3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
  const dqt = concat([0xff, 0xdb], u16be(67), [0], new Uint8Array(64).fill(1))
  const dht = concat([0xff, 0xc4], u16be(20), [0], [1], new Uint8Array(15), [0])
  const sos = concat([0xff, 0xda], u16be(12), [3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0], [0x12, 0x34])
  return concat([0xff, 0xd8], JFIF, ...(opts.before ?? []), dqt, sof, dht, sos, [0xff, 0xd9])
}

function buildRiff(chunkType: string, chunk: number[]): Uint8Array {
  const body = concat(ascii('WEBP'), ascii(chunkType), u32le(chunk.length), chunk, chunk.length % 2 ? [0] : [])
  return concat(ascii('RIFF'), u32le(body.length), body)
}

const buildWebpLossy = (w: number, h: number) =>
  buildRiff('VP8 ', [0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, ...u16le(w), ...u16le(h), 0x00, 0x00, 0x00])
const buildWebpLossless = (w: number, h: number) => {
  const bits = ((w - 1) | ((h - 1) << 14) | (1 << 28)) >>> 0 // alpha hint set, version 0
  return buildRiff('VP8L', [0x2f, ...u32le(bits), 0x00, 0x00])
}
const buildWebpExtended = (w: number, h: number) => buildRiff('VP8X', [0x10, 0, 0, 0, ...u24le(w - 1), ...u24le(h - 1)])

function buildBmp(width: number, height: number, dibSize: 12 | 40 = 40): Uint8Array {
  const dib = dibSize === 12
    ? concat(u32le(12), u16le(width), u16le(height), u16le(1), u16le(24))
    : concat(u32le(40), u32le(width), u32le(height >>> 0), u16le(1), u16le(24), new Uint8Array(24))
  const pixels = new Uint8Array(Math.ceil((Math.abs(width) * 3) / 4) * 4 * Math.abs(height))
  return concat(ascii('BM'), u32le(14 + dib.length + pixels.length), [0, 0, 0, 0], u32le(14 + dib.length), dib, pixels)
}

// Each fixture with the number of leading bytes its size is read from.
const FIXTURES: { name: string; bytes: Uint8Array; headerBytes: number; size: { width: number; height: number } }[] = [
  { name: 'PNG', bytes: buildPng(33, 17), headerBytes: 24, size: { width: 33, height: 17 } },
  { name: 'GIF89a', bytes: buildGif(640, 480), headerBytes: 10, size: { width: 640, height: 480 } },
  { name: 'GIF87a', bytes: buildGif(2, 4_464, '87a'), headerBytes: 10, size: { width: 2, height: 4_464 } },
  { name: 'baseline JPEG', bytes: buildJpeg(1024, 768), headerBytes: 2 + 18 + 69 + 9, size: { width: 1024, height: 768 } },
  { name: 'WebP VP8', bytes: buildWebpLossy(550, 368), headerBytes: 30, size: { width: 550, height: 368 } },
  { name: 'WebP VP8L', bytes: buildWebpLossless(386, 395), headerBytes: 25, size: { width: 386, height: 395 } },
  { name: 'WebP VP8X', bytes: buildWebpExtended(16_000, 9), headerBytes: 30, size: { width: 16_000, height: 9 } },
  { name: 'BMP', bytes: buildBmp(5, -3), headerBytes: 26, size: { width: 5, height: 3 } },
  { name: 'BMP core header', bytes: buildBmp(7, 2, 12), headerBytes: 22, size: { width: 7, height: 2 } },
]

describe('readImageSize', () => {
  for (const f of FIXTURES) {
    it(`reads the size of a ${f.name} from its base64 and from its data URL`, () => {
      expect(readImageSize(toBase64(f.bytes))).toEqual(f.size)
      expect(readImageSize(toDataUrl('application/octet-stream', f.bytes))).toEqual(f.size)
    })

    it(`returns undefined for a ${f.name} cut anywhere inside its header`, () => {
      for (let n = 0; n < f.headerBytes; n++) expect(readImageSize(toBase64(f.bytes.subarray(0, n)))).toBeUndefined()
      expect(readImageSize(toBase64(f.bytes.subarray(0, f.headerBytes)))).toEqual(f.size)
    })

    it(`never throws on any character prefix of a ${f.name}`, () => {
      const text = toBase64(f.bytes)
      for (let n = 0; n <= Math.min(text.length, 400); n++) {
        const size = readImageSize(text.slice(0, n))
        if (size) expect(size).toEqual(f.size)
      }
    })
  }

  it('skips APP1 and APP2 blocks of 70 KB in total to reach SOF0', () => {
    const jpeg = buildJpeg(4032, 3024, { before: [jpegSegment(0xe1, 65_533), jpegSegment(0xe2, 5_000)] })
    expect(jpeg.length).toBeGreaterThan(70_000)
    expect(readImageSize(toDataUrl('image/jpeg', jpeg))).toEqual({ width: 4032, height: 3024 })
  })

  it('reads a progressive SOF2 frame reached through fill bytes', () => {
    const fill = new Uint8Array(5).fill(0xff)
    const jpeg = buildJpeg(300, 200, { sof: 0xc2, before: [fill, jpegSegment(0xfe, 3), fill] })
    expect(readImageSize(toBase64(jpeg))).toEqual({ width: 300, height: 200 })
  })

  it('takes a few fill bytes in a row and gives up on a long run of them', () => {
    const run = (n: number) => buildJpeg(300, 200, { before: [new Uint8Array(n).fill(0xff)] })
    expect(readImageSize(toBase64(run(31)))).toEqual({ width: 300, height: 200 })
    expect(readImageSize(toBase64(run(1002)))).toBeUndefined()
  })

  it('does not mistake DHT, JPG or DAC for a frame header', () => {
    const lookalikes = [0xc4, 0xc8, 0xcc].map((m) => concat([0xff, m], u16be(11), [8], u16be(9), u16be(9), [1, 1, 0x11, 0]))
    expect(readImageSize(toBase64(buildJpeg(12, 34, { before: lookalikes })))).toEqual({ width: 12, height: 34 })
  })

  it('decodes none of the skipped JPEG segments: a 4 MB data URL with junk inside them still reads', () => {
    const segments = Array.from({ length: 46 }, () => jpegSegment(0xe1, 65_533))
    const jpeg = buildJpeg(800, 600, { before: segments })
    const chars = toBase64(jpeg).split('')
    // Overwrite every quad lying wholly inside a segment payload, away from its header's window.
    let offset = 2 + JFIF.length
    for (const s of segments) {
      const from = Math.ceil((offset + 4 + 200) / 3)
      const to = Math.floor((offset + s.length - 200) / 3)
      for (let c = from * 4; c < to * 4; c++) chars[c] = '!'
      offset += s.length
    }
    const url = `data:image/jpeg;base64,${chars.join('')}`
    expect(url.length).toBeGreaterThan(4_000_000)
    expect(readImageSize(url)).toEqual({ width: 800, height: 600 })
  })

  it('reads the header of a 4 MB PNG data URL', () => {
    const random = createRandom(7)
    const tail = Uint8Array.from({ length: 3_000_000 }, () => Math.floor(random() * 256))
    const url = toDataUrl('image/png', concat(buildPngHeader(4096, 4096), tail))
    expect(url.length).toBeGreaterThan(4_000_000)
    expect(readImageSize(url)).toEqual({ width: 4096, height: 4096 })
  })

  it('gives up on a JPEG stalling with thousands of tiny markers before its frame', () => {
    const tiny = Array.from({ length: 5_000 }, () => jpegSegment(0xfe, 0))
    expect(readImageSize(toBase64(buildJpeg(10, 10, { before: tiny })))).toBeUndefined()
  })

  it('still reads a JPEG with a few hundred segments before its frame', () => {
    const icc = Array.from({ length: 300 }, () => jpegSegment(0xe2, 20))
    expect(readImageSize(toBase64(buildJpeg(10, 20, { before: icc })))).toEqual({ width: 10, height: 20 })
  })

  it('gives up on a JPEG of a megabyte of fill bytes', () => {
    const fill = new Uint8Array(1_000_000).fill(0xff)
    expect(readImageSize(toBase64(buildJpeg(10, 10, { before: [fill] })))).toBeUndefined()
  })

  it('returns undefined for JPEG segments that are broken or end the header early', () => {
    const soi = [0xff, 0xd8]
    const cases = [
      concat(soi, [0xff, 0xe1], u16be(60_000), new Uint8Array(100)), // length points past the end
      concat(soi, [0xff, 0xe1], u16be(1), new Uint8Array(20)), // length shorter than itself
      concat(soi, [0xff, 0xda], u16be(8), new Uint8Array(20)), // scan before any frame
      concat(soi, [0xff, 0xd9]), // end of image before any frame
      concat(soi, [0x12, 0x34, 0x56, 0x78]), // not a marker
      concat(soi, [0xff, 0xc0], u16be(5), [8, 0, 10, 0, 10]), // frame header too short
      buildJpeg(640, 0), // height deferred to a DNL segment
    ]
    for (const bytes of cases) expect(readImageSize(toBase64(bytes))).toBeUndefined()
  })

  it('rejects zero and absurd dimensions', () => {
    expect(readImageSize(toBase64(buildPngHeader(0, 10)))).toBeUndefined()
    expect(readImageSize(toBase64(buildPngHeader(100_001, 10)))).toBeUndefined()
    expect(readImageSize(toBase64(buildPngHeader(0xffffffff, 0xffffffff)))).toBeUndefined()
    expect(readImageSize(toBase64(buildWebpExtended(1 << 24, 1)))).toBeUndefined()
    expect(readImageSize(toBase64(buildBmp(-5, 3)))).toBeUndefined()
    expect(readImageSize(toBase64(buildPngHeader(100_000, 1)))).toEqual({ width: 100_000, height: 1 })
  })

  it('reads a header ending in padded and unpadded final quads', () => {
    const gif = buildGif(300, 1).subarray(0, 10)
    const padded = toBase64(gif)
    expect(padded.endsWith('==')).toBe(true)
    expect(readImageSize(padded)).toEqual({ width: 300, height: 1 })
    expect(readImageSize(padded.replace(/=+$/, ''))).toEqual({ width: 300, height: 1 })
  })

  it('returns undefined for garbage, empty and non-base64 input', () => {
    const png = toBase64(buildPng(4, 4))
    const inputs = [
      '', '=', '====', 'data:', 'data:image/png;base64,', 'data:image/png,%89PNG', `data:image/png${png}`,
      'not base64 at all!', '\u00e9\u00e9\u00e9\u00e9', '\ud800\ud800', png.slice(0, 8) + ' \n' + png.slice(8),
      png.slice(0, 12) + '=' + png.slice(13), png.replace(/[A-Z]/g, '-'), 'A'.repeat(100_000),
      toBase64(concat(ascii('RIFF'), u32le(20), ascii('WEBPVP8Z'), new Uint8Array(20))),
      toBase64(concat(ascii('BM'), new Uint8Array(12), u32le(8), new Uint8Array(8))),
    ]
    for (const input of inputs) expect(readImageSize(input)).toBeUndefined()
    expect(readImageSize(`data:,${'A'.repeat(2_000)}`)).toBeUndefined()
    expect(readImageSize(123 as unknown as string)).toBeUndefined()
    expect(readImageSize(null as unknown as string)).toBeUndefined()
  })

  it('never throws and never returns an out-of-range size for mutated images', () => {
    const random = createRandom(42)
    for (let round = 0; round < 3_000; round++) {
      const f = FIXTURES[round % FIXTURES.length]!
      const bytes = f.bytes.slice(0, Math.max(1, Math.floor(random() * f.bytes.length * 1.2)))
      for (let k = 1 + Math.floor(random() * 4); k > 0; k--) bytes[Math.floor(random() * Math.min(bytes.length, 64))] = Math.floor(random() * 256)
      const size = readImageSize(toBase64(bytes))
      if (size) {
        for (const v of [size.width, size.height]) expect(Number.isInteger(v) && v >= 1 && v <= 100_000).toBe(true)
      }
    }
  })
})
