import { describe, expect, it } from 'bun:test'
import { catchGatewayError } from '../test/harness/catch-error.ts'
import { assertJsonDepth, MAX_JSON_DEPTH } from './json-depth.ts'

const bytes = (s: string) => new TextEncoder().encode(s)

describe('assertJsonDepth', () => {
  it('accepts nesting up to the limit', () => {
    assertJsonDepth(bytes(`${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`))
    assertJsonDepth(bytes('{"a":[{"b":{"c":[1,2,{"d":null}]}}]}'))
  })

  it('refuses one level more, naming the input and the limit', () => {
    const e = catchGatewayError(() => assertJsonDepth(bytes(`{"x":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`), 'x-gateway-options'))
    expect(e.code).toBe('invalid_json')
    expect(e.status).toBe(400)
    expect(e.param).toBe('x-gateway-options')
    expect(e.message).toContain(`${MAX_JSON_DEPTH} levels`)
  })

  it('does not count brackets inside strings, escaped quotes included', () => {
    const text = JSON.stringify({ s: `"\\${'['.repeat(10_000)}`, t: '{{{{' })
    assertJsonDepth(bytes(text))
  })

  it('refuses 100,000 levels, which would overflow recursive code later', () => {
    expect(catchGatewayError(() => assertJsonDepth(bytes(`${'['.repeat(100_000)}${']'.repeat(100_000)}`))).code).toBe('invalid_json')
  })
})
