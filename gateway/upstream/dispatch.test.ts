import { describe, expect, it } from 'bun:test'
import { parseConfig } from '../../shared/config/load.ts'
import type { BreakerSettings, RetryBudgetSettings } from '../../shared/config/schema.ts'
import { buildSnapshot, type Route } from '../config-store.ts'
import { GatewayError } from '../errors.ts'
import { BreakerRegistry } from '../routing/breaker.ts'
import { LatencyTracker } from '../routing/latency.ts'
import { RetryBudgetRegistry } from '../routing/retry-budget.ts'
import { CLIENT_CLOSED } from './call.ts'
import { backoffMs, dispatch, type Attempt, type DispatchDeps, type DispatchSettings } from './dispatch.ts'

const provider = (id: string) => ({
  provider_id: id,
  name: id,
  kind: 'openai-compatible',
  base_url: 'http://127.0.0.1:1/v1',
  models: [{ name: 'm', upstream_model: `up-${id}`, cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }],
})
const snapshot = buildSnapshot(parseConfig(JSON.stringify({ providers: [provider('a'), provider('b'), provider('c')] }), 'd.json'))
const chain = snapshot.routes.get('m')?.targets as Route[]
const breakerSettings: BreakerSettings = { enabled: true, failure_rate: 0.5, min_requests: 100, window_ms: 10_000, cooldown_ms: 5_000, half_open_probes: 1 }
const budgetSettings: RetryBudgetSettings = { enabled: true, ratio: 0.2, min_retries: 3, window_ms: 10_000 }
const settings: DispatchSettings = { retries: 2, backoff_base_ms: 100, backoff_max_ms: 1_000, max_retry_after_ms: 3_000, breakers: true, deadline: Number.POSITIVE_INFINITY }

const upstream503 = () => new GatewayError('upstream_unavailable', 'down', { upstreamStatus: 503 })
const upstream429 = (s: number) => new GatewayError('rate_limit_exceeded', 'slow down', { upstreamStatus: 429, retryAfterSeconds: s })

// A scripted world: each target answers from its list of outcomes; the clock only moves when slept.
function world(
  script: Record<string, Array<GatewayError | 'ok'>>,
  opts: { random?: number; admit?: (r: Route, n: number) => number | undefined; breakers?: BreakerRegistry; retryBudgets?: RetryBudgetRegistry } = {},
) {
  let now = 1_000_000
  const sleeps: number[] = []
  const sent: string[] = []
  const deps: DispatchDeps = {
    breakers: opts.breakers ?? new BreakerRegistry(breakerSettings),
    retryBudgets: opts.retryBudgets ?? new RetryBudgetRegistry(budgetSettings),
    latency: new LatencyTracker(() => now),
    now: () => now,
    random: () => opts.random ?? 0.5,
    sleep: async (ms) => {
      sleeps.push(ms)
      now += ms
    },
    admit: async (r, n) => opts.admit?.(r, n),
  }
  const send = async (route: Route) => {
    sent.push(route.key)
    const next = script[route.key]?.shift() ?? 'ok'
    if (next !== 'ok') throw next
    return `answer from ${route.key}`
  }
  const attempts: Attempt[] = []
  const run = (s: DispatchSettings = settings, signal = new AbortController().signal, defer = false, targets: readonly Route[] = chain) => dispatch(targets, s, deps, signal, attempts, send, defer)
  const advance = (ms: number) => {
    now += ms
  }
  return { run, advance, sleeps, sent, attempts, deps }
}

