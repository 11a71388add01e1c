// Reads an upstream response body decoded from its content-encoding, bounded in size and expansion.
import { GatewayError } from '../errors.ts'

export interface BodyLimits {
  // Most decoded bytes the whole body may have (undefined: no total cap, e.g. a stream, which
  // timeouts bound instead).
  maxBytes: number | undefined
  // Most decoded bytes per encoded byte (a decompression bomb decodes 1 KB into megabytes).
  maxRatio: number
}

// Decoded output below this is never held to the ratio: a small, repetitive answer (a run of
// spaces, a padded JSON) can legitimately compress past any sane ratio, and it costs nothing.
const RATIO_GRACE_BYTES = 64 * 1024

// Most encoded bytes handed to a decoder at once (a view, not a copy). It bounds how far the
// ratio's count of encoded bytes runs ahead of the decoder, and, as Bun's decoder hands out up to
// max(64 KiB, input size) per step, how large one decoded piece can be.
const FEED_SLICE_BYTES = 16 * 1024

// Bun's DecompressionStream decodes all of these natively and, under backpressure, hands out each
// input chunk's output in pieces of at most max(64 KiB, that chunk's size) (its documented
// highWaterMark), so it is used rather than bridging node:zlib's Node streams.
// zstd is left out on purpose: a zstd frame names its own window (up to 128 MiB by default) and
// the decoder allocates it up front, a cost the limits below cannot see; we never advertise it.
const FORMATS: Record<string, Bun.CompressionFormat> = {
  gzip: 'gzip',
  'x-gzip': 'gzip',
  deflate: 'deflate',
  br: 'brotli',
}

// The decoded bytes of an upstream response body as a stream. Identity passes the upstream chunks
// through as they are (same objects, no copy); gzip / x-gzip / deflate / br are decoded as data is
// read, never more than one chunk's output ahead of the reader. Past a limit, or for an unknown
// encoding, the stream errors with upstream_bad_response and the upstream body is cancelled.
export function decodeBody(res: Response, limits: BodyLimits, who: string): ReadableStream<Uint8Array> {
  const body = res.body
  if (body === null) return new ReadableStream<Uint8Array>({ start: (c) => c.close() })
  const codings = parseContentEncoding(res.headers.get('content-encoding'))
  const formats: Bun.CompressionFormat[] = []
  for (const coding of codings) {
    const format = FORMATS[coding]
    // The value is not quoted back: a provider could put anything there (its key, say).
    if (format === undefined) return refuse(body, badResponse(who, 'unsupported content-encoding'))
    formats.push(format)
  }
  // Codings are listed in the order they were applied: undo the last one first.
  const [outermost, ...inner] = formats.reverse()
  // A plain stream with no total cap (timeouts bound it) is the upstream body itself: no hop.
  if (outermost === undefined && limits.maxBytes === undefined) return body
  if (outermost === undefined) return passIdentity(body, res.headers.get('content-length'), limits, who)
  return decodeWith(body, outermost, inner, codings.join(', '), limits, who)
}

// The whole decoded body as text (UTF-8), under the same limits; for non-streaming answers.
export async function readBodyText(res: Response, limits: BodyLimits, who: string): Promise<string> {
  // The common case, a plain body of a declared length within the cap: Bun reads exactly that
  // many bytes natively (HTTP frames the body by it), the fastest way there is.
  const declared = res.headers.get('content-length')
  if (isPlain(res) && declared !== null && /^\d+$/.test(declared) && (limits.maxBytes === undefined || Number(declared) <= limits.maxBytes)) return res.text()
  const decoder = new TextDecoder()
  const parts: string[] = []
  for await (const chunk of decodeBody(res, limits, who)) parts.push(decoder.decode(chunk, { stream: true }))
  parts.push(decoder.decode())
  return parts.join('')
}

function isPlain(res: Response): boolean {
  return parseContentEncoding(res.headers.get('content-encoding')).length === 0
}

function parseContentEncoding(header: string | null): string[] {
  if (header === null) return []
  return header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity')
}

function passIdentity(body: ReadableStream<Uint8Array>, declared: string | null, limits: BodyLimits, who: string): ReadableStream<Uint8Array> {
  const max = limits.maxBytes
  // A declared length over the cap is refused before a byte is read.
  if (max !== undefined && declared !== null && Number(declared) > max) return refuse(body, tooLarge(who, max))
  const upstream = body.getReader()
  let size = 0
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        // A network error rejects here and errors this stream with the same error, untouched.
        const r = await upstream.read()
        if (r.done) return c.close()
        size += r.value.byteLength
        if (max !== undefined && size > max) {
          const err = tooLarge(who, max)
          upstream.cancel(err).catch(ignore)
          throw err
        }
        c.enqueue(r.value)
      },
      cancel: (reason) => upstream.cancel(reason),
    },
    // Read upstream only when our reader asks: nothing is buffered ahead of it.
    { highWaterMark: 0 },
  )
}

