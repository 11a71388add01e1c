import { describe, expect, it } from 'bun:test'
import { parseConfig } from '../shared/config/load.ts'
import { createLogger } from '../shared/log.ts'
import { authenticate, hashKey } from './auth.ts'
import { buildSnapshot } from './config-store.ts'
import type { ChatRequest } from './chat-request.ts'
import { GatewayError } from './errors.ts'
import { PendingWork } from './pending-work.ts'
import { MemoryQuotaStore } from './quota/memory-store.ts'
import { QuotaService } from './quota/quota.ts'
import { RequestBudget } from './request-budget.ts'
import { Place, RequestLedger } from './request-ledger.ts'
import type { StreamOutcome } from './upstream/relay.ts'
import type { Verdict } from './upstream/dispatch.ts'
import { MemoryUsageSink } from './usage.ts'

const price = (p: number) => ({ cost_per_1k_input_tokens: p, cost_per_1k_output_tokens: p * 2 })
const config = parseConfig(
  JSON.stringify({
    providers: [
      { provider_id: 'a', name: 'a', kind: 'openai-compatible', base_url: 'http://127.0.0.1:9', models: [{ name: 'm', upstream_model: 'up-a', ...price(0.004) }] },
      { provider_id: 'b', name: 'b', kind: 'openai-compatible', base_url: 'http://127.0.0.1:9', models: [{ name: 'm', upstream_model: 'up-b', ...price(0.001) }] },
    ],
    routes: [{ name: 'chain', targets: [{ provider: 'a', model: 'm' }, { provider: 'b', model: 'm' }] }],
    quotas: [{ quota_id: 'user-day', entity_type: 'user', period: 'day', token_limit: 1_000_000 }],
    clients: [{ client_id: 'c', team_id: 't', keys: [{ name: 'k', sha256: hashKey('sk-ledger-unit') }] }],
  }),
  'test.json',
  {},
)
const snapshot = buildSnapshot(config)
const routeA = snapshot.targets.get('a/m')!
const routeB = snapshot.targets.get('b/m')!
const req = { model: 'chain', messages: [{ role: 'user', content: 'hi' }] } as ChatRequest

function ledger(stream = false) {
  const events: string[] = []
  const usage = new MemoryUsageSink()
  const pending = new PendingWork()
  const quota = new QuotaService(new MemoryQuotaStore(), config.file.quota, createLogger('silent'))
  const caller = authenticate('Bearer sk-ledger-unit', snapshot)
  const budget = new RequestBudget(quota, 'req_1', req, caller, config.file.quotas, {})
  const place = new Place(
    () => events.push('gate left'),
    () => events.push('socket released'),
  )
  const metrics = { streamOpened: () => events.push('stream opened'), streamClosed: () => events.push('stream closed') }
  const l = new RequestLedger({ usage, pending, metrics, onInternalError: (err) => events.push(`internal ${String(err)}`) }, place, { step: () => ({ setAttributes() {}, end() {} }), headersFor: () => undefined, finish: () => events.push('span finished') }, budget, {
    signal: new AbortController().signal,
    requestId: 'req_1',
    caller,
    req,
    stream,
    startedAt: performance.now(),
    headers: { 'x-request-id': 'req_1' },
    routeOf: (key) => snapshot.targets.get(key),
  })
  return { l, events, usage, pending, quota }
}

const streamEnd = (over: Partial<StreamOutcome> = {}): StreamOutcome => ({ usage: { input_tokens: 10, output_tokens: 0, cached_input_tokens: 0, cache_write_input_tokens: 0, reasoning_tokens: 0, estimated: false }, error: undefined, clientClosed: false, callerStalled: false, finished: true, contentChunks: 0, outputBytes: 0, ttfbMs: 1, ...over })

