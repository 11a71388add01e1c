// Reads a JSON request body under a size limit and a deadline, without buffering more than the limit.
import { concatBytes } from '../shared/bytes.ts'
import { GatewayError } from './errors.ts'
import { assertJsonDepth } from './json-depth.ts'

const MIB = 1024 * 1024

export interface BodyRules {
  limit: number
  // The body must be in within this (see bodyDeadlineMs).
  deadlineMs?: number
}

// The base deadline for the first MiB, plus per_mb for each MiB more the body may be (its declared
// length, or the limit when it is chunked): a slow uploader of a large body gets its time.
export function bodyDeadlineMs(declared: string | null, limit: number, baseMs: number, perMbMs: number): number {
  const bytes = declared !== null && /^\d+$/.test(declared) ? Math.min(Number(declared), limit) : limit
  return baseMs + perMbMs * Math.max(0, Math.ceil(bytes / MIB) - 1)
}

export async function readJsonBody(request: Request, rules: BodyRules | number): Promise<unknown> {
  const { limit, deadlineMs } = typeof rules === 'number' ? { limit: rules, deadlineMs: undefined } : rules
  const declared = request.headers.get('content-length')
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit)
  // With a declared length Bun already bounds the read; a chunked body is counted as it comes.
  const reading = declared !== null ? request.arrayBuffer().then((b) => new Uint8Array(b)) : readChunked(request, limit)
  const bytes = await withDeadline(reading, deadlineMs)
  if (bytes.length > limit) throw tooLarge(limit)
  if (bytes.length === 0) throw new GatewayError('invalid_json', 'The request body is empty; expected a JSON object.')
  assertJsonDepth(bytes)
  try {
    return JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    throw new GatewayError('invalid_json', 'The request body is not valid JSON.')
  }
}

async function withDeadline(reading: Promise<Uint8Array>, ms: number | undefined): Promise<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => {
    if (ms !== undefined) timer = setTimeout(() => reject(new GatewayError('request_timeout', `The request body did not arrive within ${ms} ms.`)), ms)
  })
  try {
    return await Promise.race([reading.catch(unreadable), late])
  } finally {
    clearTimeout(timer)
    // A read still running after the deadline ends when the socket closes; nobody waits for it.
    reading.catch(() => undefined)
  }
}

// The body stopped arriving (the caller closed, or the socket hit its deadline).
function unreadable(err: unknown): never {
  if (err instanceof GatewayError) throw err
  throw new GatewayError('client_closed', 'the request body could not be read', { cause: err })
}

async function readChunked(request: Request, limit: number): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0)
  const parts: Uint8Array[] = []
  let size = 0
  for await (const part of request.body) {
    size += part.length
    if (size > limit) throw tooLarge(limit)
    parts.push(part)
  }
  return concatBytes(parts)
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError('body_too_large', `The request body exceeds the limit of ${limit} bytes.`)
}