describe('dispatch', () => {
  it('retries a retryable error on the same target with exponential backoff and full jitter', async () => {
    const w = world({ 'a/m': [upstream503(), upstream503()] }, { random: 0.5 })
    const r = await w.run()
    expect(r).toMatchObject({ value: 'answer from a/m', fellBack: false })
    expect(w.sent).toEqual(['a/m', 'a/m', 'a/m'])
    // random 0.5 of min(1000, 100 * 2^n): 50 then 100.
    expect(w.sleeps).toEqual([50, 100])
    expect(w.attempts.map((a) => a.outcome)).toEqual(['error', 'error', 'success'])
  })

  it('keeps every backoff within [0, min(max, base * 2^n))', () => {
    const s = { backoff_base_ms: 100, backoff_max_ms: 1_000 }
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffMs(n, s, () => 0.999_999))).toEqual([0, 1, 2, 3, 4, 5].map((n) => Math.min(1000, 100 * 2 ** n) * 0.999_999))
    for (let i = 0; i < 1000; i++) {
      const n = i % 8
      const ms = backoffMs(n, s, Math.random)
      expect(ms).toBeGreaterThanOrEqual(0)
      expect(ms).toBeLessThan(Math.min(1000, 100 * 2 ** n))
    }
  })

  it("waits the provider's retry-after when it is longer than the backoff", async () => {
    const w = world({ 'a/m': [upstream429(2)] })
    await w.run()
    expect(w.sleeps).toEqual([2000])
    expect(w.sent).toEqual(['a/m', 'a/m'])
  })

  it('moves to the next target rather than wait a retry-after above the cap', async () => {
    const w = world({ 'a/m': [upstream429(30)] })
    const r = await w.run()
    expect(w.sleeps).toEqual([])
    expect(r).toMatchObject({ value: 'answer from b/m', fellBack: true })
  })

  it('falls back to the second and then the third target once retries are spent', async () => {
    const w = world({ 'a/m': [upstream503(), upstream503(), upstream503()], 'b/m': [upstream503(), upstream503(), upstream503()] })
    const r = await w.run()
    expect(r).toMatchObject({ value: 'answer from c/m', fellBack: true })
    expect(w.sent).toEqual(['a/m', 'a/m', 'a/m', 'b/m', 'b/m', 'b/m', 'c/m'])
    expect(w.attempts.filter((a) => a.outcome === 'error').map((a) => a.http_status)).toEqual([503, 503, 503, 503, 503, 503])
  })

  it('throws the last error when every target failed', async () => {
    const fail = () => [upstream503(), upstream503(), upstream503()]
    const w = world({ 'a/m': fail(), 'b/m': fail(), 'c/m': fail() })
    await expect(w.run()).rejects.toMatchObject({ code: 'upstream_unavailable' })
    expect(w.sent.length).toBe(9)
  })

  it('returns a non-retryable error at once: no retry, no fallback', async () => {
    const w = world({ 'a/m': [new GatewayError('context_length_exceeded', 'too long', { upstreamStatus: 400 })] })
    await expect(w.run()).rejects.toMatchObject({ code: 'context_length_exceeded' })
    expect(w.sent).toEqual(['a/m'])
    expect(w.sleeps).toEqual([])
  })

  it('does not retry a target that refuses our credentials, but tries the next', async () => {
    const w = world({ 'a/m': [new GatewayError('upstream_auth_error', 'bad key', { upstreamStatus: 401 })] })
    const r = await w.run()
    expect(w.sent).toEqual(['a/m', 'b/m'])
    expect(r.fellBack).toBe(true)
  })

  it('skips a target whose adapter refuses a parameter, answering its 400 only if none takes it', async () => {
    const refuse = () => new GatewayError('unsupported_parameter', "Unsupported parameter 'seed'", { param: 'seed' })
    const w = world({ 'a/m': [refuse()] })
    const r = await w.run()
    expect(r.route.key).toBe('b/m')
    // Nothing reached a/m: b/m is the first target called, so this is not a fallback.
    expect(r.fellBack).toBe(false)
    expect(w.attempts[0]).toMatchObject({ target: 'a/m', outcome: 'skipped', error_code: 'unsupported_parameter' })
    const none = world({ 'a/m': [refuse()], 'b/m': [refuse()], 'c/m': [refuse()] })
    await expect(none.run()).rejects.toMatchObject({ code: 'unsupported_parameter', param: 'seed' })
  })

  it('skips a provider at its rate limit and says when to retry if all are', async () => {
    const w = world({}, { admit: (r) => (r.key === 'a/m' ? 5_000 : undefined) })
    expect((await w.run()).route.key).toBe('b/m')
    expect(w.attempts[0]).toMatchObject({ target: 'a/m', outcome: 'skipped', error_code: 'rate_limit_exceeded' })
    const all = world({}, { admit: () => 2_500 })
    await expect(all.run()).rejects.toMatchObject({ code: 'rate_limit_exceeded', retryAfterSeconds: 3 })
  })

  it('feeds the breaker, stops retrying a target whose breaker opened, and skips it next time', async () => {
    const breakers = new BreakerRegistry({ ...breakerSettings, min_requests: 2 })
    const w = world({ 'a/m': [upstream503(), upstream503(), upstream503()] }, { breakers })
    const r = await w.run()
    // Two failures trip it (2 of 2 > 50 %): no third try, no wait for one; b answers.
    expect(w.sent).toEqual(['a/m', 'a/m', 'b/m'])
    expect(r.route.key).toBe('b/m')
    expect(w.sleeps).toEqual([50])
    expect(breakers.get('a/m').state(w.deps.now()).kind).toBe('open')
    const again = world({}, { breakers })
    await again.run()
    expect(again.sent).toEqual(['b/m'])
    expect(again.attempts[0]).toMatchObject({ target: 'a/m', outcome: 'skipped', error_code: 'circuit_open' })
  })

  it('records latency for successful attempts only', async () => {
    const w = world({ 'a/m': [upstream503()] })
    await w.run({ ...settings, retries: 0 })
    expect(w.deps.latency.figure('b/m', { window_ms: 60_000, min_samples: 1 }).samples).toBe(1)
    expect(w.deps.latency.figure('a/m', { window_ms: 60_000, min_samples: 1 }).samples).toBe(0)
  })

  it('stops when the client leaves during a backoff', async () => {
    const ac = new AbortController()
    const w = world({ 'a/m': [upstream503()] })
    w.deps.sleep = async () => {
      ac.abort()
      throw CLIENT_CLOSED
    }
    await expect(w.run(settings, ac.signal)).rejects.toBe(CLIENT_CLOSED)
    expect(w.sent).toEqual(['a/m'])
  })

  it('admits every upstream call on its own, retries included', async () => {
    const admitted: Array<[string, number]> = []
    const w = world({ 'a/m': [upstream503(), upstream503()] }, { admit: (r, n) => void admitted.push([r.key, n]) })
    await w.run()
    expect(admitted).toEqual([
      ['a/m', 0],
      ['a/m', 1],
      ['a/m', 2],
    ])
  })

  it("answers the gateway's own failure at once, without holding it against the target", async () => {
    const breakers = new BreakerRegistry({ ...breakerSettings, min_requests: 1 })
    const w = world({ 'a/m': [new GatewayError('internal_error', 'bug')] }, { breakers })
    await expect(w.run()).rejects.toMatchObject({ code: 'internal_error' })
    expect(w.sent).toEqual(['a/m'])
    expect(breakers.get('a/m').state(w.deps.now()).kind).toBe('closed')
  })

  it('does not pay twice for an unreadable 2xx: answered at once and held against the target', async () => {
    const breakers = new BreakerRegistry({ ...breakerSettings, min_requests: 1 })
    const w = world({ 'a/m': [new GatewayError('upstream_bad_response', 'no choices')] }, { breakers })
    await expect(w.run()).rejects.toMatchObject({ code: 'upstream_bad_response' })
    expect(w.sent).toEqual(['a/m'])
    expect(breakers.get('a/m').state(w.deps.now()).kind).toBe('open')
  })

  it('starts no attempt after the deadline and says so', async () => {
    const w = world({ 'a/m': [upstream503(), upstream503(), upstream503()] })
    await expect(w.run({ ...settings, deadline: performance.now() - 1 })).rejects.toMatchObject({ code: 'upstream_timeout' })
    expect(w.sent).toEqual([])
    // A backoff that would end past the deadline is not started: the last error is the answer.
    const late = world({ 'a/m': [upstream503(), upstream503(), upstream503()] })
    await expect(late.run({ ...settings, deadline: performance.now() + 20 })).rejects.toMatchObject({ code: 'upstream_unavailable' })
    expect(late.sent).toEqual(['a/m'])
  })

  it('leaves the verdict to the caller when asked, for a stream that ends later', async () => {
    const breakers = new BreakerRegistry({ ...breakerSettings, min_requests: 2 })
    for (let i = 0; i < 2; i++) {
      const w = world({}, { breakers })
      const r = await w.run(settings, new AbortController().signal, true)
      expect(breakers.get('a/m').counts()).toEqual({ total: i, failures: i })
      r.settle('failure')
      r.settle('success')
    }
    // Two streams that broke: two failures, not two successes and two failures.
    expect(breakers.get('a/m').state(1_000_000).kind).toBe('open')
  })

  it('sends nothing when the client left while the call was being admitted', async () => {
    const ac = new AbortController()
    const w = world({}, { admit: () => void ac.abort() })
    await expect(w.run(settings, ac.signal)).rejects.toBe(CLIENT_CLOSED)
    expect(w.sent).toEqual([])
  })

  describe('half-open probes', () => {
    const once = { ...settings, retries: 0 }
    // a/m's breaker opened by one failure (the request fell back to b/m), then half-open.
    async function halfOpen(script: Record<string, Array<GatewayError | 'ok'>> = {}, admit?: (r: Route, n: number) => number | undefined) {
      const breakers = new BreakerRegistry({ ...breakerSettings, min_requests: 1 })
      const w = world({ 'a/m': [upstream503()], ...script }, { breakers, admit })
      expect((await w.run(once)).route.key).toBe('b/m')
      w.advance(breakerSettings.cooldown_ms)
      expect(breakers.get('a/m').state(w.deps.now()).kind).toBe('half-open')
      w.sent.length = 0
      w.attempts.length = 0
      return { w, breaker: breakers.get('a/m') }
    }

    it('judges a stream probe at its first content: served, the breaker closes while the stream still runs', async () => {
      const { w, breaker } = await halfOpen()
      const probe = await w.run(once, new AbortController().signal, true)
      expect(probe.route.key).toBe('a/m')
      expect(breaker.state(w.deps.now()).kind).toBe('closed')
      expect((await w.run(once)).route.key).toBe('a/m')
      // The stream's own end comes later and changes nothing: the probe was already judged.
      probe.settle('failure')
      expect(breaker.state(w.deps.now()).kind).toBe('closed')
      expect(breaker.counts().failures).toBe(0)
    })

    it('does not lock the breaker when admission throws during a probe (a Redis blip)', async () => {
      let blip = false
      const { w, breaker } = await halfOpen({}, () => {
        if (blip) {
          blip = false
          throw new GatewayError('internal_error', 'redis timeout')
        }
        return undefined
      })
      blip = true
      await expect(w.run(once)).rejects.toMatchObject({ code: 'internal_error' })
      expect(w.sent).toEqual([])
      // No lease needed: the slot came back at once, and the next request probes and closes it.
      expect(breaker.canPass(w.deps.now())).toBe(true)
      expect((await w.run(once)).route.key).toBe('a/m')
      expect(breaker.state(w.deps.now()).kind).toBe('closed')
    })
  })

  describe('retry budget', () => {
    const only = (key: string) => chain.filter((r) => r.key === key)
    const failing = (n: number) => Array.from({ length: n }, upstream503)

    it('keeps a brownout within the budget: N concurrent requests make at most N + max(min_retries, ratio × N) calls', async () => {
      const n = 50
      const brownout = async (retryBudgets?: RetryBudgetRegistry) => {
        const w = world({ 'a/m': failing(3 * n) }, { retryBudgets })
        // Breakers off: the budget alone is measured.
        const results = await Promise.allSettled(Array.from({ length: n }, () => w.run({ ...settings, breakers: false }, new AbortController().signal, false, only('a/m'))))
        expect(results.map((r) => (r.status === 'rejected' ? (r.reason as GatewayError).code : 'served'))).toEqual(Array(n).fill('upstream_unavailable'))
        return w
      }
      const w = await brownout()
      // 50 first calls and at most 0.2 × 50 = 10 retries, where two retries each would make 150.
      expect(w.sent.length).toBeLessThanOrEqual(n + 10)
      const status = w.deps.retryBudgets.get('a/m').status(w.deps.now())
      expect(status).toMatchObject({ requests: n, allowed: 10 })
      expect(status.retries).toBe(w.sent.length - n)
      // Each refusal ended its request at once, and the attempt list says so.
      expect(w.attempts.filter((a) => a.error_code === 'retry_budget_exhausted').length).toBe(status.refused)
      expect(status.refused).toBeGreaterThan(n / 2)
      expect(w.sleeps.length).toBe(status.retries)

      const unbudgeted = await brownout(new RetryBudgetRegistry({ ...budgetSettings, enabled: false }))
      expect(unbudgeted.sent.length).toBe(3 * n)
    })

    it("still retries a healthy target's occasional failure, quiet or busy", async () => {
      // Quiet: no traffic yet, the floor (min_retries) pays for it.
      const quiet = world({ 'a/m': [upstream503()] })
      expect((await quiet.run()).route.key).toBe('a/m')
      expect(quiet.sent).toEqual(['a/m', 'a/m'])
      // Busy: one request in five fails once; 100 requests earn 20 retries, far past the floor.
      const script: Record<string, GatewayError[]> = {}
      const busy = world(script)
      for (let i = 1; i <= 100; i++) {
        if (i % 5 === 0) script['a/m'] = [upstream503()]
        expect((await busy.run()).route.key).toBe('a/m')
      }
      expect(busy.sent.length).toBe(120)
      // A 21st retry is past the budget (20 for 101 requests): on to the next target at once.
      busy.sleeps.length = 0
      busy.attempts.length = 0
      script['a/m'] = [upstream503()]
      const r = await busy.run()
      expect(r).toMatchObject({ route: { key: 'b/m' }, fellBack: true })
      expect(busy.sleeps).toEqual([])
      expect(busy.attempts.map((a) => [a.target, a.outcome, a.error_code])).toEqual([
        ['a/m', 'error', 'upstream_unavailable'],
        ['a/m', 'skipped', 'retry_budget_exhausted'],
        ['b/m', 'success', null],
      ])
    })

    it('answers the last error at once when the budget refuses a retry and no target is left', async () => {
      const w = world({ 'a/m': failing(10) }, { retryBudgets: new RetryBudgetRegistry({ ...budgetSettings, min_retries: 1 }) })
      await expect(w.run(settings, new AbortController().signal, false, only('a/m'))).rejects.toMatchObject({ code: 'upstream_unavailable' })
      expect(w.sent).toEqual(['a/m', 'a/m'])
      expect(w.sleeps).toEqual([50])
      expect(w.attempts.map((a) => a.outcome)).toEqual(['error', 'error', 'skipped'])
    })

    it('does not count a fallback call as a retry of its target', async () => {
      const retryBudgets = new RetryBudgetRegistry({ ...budgetSettings, min_retries: 0 })
      const w = world({ 'a/m': [new GatewayError('upstream_auth_error', 'bad key', { upstreamStatus: 401 })] }, { retryBudgets })
      expect((await w.run()).route.key).toBe('b/m')
      expect(retryBudgets.get('b/m').status(w.deps.now())).toMatchObject({ requests: 1, retries: 0, refused: 0 })
    })
  })
})
