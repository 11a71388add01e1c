import { describe, expect, it } from 'bun:test'
import { createLogger, MAX_CAUSES, MAX_MESSAGE_CHARS, MAX_STACK_CHARS } from './log.ts'
import { Redactor } from './redact.ts'

function capture(level: Parameters<typeof createLogger>[0]) {
  const lines: string[] = []
  return { log: createLogger(level, (l) => lines.push(l)), lines }
}

describe('createLogger', () => {
  it('writes one JSON object per line with time, level and message', () => {
    const { log, lines } = capture('info')
    log.info('hello', { request_id: 'r1', n: 2 })
    expect(lines.length).toBe(1)
    expect(lines[0]?.endsWith('\n')).toBe(true)
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({ level: 'info', msg: 'hello', request_id: 'r1', n: 2 })
  })

  it('drops lines below its level, but keeps lifecycle lines unless silent', () => {
    const { log, lines } = capture('warn')
    log.debug('d')
    log.info('i')
    log.warn('w')
    log.lifecycle('listening')
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['w', 'listening'])
    const silent = capture('silent')
    silent.log.error('e')
    silent.log.lifecycle('listening')
    expect(silent.lines).toEqual([])
  })

  it('redacts secret-bearing fields and renders errors as objects', () => {
    const { log, lines } = capture('debug')
    const fields = { authorization: 'Bearer sk-123', api_key: 'k', err: new Error('boom'), keep: 'x' }
    log.error('oops', fields)
    const line = JSON.parse(lines[0] ?? '')
    expect(line).toMatchObject({ authorization: '[redacted]', api_key: '[redacted]', err: { name: 'Error', message: 'boom' }, keep: 'x' })
    expect(lines[0]).not.toContain('sk-123')
    expect(fields.authorization).toBe('Bearer sk-123')
  })
})

