// Bounds how deeply a JSON text nests, before anything parses or walks it recursively.
import { GatewayError } from './errors.ts'

// Deeper than any real request (tool schemas nest a dozen levels); far below what recursive code
// (stringify, schema checks, translation) can take without overflowing the stack.
export const MAX_JSON_DEPTH = 100

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_BRACE = 0x7b
const OPEN_BRACKET = 0x5b
const CLOSE_BRACE = 0x7d
const CLOSE_BRACKET = 0x5d

// One pass over the bytes: brackets inside strings do not count. `param` names the input in the error.
export function assertJsonDepth(bytes: Uint8Array, param?: string): void {
  let depth = 0
  let inString = false
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
      continue
    }
    if (c === QUOTE) inString = true
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > MAX_JSON_DEPTH) throw tooDeep(param)
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--
  }
}

function tooDeep(param: string | undefined): GatewayError {
  const what = param ? `'${param}'` : 'The request body'
  return new GatewayError('invalid_json', `${what} nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep; the gateway refuses deeper JSON.`, { param: param ?? null })
}
