import { afterAll, describe, expect, it } from 'bun:test'
import * as zlib from 'node:zlib'
import { GatewayError } from '../errors.ts'
import { decodeBody, readBodyText, type BodyLimits } from './bounded-body.ts'

// A real local server, fetched the way the gateway fetches providers: raw bytes, encoding kept.
type Route = () => Response
const routes = new Map<string, Route>()
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch: (req) => routes.get(new URL(req.url).pathname)?.() ?? new Response('no route', { status: 404 }),
})
afterAll(() => server.stop(true))

let nextRoute = 0
function serve(route: Route): Promise<Response> {
  const path = `/r${nextRoute++}`
  routes.set(path, route)
  return fetch(`http://127.0.0.1:${server.port}${path}`, { decompress: false, headers: { 'accept-encoding': 'identity' } })
}

function chunked(chunks: Uint8Array[], headers: Record<string, string> = {}): Response {
  let i = 0
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      const chunk = chunks[i++]
      if (chunk === undefined) c.close()
      else c.enqueue(chunk)
    },
  })
  return new Response(body, { headers })
}

const enc = new TextEncoder()
const roomy: BodyLimits = { maxBytes: 1 << 20, maxRatio: 100 }
const WHO = 'test-provider'

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const chunk of stream) out.push(chunk)
  return out
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a failure')
}

function expectBadResponse(err: unknown, mentions: string): void {
  expect(err).toBeInstanceOf(GatewayError)
  const e = err as GatewayError
  expect(e.code).toBe('upstream_bad_response')
  expect(e.message.startsWith(`${WHO}: `)).toBe(true)
  expect(e.message).toContain(mentions)
}

// A JSON-ish answer long enough to span several chunks once decoded.
const answer = JSON.stringify({ choices: Array.from({ length: 2000 }, (_, i) => ({ index: i, text: `token ${i} héllo` })) })
const answerBytes = enc.encode(answer)

// Compresses `size` zeros without ever holding them: the bomb is built the way an attacker would.
async function zerosBomb(compressor: zlib.Gzip | zlib.BrotliCompress, size: number): Promise<Uint8Array> {
  const parts: Buffer[] = []
  compressor.on('data', (b: Buffer) => parts.push(b))
  const ended = new Promise((resolve) => compressor.on('end', resolve))
  const block = Buffer.alloc(1 << 20)
  for (let left = size; left > 0; left -= block.length) {
    if (!compressor.write(block)) await new Promise((resolve) => compressor.once('drain', resolve))
  }
  compressor.end()
  await ended
  return new Uint8Array(Buffer.concat(parts))
}

// Built once, shared by the tests that need it: about a second of compression.
let gzipBombOnce: Promise<Uint8Array> | undefined
const gzipBomb = () => (gzipBombOnce ??= zerosBomb(zlib.createGzip({ level: 9 }), 1 << 30))

