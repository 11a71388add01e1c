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
  return { calls, store: { reserve: wrap('reserve'), settle: wrap('settle'), shrink: wrap('shrink'), release: wrap('release'), status: wrap('status'), count: wrap('count') } satisfies QuotaStore }
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

  it('sizes the next lease for twice the requests held open at once, so concurrency alone does not empty each lease', async () => {
    let now = T0
    const { calls, store } = counted(new MemoryQuotaStore(() => now))
    const leased = new LeasedQuotaStore(store, { requests: 8, maxAgeMs: 1000 }, () => now)
    const open = async (from: number, count: number) => {
      for (let i = from; i < from + count; i++) expect((await leased.reserve('user:a', [DAY], input(`r${i}`), now)).ok).toBe(true)
    }
    const leasesTaken = () => calls.filter((c) => c === 'reserve').length
    const round = async (from: number) => {
      await open(from, 20)
      for (let i = from; i < from + 20; i++) await leased.settle('user:a', `r${i}`, 10, 20, now)
    }
    // 20 requests in flight at once: the first lease (8 requests) fills while young, with 9 wanted
    // at once; the next is sized for twice that (18), and the round's last 12 fit in it.
    await round(0)
    expect(leasesTaken()).toBe(2)
    // Settled draws gave their room back but for what they used: 16 of the next 20 fit, and the
    // lease after holds 34 (2 x 17 wanted at once).
    await round(100)
    expect(leasesTaken()).toBe(3)
    // From then on a round of 20 in flight fits in the lease it finds.
    await round(200)
    await round(300)
    expect(leasesTaken()).toBe(3)
    now += 1000
    leased.tick(now)
    await leased.close()
    expect((await leased.status('user:a', [DAY], now))[0]).toMatchObject({ tokens: 800, micro: 1600, reserved_tokens: 0, reserved_micro: 0 })
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
    // The first lease still has a draw open: shrunk to it, not booked until it ends.
    expect(calls).toEqual(['reserve', 'shrink', 'reserve'])
    await leased.settle('user:a', 'early', 70, 100, now)
    expect(calls).toEqual(['reserve', 'shrink', 'reserve', 'settle'])
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
    // A quarter of the limit holds one request: no lease is even asked for.
    expect(calls.filter((c) => c === 'reserve').length).toBe(7)
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
    expect(calls.filter((c) => c === 'count').length).toBeLessThan(150)
    // Counted in the store: what was admitted, plus what blocks left unused when their second's
    // bucket closed (at most a block a period; here under a tenth).
    const counted_ = (await shared.status('provider:p', [rpm], now))[0]!.tokens
    expect(counted_).toBeGreaterThanOrEqual(1000)
    expect(counted_).toBeLessThanOrEqual(1100)
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

  it('draws nothing from a lease once the window it was booked into has rolled over', async () => {
    const minuteEnd = T0 + 60_000
    let now = minuteEnd - 100
    const shared = new MemoryQuotaStore(() => now)
    const leased = new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => now)
    const minute: QuotaLine = { qid: 'm', mode: 'fixed', period: 'minute', token_limit: 1000, micro_limit: -1 }
    expect((await leased.reserve('user:w', [minute], input('before', 10, 0), now)).ok).toBe(true)
    now = minuteEnd + 10
    let admitted = 0
    for (let i = 0; i < 150; i++) if ((await leased.reserve('user:w', [minute], input(`after${i}`, 10, 0), now)).ok) admitted++
    // The new minute holds 100 requests of 10, and each is counted in it.
    expect(admitted).toBe(100)
    expect((await shared.status('user:w', [minute], now))[0]!.tokens).toBe(1000)
  })

  it('draws nothing more from its leases once the connection to the store broke (it may come back without them)', async () => {
    const shared = new MemoryQuotaStore(() => T0)
    const { calls, store } = counted(shared)
    const leased = new LeasedQuotaStore(store, { requests: 64, maxAgeMs: 1000 }, () => T0)
    await leased.reserve('user:i', [DAY], input('a'), T0)
    leased.invalidate()
    await leased.reserve('user:i', [DAY], input('b'), T0)
    // A second lease was asked for: the first is drawn from no more (and booked when 'a' ends).
    expect(calls.filter((c) => c === 'reserve').length).toBe(2)
    expect(leased.stats.leases).toBe(2)
  })

  it('answers the same request id reserved twice at once as reserved, drawing once', async () => {
    const shared = new MemoryQuotaStore(() => T0)
    const leased = new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => T0)
    const [a, b] = await Promise.all([leased.reserve('user:d', [DAY], input('dup'), T0), leased.reserve('user:d', [DAY], input('dup'), T0)])
    expect(a.ok && b.ok).toBe(true)
    expect(await leased.settle('user:d', 'dup', 40, 0, T0)).toBe(true)
    expect(await leased.settle('user:d', 'dup', 40, 0, T0)).toBe(false)
    await leased.close()
    expect((await shared.status('user:d', [DAY], T0))[0]).toMatchObject({ tokens: 40, reserved_tokens: 0 })
  })

  it('fails every request waiting on a lease at once when the store cannot be reached', async () => {
    let calls = 0
    const down: QuotaStore = {
      reserve: async () => {
        calls++
        await Bun.sleep(20)
        throw new Error('redis down')
      },
      settle: async () => false,
      shrink: async () => false,
      release: async () => false,
      status: async () => [],
      count: async () => ({ ok: true }),
    }
    const leased = new LeasedQuotaStore(down, { requests: 64, maxAgeMs: 1000 }, () => T0)
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => leased.reserve('user:o', [DAY], input(`o${i}`), T0)))
    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true)
    // One try at a lease for all of them, not one each in turn.
    expect(calls).toBe(1)
  })

  it('takes a first lease of at most a quarter of the limit, before the store said what is left', async () => {
    const shared = new MemoryQuotaStore(() => T0)
    const line: QuotaLine = { ...DAY, token_limit: 1000, micro_limit: -1 }
    const a = new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => T0)
    const b = new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => T0)
    expect((await a.reserve('team:f', [line], input('small', 15, 0), T0)).ok).toBe(true)
    expect((await shared.status('team:f', [line], T0))[0]!.reserved_tokens).toBeLessThanOrEqual(250)
    expect((await b.reserve('team:f', [line], input('big', 100, 0), T0)).ok).toBe(true)
  })

  it('never reports negative figures for a lease the store no longer counts', async () => {
    let now = T0 + 60_000 - 100
    const shared = new MemoryQuotaStore(() => now)
    const leased = new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => now)
    const minute: QuotaLine = { qid: 'm', mode: 'fixed', period: 'minute', token_limit: 1_000_000, micro_limit: -1 }
    await leased.reserve('user:n', [minute], input('x', 100, 0), now)
    now += 200
    for (const row of await leased.status('user:n', [minute], now)) {
      expect(row.tokens).toBeGreaterThanOrEqual(0)
      expect(row.reserved_tokens).toBeGreaterThanOrEqual(0)
    }
  })

  it('never admits more than the limit in any minute when counts come in blocks', async () => {
    let now = T0
    const shared = new MemoryQuotaStore(() => now)
    const instances = Array.from({ length: 3 }, () => new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => now))
    const rpm: QuotaLine = { qid: 'rpm', mode: 'sliding', period: 'minute', token_limit: 600, micro_limit: -1 }
    const admittedAt: number[] = []
    // 40 a second, offered for 150 s: far more than 600 a minute.
    for (let i = 0; i < 6000; i++) {
      now = T0 + 333 + i * 25
      if ((await instances[i % 3]!.count('provider:m', rpm, 1, now)).ok) admittedAt.push(now)
    }
    let most = 0
    for (let a = 0, b = 0; b < admittedAt.length; b++) {
      while (admittedAt[b]! - admittedAt[a]! >= 60_000) a++
      most = Math.max(most, b - a + 1)
    }
    expect(most).toBeLessThanOrEqual(600)
    expect(admittedAt.length).toBeGreaterThan(1000)
  })

  it('gives a retired lease\'s idle part back to the store at once, while its last requests still run', async () => {
    let now = T0
    const shared = new MemoryQuotaStore(() => now)
    const leased = new LeasedQuotaStore(shared, { requests: 64, maxAgeMs: 1000 }, () => now)
    await leased.reserve('user:l', [DAY], input('long', 100, 200), now)
    now += 1000
    leased.tick(now)
    await Bun.sleep(0)
    // Only the running request's estimate stays reserved.
    expect((await shared.status('user:l', [DAY], now))[0]).toMatchObject({ reserved_tokens: 100, reserved_micro: 200 })
    await leased.settle('user:l', 'long', 70, 150, now)
    expect((await shared.status('user:l', [DAY], now))[0]).toMatchObject({ tokens: 70, micro: 150, reserved_tokens: 0 })
  })
})
