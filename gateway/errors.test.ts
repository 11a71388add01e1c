import { describe, expect, it } from 'bun:test'
import { ERROR_CODES, errorFrame, errorResponse, GatewayError, toGatewayError } from './errors.ts'

describe('GatewayError', () => {
  it('renders OpenAI error bodies with the status from the table', async () => {
    const res = errorResponse(new GatewayError('rate_limit_exceeded', 'slow down', { retryAfterSeconds: 7 }), { 'x-request-id': 'r1' })
    expect(res.status).toBe(429)
    expect(res.headers.get('retry-after')).toBe('7')
    expect(res.headers.get('x-request-id')).toBe('r1')
    expect(await res.json()).toEqual({ error: { message: 'slow down', type: 'rate_limit', param: null, code: 'rate_limit_exceeded' } })
  })

  it('maps every code to a taxonomy type with a matching status class', () => {
    const expected: Record<string, (s: number) => boolean> = {
      rate_limit: (s) => s === 429,
      context_length: (s) => s === 400,
      auth_error: (s) => s === 401 || s === 403,
      invalid_request: (s) => [400, 404, 405, 408, 409, 413, 422, 499].includes(s),
      server_error: (s) => s >= 500 && s < 600,
      timeout: (s) => s === 504,
    }
    for (const [code, { status, type }] of Object.entries(ERROR_CODES)) {
      expect({ code, ok: expected[type]?.(status) }).toEqual({ code, ok: true })
    }
  })

  it('frames a mid-stream error as one SSE data event', () => {
    const frame = errorFrame(new GatewayError('stream_timeout', 'too slow'))
    expect(frame.endsWith('\n\n')).toBe(true)
    expect(JSON.parse(frame.slice('data: '.length))).toEqual({ error: { message: 'too slow', type: 'timeout', param: null, code: 'stream_timeout' } })
  })

  it('never puts a cause in a response body or a stream frame: causes are for the log', async () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:443'), { code: 'ECONNREFUSED' })
    const err = new GatewayError('upstream_unreachable', 'p: cannot reach the provider', { cause }).afterAccepted()
    expect(err.cause).toBe(cause)
    const body = await errorResponse(err).text()
    expect(JSON.parse(body)).toEqual({ error: { message: 'p: cannot reach the provider', type: 'server_error', param: null, code: 'upstream_unreachable' } })
    expect(body + errorFrame(err)).not.toContain('ECONNREFUSED')
    expect(toGatewayError(cause).cause).toBe(cause)
    expect(await errorResponse(toGatewayError(cause)).text()).not.toContain('10.0.0.7')
  })

  it('knows which errors are worth retrying', () => {
    expect(new GatewayError('upstream_error', 'x').retryable).toBe(true)
    expect(new GatewayError('rate_limit_exceeded', 'x').retryable).toBe(true)
    expect(new GatewayError('context_length_exceeded', 'x').retryable).toBe(false)
  })
})
