import { describe, expect, it } from 'bun:test'
import { createLogger } from './log.ts'

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

  it('redacts secret-bearing fields and flattens errors', () => {
    const { log, lines } = capture('debug')
    const fields = { authorization: 'Bearer sk-123', api_key: 'k', err: new Error('boom'), keep: 'x' }
    log.error('oops', fields)
    const line = JSON.parse(lines[0] ?? '')
    expect(line).toMatchObject({ authorization: '[redacted]', api_key: '[redacted]', err: { name: 'Error', message: 'boom' }, keep: 'x' })
    expect(lines[0]).not.toContain('sk-123')
    expect(fields.authorization).toBe('Bearer sk-123')
  })
})