function decodeWith(
  body: ReadableStream<Uint8Array>,
  outermost: Bun.CompressionFormat,
  inner: Bun.CompressionFormat[],
  label: string,
  limits: BodyLimits,
  who: string,
): ReadableStream<Uint8Array> {
  const upstream = body.getReader()
  let encoded = 0
  let decoded = 0
  // Set when the network (not the decoder) failed, so that error is the one the reader sees.
  let networkFailure: { error: unknown } | undefined
  const first = new DecompressionStream(outermost)
  // A decoder takes any BufferSource; Bun's wider spelling of it (shared buffers too) lets our
  // Uint8Array chunks in without a cast.
  const input: WritableStreamDefaultWriter<Bun.BufferSource> = first.writable.getWriter()
  let chain: ReadableStream<Uint8Array> = first.readable
  for (const format of inner) {
    const encodedAgain: ReadableStream<Bun.BufferSource> = chain
    chain = encodedAgain.pipeThrough(new DecompressionStream(format))
  }
  const output = chain.getReader()

  // Hands the decoder one slice at a time, the next only once it has taken all of the last (a
  // write settles then): the encoded bytes counted are at most one slice ahead of those consumed,
  // which keeps the ratio honest even when the socket delivers a whole bomb as one chunk, and
  // upstream is read only as fast as we are.
  const feed = async () => {
    for (;;) {
      const r = await upstream.read().catch((error: unknown) => {
        networkFailure = { error }
        throw error
      })
      if (r.done) return input.close()
      for (let at = 0; at < r.value.byteLength; at += FEED_SLICE_BYTES) {
        const slice = r.value.subarray(at, at + FEED_SLICE_BYTES)
        encoded += slice.byteLength
        await input.write(slice)
      }
    }
  }
  let feeding: Promise<void> | undefined
  // Cancel both ends ourselves rather than trust the decoders to carry it back to the socket.
  const stop = (reason: unknown) => {
    output.cancel(reason).catch(ignore)
    upstream.cancel(reason).catch(ignore)
  }
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        // Started on the first read, so nothing is read upstream before anyone asks. Its failure
        // reaches the decoder (a network error aborts it) and so the read below; not twice.
        feeding ??= feed().catch((error: unknown) => {
          input.abort(error).catch(ignore)
        })
        const r = await output.read().catch((error: unknown) => {
          if (networkFailure !== undefined) throw networkFailure.error
          const err = badResponse(who, `response body is not valid ${label} data`, error)
          stop(err)
          throw err
        })
        if (r.done) return c.close()
        decoded += r.value.byteLength
        const breach = checkLimits(decoded, encoded, limits, who)
        if (breach !== undefined) {
          stop(breach)
          throw breach
        }
        c.enqueue(r.value)
      },
      cancel: (reason) => stop(reason),
    },
    { highWaterMark: 0 },
  )
}

function checkLimits(decoded: number, encoded: number, limits: BodyLimits, who: string): GatewayError | undefined {
  if (limits.maxBytes !== undefined && decoded > limits.maxBytes) return tooLarge(who, limits.maxBytes)
  if (decoded > RATIO_GRACE_BYTES && decoded > limits.maxRatio * encoded) {
    return badResponse(who, `response body decodes to more than ${limits.maxRatio} times its encoded size`)
  }
  return undefined
}

// A stream that fails at once, after letting go of the upstream connection.
function refuse(body: ReadableStream<Uint8Array>, err: GatewayError): ReadableStream<Uint8Array> {
  body.cancel(err).catch(ignore)
  return new ReadableStream<Uint8Array>({ start: (c) => c.error(err) })
}

function tooLarge(who: string, max: number): GatewayError {
  return badResponse(who, `response body exceeds ${max} bytes`)
}

function badResponse(who: string, what: string, cause?: unknown): GatewayError {
  return new GatewayError('upstream_bad_response', `${who}: ${what}`, cause === undefined ? {} : { cause })
}

// Cancelling an upstream that already failed or finished can reject; there is nothing left to do.
function ignore(): void {}
