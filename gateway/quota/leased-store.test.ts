import { describe, expect, it } from 'bun:test'
import { LeasedQuotaStore } from './leased-store.ts'
import { MemoryQuotaStore } from './memory-store.ts'
import { describeQuotaStore } from './store.contract.ts'
import type { QuotaLine, QuotaStore } from './types.ts'

const T0 = Date.UTC(2026, 10, 30, 12, 0, 0)
const DAY: QuotaLine = { qid: 'd', mode: 'fixed', period: 'day', token_limit: 1_000_000, micro_limit: 5_000_000 }
const input = (id: string, tokens = 100, micro = 200) => ({ requestId: id, ttlMs: 300_000, tokens, micro })

// Counts the calls that reach the shared store (what Redis would see).
function counted(store: QuotaStore) {
  const calls: string[] = []
  const wrap = <K extends keyof QuotaStore>(k: K) =>
    ((...args: unknown[]) => {
      calls.push(k)
      return (store[k] as (...a: unknown[]) => unknown)(...args)
    }) as QuotaStore[K]
  return { calls, store: { reserve: wrap('reserve'), settle: wrap('settle'), release: wrap('release'), status: wrap('status'), count: wrap('count') } satisfies QuotaStore }
}

let n = 0
// Near a limit leases step aside: the contract holds whole (its limits are small).
describeQuotaStore('leased over memory', async () => ({ store: new LeasedQuotaStore(new MemoryQuotaStore(), { requests: 64, maxAgeMs: 1000 }), entity: () => `e${++n}` }))

