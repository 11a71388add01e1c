import { describe, expect, it } from 'bun:test'
import { parseConfig } from '../../shared/config/load.ts'
import { hashKey } from '../auth.ts'
import type { ChatRequest } from '../chat-request.ts'
import { buildSnapshot, type Caller } from '../config-store.ts'
import type { GatewayOptions } from '../gateway-options.ts'
import { catchGatewayError } from '../../test/harness/catch-error.ts'
import { routeRequest } from './router.ts'
import { createRoutingState } from './state.ts'

const provider = (id: string, max?: number) => ({
  provider_id: id,
  name: id,
  kind: 'openai-compatible',
  base_url: 'http://127.0.0.1:1/v1',
  models: [
    { name: 'm', upstream_model: `up-${id}`, cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002, ...(max ? { max_output_tokens: max } : {}) },
    { name: `only-${id}`, cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 },
  ],
})

const snapshot = buildSnapshot(
  parseConfig(
    JSON.stringify({
      providers: [provider('a'), provider('b', 1000), provider('c')],
      routes: [
        { name: 'chat', policy: 'explicit', targets: [{ provider: 'a', model: 'm' }, { provider: 'b', model: 'm' }] },
        { name: 'solo', targets: [{ provider: 'c', model: 'm' }, { provider: 'a', model: 'm' }], fallback: false },
      ],
      routing: { breaker: { min_requests: 1, cooldown_ms: 4000 } },
      clients: [
        { client_id: 'all', team_id: 't', keys: [{ name: 'k', sha256: hashKey('k-all') }] },
        { client_id: 'narrow', team_id: 't', models: ['chat'], keys: [{ name: 'k', sha256: hashKey('k-narrow') }] },
      ],
    }),
    'r.json',
  ),
)
const caller = (id: string) => [...snapshot.keys.values()].find((c) => c.client.client_id === id) as Caller
const req = (model: string, extra: Record<string, unknown> = {}): ChatRequest => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra })

function route(model: string, options: GatewayOptions = {}, who = 'all', extra: Record<string, unknown> = {}, state = createRoutingState(snapshot.config.file.routing.breaker)) {
  return routeRequest(snapshot, caller(who), req(model, extra), options, state).chain.map((r) => r.key)
}

describe('routeRequest', () => {
  it('resolves a provider model name to every provider serving it, in config order', () => {
    expect(route('m')).toEqual(['a/m', 'b/m', 'c/m'])
  })

  it('resolves a configured route to its targets, and without fallback to the first only', () => {
    expect(route('chat')).toEqual(['a/m', 'b/m'])
    expect(route('solo')).toEqual(['c/m'])
  })

  it('answers 404 for a model that does not exist or the caller may not use', () => {
    expect(catchGatewayError(() => route('nope'))).toMatchObject({ status: 404, code: 'model_not_found' })
    expect(catchGatewayError(() => route('m', {}, 'narrow'))).toMatchObject({ status: 404, code: 'model_not_found' })
  })

  it('puts a preferred provider first and refuses one that does not serve the model', () => {
    expect(route('m', { provider: 'c' })).toEqual(['c/m', 'a/m', 'b/m'])
    expect(catchGatewayError(() => route('chat', { provider: 'c' }))).toMatchObject({ status: 400, param: 'x-gateway-options.provider' })
  })

  it('replaces the fallback chain with the models the caller names, or drops it', () => {
    expect(route('chat', { fallback: ['only-c', 'm'] })).toEqual(['a/m', 'c/only-c', 'b/m', 'c/m'])
    expect(route('chat', { fallback: false })).toEqual(['a/m'])
    // true cannot switch on a fallback the route switched off; a list of the caller's models can.
    expect(route('solo', { fallback: true })).toEqual(['c/m'])
    expect(route('solo', { fallback: ['m'] })).toEqual(['c/m', 'a/m', 'b/m'])
  })

  it('limits a fallback list to models the caller may call', () => {
    expect(catchGatewayError(() => route('chat', { fallback: ['m'] }, 'narrow'))).toMatchObject({ status: 404, param: 'x-gateway-options.fallback' })
    expect(catchGatewayError(() => route('chat', { fallback: ['http://evil.example/v1'] }))).toMatchObject({ status: 404 })
  })

  it('overrides the policy per request', () => {
    const state = createRoutingState(snapshot.config.file.routing.breaker)
    for (let i = 0; i < 5; i++) state.latency.record('a/m', 500)
    for (let i = 0; i < 5; i++) state.latency.record('b/m', 20)
    for (let i = 0; i < 5; i++) state.latency.record('c/m', 80)
    expect(route('m', {}, 'all', {}, state)).toEqual(['a/m', 'b/m', 'c/m'])
    expect(route('m', { policy: 'latency' }, 'all', {}, state)).toEqual(['b/m', 'c/m', 'a/m'])
  })

  it('skips targets whose output limit is below the cap asked for', () => {
    expect(route('m', {}, 'all', { max_tokens: 4000 })).toEqual(['a/m', 'c/m'])
    expect(route('m', {}, 'all', { max_tokens: 500 })).toEqual(['a/m', 'b/m', 'c/m'])
  })

  it('skips targets whose breaker is open and answers 503 with retry-after when all are', () => {
    let now = 0
    const state = createRoutingState(snapshot.config.file.routing.breaker, { now: () => now })
    state.breakers.get('a/m').failure(0, { probe: false, period: -1 })
    expect(route('chat', {}, 'all', {}, state)).toEqual(['b/m'])
    state.breakers.get('b/m').failure(1000, { probe: false, period: -1 })
    now = 1500
    expect(catchGatewayError(() => route('chat', {}, 'all', {}, state))).toMatchObject({ status: 503, code: 'provider_unavailable', retryAfterSeconds: 3 })
    // After a's cooldown it is half-open and may take a probe.
    now = 4000
    expect(route('chat', {}, 'all', {}, state)).toEqual(['a/m'])
  })
})