describe('decodeBody', () => {
  it('passes a plain body through unchanged, chunk by chunk', async () => {
    const chunks = [answerBytes.slice(0, 1000), answerBytes.slice(1000, 5000), answerBytes.slice(5000)]
    const res = await serve(() => chunked(chunks))
    expect(Buffer.concat(await collect(decodeBody(res, roomy, WHO)))).toEqual(Buffer.from(answerBytes))
  })

  it('hands on the very chunk objects of an identity body, uncopied', async () => {
    const chunks = [enc.encode('data: 1\n\n'), enc.encode('data: 2\n\n')]
    const out = await collect(decodeBody(chunked(chunks, { 'content-encoding': 'identity' }), roomy, WHO))
    expect(out.length).toBe(2)
    expect(out[0]).toBe(chunks[0] as Uint8Array)
    expect(out[1]).toBe(chunks[1] as Uint8Array)
  })

  const encodings: [string, Uint8Array][] = [
    ['gzip', zlib.gzipSync(answerBytes)],
    ['x-gzip', zlib.gzipSync(answerBytes)],
    ['deflate', zlib.deflateSync(answerBytes)],
    ['br', zlib.brotliCompressSync(answerBytes)],
    ['gzip, identity', zlib.gzipSync(answerBytes)],
    ['deflate, br', zlib.brotliCompressSync(zlib.deflateSync(answerBytes))],
  ]
  for (const [encoding, compressed] of encodings) {
    it(`decodes a "${encoding}" body to the original, fed in small pieces`, async () => {
      const pieces = Array.from({ length: Math.ceil(compressed.length / 500) }, (_, i) => compressed.slice(i * 500, (i + 1) * 500))
      const res = await serve(() => chunked(pieces, { 'content-encoding': encoding }))
      expect(await readBodyText(res, roomy, WHO)).toBe(answer)
    })
  }

  it('decodes a tiny body that compresses past the ratio, within the grace allowance', async () => {
    const spaces = ' '.repeat(32 * 1024)
    const res = await serve(() => new Response(zlib.gzipSync(spaces), { headers: { 'content-encoding': 'gzip' } }))
    expect(await readBodyText(res, { maxBytes: undefined, maxRatio: 2 }, WHO)).toBe(spaces)
  })

  for (const [kind, makeBomb] of [
    ['gzip', gzipBomb],
    ['br', () => zerosBomb(zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } }), 1 << 30)],
  ] as const) {
    it(`stops a 1 GiB ${kind} bomb at the ratio limit without holding its output`, async () => {
      const bomb = await makeBomb()
      const res = await serve(() => new Response(bomb, { headers: { 'content-encoding': kind } }))
      Bun.gc(true)
      const before = process.memoryUsage().rss
      let peak = before
      let decoded = 0
      const reader = decodeBody(res, { maxBytes: undefined, maxRatio: 200 }, WHO).getReader()
      const err = await failure(
        (async () => {
          for (;;) {
            const r = await reader.read()
            if (r.done) return
            decoded += r.value.byteLength
            peak = Math.max(peak, process.memoryUsage().rss)
          }
        })(),
      )
      expectBadResponse(err, 'more than 200 times')
      const grewMb = (peak - before) / 1e6
      expect(decoded).toBeLessThan(200 * bomb.length + (1 << 20))
      expect(grewMb).toBeLessThan(200)
    })
  }

  it('streams a legitimate 1 GiB gzip body through without holding it', async () => {
    const bomb = await gzipBomb()
    const res = await serve(() => new Response(bomb, { headers: { 'content-encoding': 'gzip' } }))
    Bun.gc(true)
    const before = process.memoryUsage().rss
    let peak = before
    let decoded = 0
    let largest = 0
    for await (const chunk of decodeBody(res, { maxBytes: undefined, maxRatio: 2000 }, WHO)) {
      decoded += chunk.byteLength
      largest = Math.max(largest, chunk.byteLength)
      peak = Math.max(peak, process.memoryUsage().rss)
    }
    const grewMb = (peak - before) / 1e6
    expect(decoded).toBe(1 << 30)
    expect(largest).toBeLessThanOrEqual(64 * 1024)
    expect(grewMb).toBeLessThan(200)
  })

  it('refuses a plain body past maxBytes while reading it', async () => {
    const res = await serve(() => chunked([answerBytes.slice(0, 3000), answerBytes.slice(3000)]))
    // The socket may merge the two chunks: only the bytes handed on before the error are fixed.
    let delivered = 0
    const reading = (async () => {
      for await (const chunk of decodeBody(res, { maxBytes: 4000, maxRatio: 100 }, WHO)) delivered += chunk.byteLength
    })()
    expectBadResponse(await failure(reading), 'exceeds 4000 bytes')
    expect(delivered).toBeLessThanOrEqual(4000)
  })

  it('refuses a plain body whose declared length is past maxBytes', async () => {
    const res = await serve(() => new Response(answerBytes))
    expect(res.headers.get('content-length')).toBe(String(answerBytes.length))
    expectBadResponse(await failure(collect(decodeBody(res, { maxBytes: 100, maxRatio: 100 }, WHO))), 'exceeds 100 bytes')
  })

  it('refuses a gzip body that decodes past maxBytes', async () => {
    const res = await serve(() => new Response(zlib.gzipSync(answerBytes), { headers: { 'content-encoding': 'gzip' } }))
    expectBadResponse(await failure(readBodyText(res, { maxBytes: 10_000, maxRatio: 100 }, WHO)), 'exceeds 10000 bytes')
  })

  for (const encoding of ['compress', 'zstd', 'foo', 'gzip, foo']) {
    it(`refuses the unknown content-encoding "${encoding}" and lets go of the upstream body`, async () => {
      let cancelled!: () => void
      const upstreamCancelled = new Promise<void>((resolve) => (cancelled = resolve))
      const body = new ReadableStream<Uint8Array>({ pull: () => new Promise<void>(() => {}), cancel: () => cancelled() })
      const res = new Response(body, { headers: { 'content-encoding': encoding } })
      expectBadResponse(await failure(collect(decodeBody(res, roomy, WHO))), 'unsupported content-encoding')
      await upstreamCancelled
    })
  }

  it('refuses a corrupt gzip body', async () => {
    const broken = zlib.gzipSync(answerBytes)
    broken.fill(0x55, 20, 200)
    const res = await serve(() => new Response(broken, { headers: { 'content-encoding': 'gzip' } }))
    expectBadResponse(await failure(readBodyText(res, roomy, WHO)), 'not valid gzip data')
  })

  it('refuses a gzip body cut short', async () => {
    const cut = zlib.gzipSync(answerBytes).subarray(0, 500)
    const res = await serve(() => new Response(cut, { headers: { 'content-encoding': 'gzip' } }))
    expectBadResponse(await failure(readBodyText(res, roomy, WHO)), 'not valid gzip data')
  })

  for (const encoding of ['identity', 'gzip']) {
    it(`passes a network error through unchanged (${encoding})`, async () => {
      const reset = new Error('connection reset')
      const first = encoding === 'gzip' ? zlib.gzipSync(enc.encode('partial'), { finishFlush: zlib.constants.Z_SYNC_FLUSH }) : enc.encode('partial')
      let sent = false
      const body = new ReadableStream<Uint8Array>({
        pull(c) {
          if (sent) return c.error(reset)
          sent = true
          c.enqueue(first)
        },
      })
      const res = new Response(body, { headers: { 'content-encoding': encoding } })
      expect(await failure(readBodyText(res, roomy, WHO))).toBe(reset)
    })
  }

  for (const encoding of ['identity', 'gzip']) {
    it(`cancels the server's stream when the reader of a ${encoding} body leaves`, async () => {
      let cancelled!: () => void
      const serverCancelled = new Promise<void>((resolve) => (cancelled = resolve))
      const first = encoding === 'gzip' ? zlib.gzipSync(enc.encode('data: 1\n\n'), { finishFlush: zlib.constants.Z_SYNC_FLUSH }) : enc.encode('data: 1\n\n')
      const res = await serve(() => {
        const body = new ReadableStream<Uint8Array>({
          start: (c) => c.enqueue(first),
          // Never sends more: only the client leaving can end this stream.
          pull: () => new Promise<void>(() => {}),
          cancel: () => cancelled(),
        })
        return new Response(body, { headers: { 'content-encoding': encoding } })
      })
      const reader = decodeBody(res, { maxBytes: undefined, maxRatio: 100 }, WHO).getReader()
      expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: 1\n\n')
      await reader.cancel(new Error('client left'))
      await serverCancelled
    })
  }
})

describe('readBodyText', () => {
  it('returns the whole decoded text, multi-byte characters split across chunks included', async () => {
    const bytes = enc.encode('héllo wörld ✓')
    const res = await serve(() => chunked([bytes.slice(0, 2), bytes.slice(2, 9), bytes.slice(9, 16), bytes.slice(16)]))
    expect(await readBodyText(res, roomy, WHO)).toBe('héllo wörld ✓')
  })

  it('returns an empty string for an empty body', async () => {
    const res = await serve(() => new Response(null, { status: 204 }))
    expect(await readBodyText(res, roomy, WHO)).toBe('')
  })

  it('refuses an oversize body', async () => {
    const res = await serve(() => chunked([answerBytes]))
    expectBadResponse(await failure(readBodyText(res, { maxBytes: answerBytes.length - 1, maxRatio: 100 }, WHO)), `exceeds ${answerBytes.length - 1} bytes`)
  })
})