describe('LeasedQuotaStore', () => {
  it('serves many requests from one lease, and books exactly what they used in one settle', async () => {
    let now = T0
    const shared = new MemoryQuotaStore(() => now)
    const { calls, store } = counted(shared)
    const leased = new LeasedQuotaStore(store, { requests: 64, maxAgeMs: 1000 }, () => now)
    for (let i = 0; i < 50; i++) expect((await leased.reserve('user:a', [DAY], input(`r${i}`), now)).ok).toBe(true)
    for (let i = 0; i < 50; i++) expect(await leased.settle('user:a', `r${i}`, 60 + (i % 3), 150, now)).toBe(true)
    // One lease taken; nothing booked yet (the lease is live).
    expect(calls).toEqual(['reserve'])
    expect(leased.stats).toMatchObject({ leases: 1, local: 50, direct: 0 })
    // What the process itself reports counts the usage, not the idle part of its lease.
    const used = Array.from({ length: 50 }, (_, i) => 60 + (i % 3)).reduce((a, b) => a + b, 0)
    expect((await leased.status('user:a', [DAY], now))[0]).toMatchObject({ tokens: used, micro: 50 * 150, reserved_tokens: 0, reserved_micro: 0 })
    now += 1000
    leased.tick(now)
    await leased.close()
    expect(calls).toEqual(['reserve', 'status', 'settle'])
    expect((await shared.status('user:a', [DAY], now))[0]).toMatchObject({ tokens: used, micro: 50 * 150, reserved_tokens: 0 })
  })

  it('books a request at most what it drew, and a release nothing', async () => {
    const shared = new MemoryQuotaStore(() => T0)
    const leased = new LeasedQuotaStore(shared, { requests: 10, maxAgeMs: 1000 }, () => T0)
    await leased.reserve('user:a', [DAY], input('big'), T0)
    await leased.reserve('user:a', [DAY], input('gone'), T0)
    await leased.settle('user:a', 'big', 10_000, 10_000, T0)
    await leased.release('user:a', 'gone', T0)
    // Settled or released once: a second time finds nothing.
    expect(await leased.settle('user:a', 'big', 1, 1, T0)).toBe(false)
    await leased.close()
    expect((await shared.status('user:a', [DAY], T0))[0]).toMatchObject({ tokens: 100, micro: 200, reserved_tokens: 0 })
  })

  it('retires a lease past its age: the next request takes a new one, the old is booked once its draws end', async () => {
    let now = T0
    const shared = new MemoryQuotaStore(() => now)
    const { calls, store } = counted(shared)
    const leased = new LeasedQuotaStore(store, { requests: 64, maxAgeMs: 1000 }, () => now)
    await leased.reserve('user:a', [DAY], input('early'), now)
    now += 1000
    await leased.reserve('user:a', [DAY], input('late'), now)
    expect(leased.stats.leases).toBe(2)
    // The first lease still has a draw open: not booked until it ends.
    expect(calls).toEqual(['reserve', 'reserve'])
    await leased.settle('user:a', 'early', 70, 100, now)
    expect(calls).toEqual(['reserve', 'reserve', 'settle'])
    await leased.settle('user:a', 'late', 30, 50, now)
    await leased.close()
    expect((await shared.status('user:a', [DAY], now))[0]).toMatchObject({ tokens: 100, micro: 150, reserved_tokens: 0, reserved_micro: 0 })
  })

  it('reserves each request in the shared store near the limit, where a lease is not worth taking', async () => {
    const shared = new MemoryQuotaStore(() => T0)
    const { calls, store } = counted(shared)
    const leased = new LeasedQuotaStore(store, { requests: 64, maxAgeMs: 1000 }, () => T0)
    // Room for 5 requests of 100: a lease of 64 is refused, and 25 % of 500 holds only one.
    const tight: QuotaLine = { ...DAY, token_limit: 500, micro_limit: -1 }
    const results = []
    for (let i = 0; i < 7; i++) results.push((await leased.reserve('user:b', [tight], input(`r${i}`), T0)).ok)
    expect(results).toEqual([true, true, true, true, true, false, false])
    expect(leased.stats).toMatchObject({ leases: 0, direct: 5 })
    expect(calls.filter((c) => c === 'reserve').length).toBe(8)
  })

  it('never admits more than fits across instances sharing one store, however many requests race', async () => {
    const shared = new MemoryQuotaStore(() => T0)
    const line: QuotaLine = { ...DAY, token_limit: 20_000, micro_limit: -1 }
    const instances = Array.from({ length: 4 }, () => new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => T0))
    const outcomes = await Promise.all(Array.from({ length: 400 }, (_, i) => instances[i % 4]!.reserve('global', [line], input(`r${i}`, 100, 0), T0)))
    const admitted = outcomes.filter((o) => o.ok).length
    // 200 requests of 100 fit in 20,000: exactly those (leases are drawn whole before they retire,
    // and the last ones are reserved one by one).
    expect(admitted).toBe(200)
    expect((await shared.status('global', [line], T0))[0]!.tokens).toBe(20_000)
  })

  it('leaves the lease of a process that died to expire, booked whole: what it served may have been billed', async () => {
    let now = T0
    const shared = new MemoryQuotaStore(() => now)
    const dead = new LeasedQuotaStore(shared, { requests: 10, maxAgeMs: 1000 }, () => now)
    await dead.reserve('user:c', [DAY], input('served'), now)
    // The process is gone (its draw never settles): another instance sees the lease held.
    const other = new LeasedQuotaStore(shared, { requests: 10, maxAgeMs: 1000 }, () => now)
    expect((await shared.status('user:c', [DAY], now))[0]).toMatchObject({ tokens: 1000, reserved_tokens: 1000 })
    now += 300_000 + 1000
    await other.reserve('user:c', [DAY], input('next'), now)
    // 1,000 booked as used (the lease whole), and the next request reserved on top.
    expect((await shared.status('user:c', [DAY], now))[0]).toMatchObject({ tokens: 2000, reserved_tokens: 1000 })
  })

  it('counts a busy provider\'s requests per minute in blocks: few store calls, never over the limit', async () => {
    let now = T0
    const shared = new MemoryQuotaStore(() => now)
    const { calls, store } = counted(shared)
    const leased = new LeasedQuotaStore(store, { requests: 64, maxAgeMs: 1000 }, () => now)
    const rpm: QuotaLine = { qid: 'rpm', mode: 'sliding', period: 'minute', token_limit: 60_000, micro_limit: -1 }
    // 100 a second for 10 s.
    let admitted = 0
    for (let i = 0; i < 1000; i++) {
      now = T0 + i * 10
      if ((await leased.count('provider:p', rpm, 1, now)).ok) admitted++
    }
    expect(admitted).toBe(1000)
    expect(calls.filter((c) => c === 'count').length).toBeLessThan(100)
    // Counted in the store: what was admitted, plus at most a block per period left unused.
    const counted_ = (await shared.status('provider:p', [rpm], now))[0]!.tokens
    expect(counted_).toBeGreaterThanOrEqual(1000)
    expect(counted_).toBeLessThanOrEqual(1000 + 64)
  })

  it('never admits more than a requests-per-minute limit allows, however fast they come', async () => {
    const now = T0
    const shared = new MemoryQuotaStore(() => now)
    const instances = Array.from({ length: 3 }, () => new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => now))
    const rpm: QuotaLine = { qid: 'rpm', mode: 'sliding', period: 'minute', token_limit: 600, micro_limit: -1 }
    let admitted = 0
    for (let i = 0; i < 2000; i++) if ((await instances[i % 3]!.count('provider:q', rpm, 1, now)).ok) admitted++
    expect(admitted).toBeLessThanOrEqual(600)
    // Blocks left unused are at most a second's share each (10), per process.
    expect(admitted).toBeGreaterThanOrEqual(600 - 3 * 10)
  })

  it('counts each request alone for a small limit or a quiet process', async () => {
    let now = T0
    const shared = new MemoryQuotaStore(() => now)
    const { calls, store } = counted(shared)
    const leased = new LeasedQuotaStore(store, { requests: 64, maxAgeMs: 1000 }, () => now)
    const small: QuotaLine = { qid: 'rpm', mode: 'sliding', period: 'minute', token_limit: 200, micro_limit: -1 }
    for (let i = 0; i < 50; i++) await leased.count('provider:s', small, 1, now)
    const big: QuotaLine = { ...small, token_limit: 60_000 }
    // One a second: never enough for a block.
    for (let i = 0; i < 10; i++) {
      now = T0 + i * 1000
      await leased.count('provider:b', big, 1, now)
    }
    expect(calls.filter((c) => c === 'count').length).toBe(60)
    expect((await shared.status('provider:b', [big], now))[0]!.tokens).toBe(10)
  })

  it('shares one block among counts racing for it: nothing counted in the store is left unused but a block', async () => {
    let now = T0
    const shared = new MemoryQuotaStore(() => now)
    const leased = new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => now)
    const rpm: QuotaLine = { qid: 'rpm', mode: 'sliding', period: 'minute', token_limit: 600_000, micro_limit: -1 }
    // Warm: enough counts in this period for blocks.
    for (let i = 0; i < 8; i++) await leased.count('provider:r', rpm, 1, now)
    now += 1
    const outcomes = await Promise.all(Array.from({ length: 500 }, () => leased.count('provider:r', rpm, 1, now)))
    expect(outcomes.every((o) => o.ok)).toBe(true)
    const stored = (await shared.status('provider:r', [rpm], now))[0]!.tokens
    expect(stored).toBeGreaterThanOrEqual(508)
    expect(stored).toBeLessThanOrEqual(508 + 64)
  })
})