describe('createLogger with errors', () => {
  const lineOf = (fields: Record<string, unknown>, redact?: (s: string) => string) => {
    const lines: string[] = []
    createLogger('debug', (l) => lines.push(l), redact).error('failed', fields)
    return { raw: lines[0] ?? '', line: JSON.parse(lines[0] ?? '{}') as { err: Logged } }
  }

  it('keeps the stack, the cause chain and the network fields of each error', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET', errno: -104, syscall: 'read' })
    // As the gateway's own error type wraps it (shared/ does not import gateway/).
    const unreachable = Object.assign(new Error('p: cannot reach the provider (ECONNRESET)', { cause: reset }), { code: 'upstream_unreachable', status: 502, upstreamStatus: undefined })
    const err = Object.assign(new Error('internal error', { cause: unreachable }), { code: 'internal_error', status: 500 })
    const { line } = lineOf({ err })
    expect(line.err).toMatchObject({ name: 'Error', message: 'internal error', code: 'internal_error', status: 500 })
    expect(line.err.stack).toContain('log.test.ts')
    expect(line.err.cause).toMatchObject({ message: 'p: cannot reach the provider (ECONNRESET)', code: 'upstream_unreachable', status: 502 })
    expect((line.err.cause as Logged).cause).toMatchObject({ name: 'Error', message: 'socket hang up', code: 'ECONNRESET', errno: -104, syscall: 'read' })
    expect(((line.err.cause as Logged).cause as Logged).stack).toContain('socket hang up')
  })

  it('cleans key-shaped text from every message and stack in the chain', () => {
    const inner = new Error('GET https://example.test/v1/models?key=AIzaSyA1234567890abcdefghij failed')
    const err = new Error('provider said: Incorrect API key provided: sk-proj-abcdef1234567890', { cause: inner })
    const { raw, line } = lineOf({ err })
    for (const secret of ['AIzaSyA1234567890', 'sk-proj-abcdef', 'abcdef1234567890']) expect(raw).not.toContain(secret)
    expect(line.err.message).toBe('provider said: Incorrect API key provided: [redacted]')
    expect((line.err.cause as Logged).stack).toContain('[redacted]')
  })

  it('cleans the password out of a URL in an error', () => {
    const err = new Error('connect to redis://default:hunter2pw@10.0.0.5:6379/0 failed', { cause: new Error('GET http://ingest:Pa55w0rd@clickhouse:8123/?query=x') })
    const { raw, line } = lineOf({ err })
    expect(raw).not.toContain('hunter2pw')
    expect(raw).not.toContain('Pa55w0rd')
    expect(line.err.message).toBe('connect to redis://default:[redacted]@10.0.0.5:6379/0 failed')
  })

  it('cleans configured secrets that are not key-shaped with the redaction it is given', () => {
    const redactor = new Redactor(['plain-provider-secret'])
    const err = new Error('upstream refused', { cause: new Error('bad credentials plain-provider-secret for tenant') })
    const { raw, line } = lineOf({ err }, (s) => redactor.text(s))
    expect(raw).not.toContain('plain-provider-secret')
    expect((line.err.cause as Logged).message).toBe('bad credentials [redacted] for tenant')
  })

  it('leaves out own fields other than the network ones (a failed AUTH keeps its password)', () => {
    const err = Object.assign(new Error('WRONGPASS invalid username-password pair'), { command: { name: 'auth', args: ['default', 'hunter2-password'] }, code: 'WRONGPASS' })
    const { raw, line } = lineOf({ err })
    expect(raw).not.toContain('hunter2')
    expect(line.err.code).toBe('WRONGPASS')
  })

  it('stops a long chain after MAX_CAUSES causes and names a cycle instead of following it', () => {
    let err = new Error('e0')
    for (let i = 1; i <= 8; i++) err = new Error(`e${i}`, { cause: err })
    const chain: string[] = []
    let at: unknown = lineOf({ err }).line.err
    while (typeof at === 'object' && at !== null) {
      chain.push((at as Logged).message)
      at = (at as Logged).cause
    }
    expect(chain).toEqual(['e8', 'e7', 'e6', 'e5', 'e4', 'e3'])
    expect(chain.length).toBe(MAX_CAUSES + 1)
    expect(at).toBe('[further causes left out]')

    const a = new Error('a')
    const b = new Error('b', { cause: a })
    a.cause = b
    expect(lineOf({ err: a }).line.err).toMatchObject({ message: 'a', cause: { message: 'b', cause: '[circular: a cause written above]' } })
  })

  it('renders causes that are not errors as cleaned text, whatever they are', () => {
    const cyclic: Record<string, unknown> = { reason: 'loop' }
    cyclic.self = cyclic
    const hostile = new Proxy({}, { get: () => { throw new Error('trap') }, ownKeys: () => { throw new Error('trap') } })
    const render = (cause: unknown) => lineOf({ err: new Error('outer', { cause }) }).line.err.cause
    expect(render('token=sk-live-abcdef1234567890 rejected')).toBe('token=[redacted] rejected')
    expect(render({ status: 401, api_key: 'short', detail: 'x' })).toBe('{"status":401,"api_key":"[redacted]","detail":"x"}')
    expect(render(42)).toBe(42)
    expect(render(null)).toBe(null)
    expect(render(10n)).toBe('10')
    expect(render(cyclic)).toBe('[object Object]')
    expect(render(hostile)).toBe('[an error that could not be read]')
    // Something thrown that is not an Error, logged directly.
    expect(lineOf({ err: 'redis said sk-live-abcdef1234567890' }).line.err as unknown).toBe('redis said [redacted]')
  })

  it('bounds each text, and a key cut at the bound does not leave its head behind', () => {
    const key = 'sk-live-abcdef1234567890'
    const message = `${'x'.repeat(MAX_MESSAGE_CHARS - 10)} ${key} ${'y'.repeat(50_000)}`
    const { raw, line } = lineOf({ err: new Error(message) })
    expect(line.err.message.length).toBeLessThan(MAX_MESSAGE_CHARS + 40)
    expect(line.err.message).toEndWith(`...[cut: ${message.length} chars]`)
    expect(raw).not.toContain('sk-l')
    expect(line.err.stack?.length).toBeLessThan(MAX_STACK_CHARS + 40)
    expect(raw.length).toBeLessThan(MAX_MESSAGE_CHARS + MAX_STACK_CHARS + 500)
  })
})

interface Logged {
  name: string
  message: string
  stack?: string
  code?: unknown
  cause?: unknown
}