describe('RequestLedger', () => {
  it('ends once: one record, one settle, its place freed before the record, whatever is reported after', async () => {
    const { l, events, usage, pending, quota } = ledger()
    l.routed(routeA)
    await l.budget.reserve([routeA, routeB], config.file.quota)
    expect(quota.outstanding).toBe(1)
    l.dispatching()
    l.serve(routeA, false)
    events.push('served')
    l.end({ kind: 'answered', usage: streamEnd().usage! })
    l.end({ kind: 'failed', error: new GatewayError('upstream_error', 'late') })
    l.end({ kind: 'abandoned' })
    await pending.drain(1000)
    await l.done
    expect(usage.records).toHaveLength(1)
    expect(usage.records[0]).toMatchObject({ provider_id: 'a', status: 'success', input_tokens: 10 })
    expect(quota.outstanding).toBe(0)
    expect(events).toEqual(['served', 'gate left', 'socket released', 'span finished'])
  })

  it('holds a stream that ended during dispatch until the serving target is named, and records it there', async () => {
    const { l, usage, events } = ledger(true)
    l.routed(routeA)
    l.dispatching()
    l.attempts.push({ target: 'a/m', provider_id: 'a', upstream_model: 'up-a', outcome: 'error', error_code: 'upstream_unavailable', http_status: 503, latency_ms: 1 })
    l.end({ kind: 'stream', stream: streamEnd() })
    expect(usage.records).toHaveLength(0)
    expect(events).toEqual([])
    const verdicts: Verdict[] = []
    l.attempts.push({ target: 'b/m', provider_id: 'b', upstream_model: 'up-b', outcome: 'success', error_code: null, http_status: null, latency_ms: 1 })
    l.serve(routeB, true, (v) => verdicts.push(v))
    await l.done
    expect(usage.records).toHaveLength(1)
    // At b's price (0.001 per 1k input tokens), with both attempts; the stream never counted as open.
    expect(usage.records[0]).toMatchObject({ provider_id: 'b', status: 'fallback', attempts: 2, cost_pico: 10 * 1_000_000 })
    expect(verdicts).toEqual(['success'])
    expect(events).not.toContain('stream opened')
    expect(l.headers).toMatchObject({ 'x-gateway-provider': 'b', 'x-gateway-attempts': '2' })
  })

  it('gives the breaker no verdict against the target when the caller left or stopped reading', () => {
    for (const over of [{ clientClosed: true }, { callerStalled: true, error: new GatewayError('stream_timeout', 'x') }]) {
      const { l, events } = ledger(true)
      const verdicts: Verdict[] = []
      l.routed(routeA)
      l.dispatching()
      l.serve(routeA, false, (v) => verdicts.push(v))
      l.end({ kind: 'stream', stream: streamEnd(over) })
      expect(verdicts).toEqual(['abandon'])
      expect(events.filter((e) => e.startsWith('stream'))).toEqual(['stream opened', 'stream closed'])
    }
  })

  it('returns the breaker pass of a served stream that ends in a fault of its own', () => {
    const { l } = ledger(true)
    const verdicts: Verdict[] = []
    l.routed(routeA)
    l.dispatching()
    l.serve(routeA, false, (v) => verdicts.push(v))
    l.end({ kind: 'failed', error: new GatewayError('internal_error', 'bug') })
    expect(verdicts).toEqual(['abandon'])
  })

  it('books the whole estimate of a call the caller left while it ran, and records it at that target', async () => {
    const { l, usage, pending, quota } = ledger()
    l.routed(routeA)
    await l.budget.reserve([routeA], config.file.quota)
    l.dispatching()
    l.attempts.push({ target: 'a/m', provider_id: 'a', upstream_model: 'up-a', outcome: 'error', error_code: 'client_closed', http_status: null, latency_ms: 1 })
    l.end({ kind: 'abandoned' })
    expect(await pending.drain(2000)).toBe(true)
    await l.done
    expect(usage.records[0]).toMatchObject({ provider_id: 'a', client_closed: true, error_code: 'client_closed', usage_estimated: true })
    expect(quota.outstanding).toBe(0)
  })

  it('records no usage for a caller that left during a backoff after a failed call', async () => {
    const { l, usage, pending, quota } = ledger()
    l.routed(routeA)
    await l.budget.reserve([routeA], config.file.quota)
    l.dispatching()
    l.attempts.push({ target: 'a/m', provider_id: 'a', upstream_model: 'up-a', outcome: 'error', error_code: 'upstream_unavailable', http_status: 503, latency_ms: 1 })
    l.end({ kind: 'abandoned' })
    expect(await pending.drain(2000)).toBe(true)
    expect(usage.records[0]).toMatchObject({ provider_id: 'a', client_closed: true, input_tokens: 0, output_tokens: 0, cost_pico: 0 })
    expect(quota.outstanding).toBe(0)
  })
})
