// Reads a JSON request body under a size limit, without buffering more than the limit.
import { concatBytes } from '../shared/bytes.ts'
import { GatewayError } from './errors.ts'
import { assertJsonDepth } from './json-depth.ts'

export async function readJsonBody(request: Request, limit: number): Promise<unknown> {
  const declared = request.headers.get('content-length')
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit)
  // With a declared length Bun already bounds the read; a chunked body is counted as it comes.
  const bytes = declared !== null ? new Uint8Array(await request.arrayBuffer()) : await readChunked(request, limit)
  if (bytes.length > limit) throw tooLarge(limit)
  if (bytes.length === 0) throw new GatewayError('invalid_json', 'The request body is empty; expected a JSON object.')
  assertJsonDepth(bytes)
  try {
    return JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    throw new GatewayError('invalid_json', 'The request body is not valid JSON.')
  }
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
