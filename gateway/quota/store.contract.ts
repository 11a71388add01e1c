// One contract suite for every quota store: the memory store and Redis must behave the same.
import { describe, expect, it } from 'bun:test'
import type { QuotaLine, QuotaStore } from './types.ts'

const T0 = Date.UTC(2026, 10, 26, 12, 0, 30) // 2026-11-26T12:00:30Z
const MIN = 60_000

const tokens = (qid: string, limit: number, mode: QuotaLine['mode'] = 'fixed', period: QuotaLine['period'] = 'minute'): QuotaLine => ({
  qid,
  mode,
  period,
  token_limit: limit,
  micro_limit: -1,
})
const money = (qid: string, micro: number): QuotaLine => ({ qid, mode: 'fixed', period: 'day', token_limit: -1, micro_limit: micro })

export function describeQuotaStore(name: string, make: () => Promise<{ store: QuotaStore; entity: () => string }>) {
  describe(`quota store contract: ${name}`, () => {
    const input = (requestId: string, t: number, micro = 0) => ({ requestId, ttlMs: 5 * MIN, tokens: t, micro })

    it('reserves within the limit and reports what is left', async () => {
      const { store, entity } = await make()
      const e = entity()
      const r = await store.reserve(e, [tokens('q', 100)], input('r1', 30), T0)
      expect(r).toEqual({ ok: true, remaining: [{ qid: 'q', tokens: 70, micro: -1, reset_ms: 30_000 }] })
      expect(await store.status(e, [tokens('q', 100)], T0)).toEqual([{ qid: 'q', tokens: 30, micro: 0, reset_ms: 30_000, reserved_tokens: 30, reserved_micro: 0 }])
    })

    it('refuses what would exceed a token or a cost limit, changing nothing', async () => {
      const { store, entity } = await make()
      const e = entity()
      await store.reserve(e, [tokens('q', 100)], input('r1', 80), T0)
      const refused = await store.reserve(e, [tokens('q', 100)], input('r2', 21), T0)
      expect(refused).toEqual({ ok: false, qid: 'q', kind: 'tokens', limit: 100, used: 80, retry_after_ms: 30_000 })
      expect((await store.status(e, [tokens('q', 100)], T0))[0]?.tokens).toBe(80)
      const cost = await store.reserve(e, [money('m', 1000)], input('r3', 1, 1001), T0)
      expect(cost).toMatchObject({ ok: false, qid: 'm', kind: 'cost', limit: 1000, used: 0 })
    })

    it('reserves all lines or none', async () => {
      const { store, entity } = await make()
      const e = entity()
      const lines = [tokens('wide', 1000), tokens('narrow', 10, 'fixed', 'day')]
      expect((await store.reserve(e, lines, input('r1', 50), T0)).ok).toBe(false)
      expect((await store.status(e, lines, T0)).map((s) => s.tokens)).toEqual([0, 0])
    })

    it('settles actual usage once, however often it is told', async () => {
      const { store, entity } = await make()
      const e = entity()
      const lines = [tokens('q', 100), money('m', 10_000)]
      await store.reserve(e, lines, input('r1', 60, 500), T0)
      expect(await store.settle(e, 'r1', 25, 120, T0)).toBe(true)
      expect(await store.settle(e, 'r1', 25, 120, T0)).toBe(false)
      expect((await store.status(e, lines, T0)).map((s) => [s.tokens, s.micro])).toEqual([
        [25, 120],
        [25, 120],
      ])
    })

    it('releases a reservation once', async () => {
      const { store, entity } = await make()
      const e = entity()
      await store.reserve(e, [tokens('q', 100)], input('r1', 60), T0)
      expect(await store.release(e, 'r1', T0)).toBe(true)
      expect(await store.release(e, 'r1', T0)).toBe(false)
      expect(await store.settle(e, 'r1', 10, 0, T0)).toBe(false)
      expect((await store.status(e, [tokens('q', 100)], T0))[0]?.tokens).toBe(0)
    })

    it('does not count a request id twice when its reserve is sent again', async () => {
      const { store, entity } = await make()
      const e = entity()
      expect((await store.reserve(e, [tokens('q', 100)], input('r1', 60), T0)).ok).toBe(true)
      expect((await store.reserve(e, [tokens('q', 100)], input('r1', 60), T0)).ok).toBe(true)
      expect((await store.status(e, [tokens('q', 100)], T0))[0]?.tokens).toBe(60)
    })

    it('starts a fixed window afresh, and drops settlements for a window that ended', async () => {
      const { store, entity } = await make()
      const e = entity()
      const q = [tokens('q', 100)]
      await store.reserve(e, q, input('r1', 90), T0)
      await store.reserve(e, q, input('r2', 5), T0)
      await store.settle(e, 'r1', 90, 0, T0)
      expect((await store.reserve(e, q, input('r3', 50), T0 + 30_000)).ok).toBe(true)
      expect(await store.settle(e, 'r2', 5, 0, T0 + 30_000)).toBe(true)
      expect((await store.status(e, q, T0 + 30_000))[0]?.tokens).toBe(50)
    })

    it('aligns month windows to UTC calendar months', async () => {
      const { store, entity } = await make()
      const e = entity()
      const q = [{ qid: 'mo', mode: 'fixed' as const, period: 'month' as const, token_limit: 100, micro_limit: -1 }]
      const lastSecondOfNov = Date.UTC(2026, 10, 30, 23, 59, 59)
      await store.reserve(e, q, input('r1', 80), lastSecondOfNov)
      await store.settle(e, 'r1', 80, 0, lastSecondOfNov)
      expect((await store.status(e, q, lastSecondOfNov))[0]).toEqual({ qid: 'mo', tokens: 80, micro: 0, reset_ms: 1000, reserved_tokens: 0, reserved_micro: 0 })
      const dec1 = Date.UTC(2026, 11, 1, 0, 0, 1)
      expect((await store.status(e, q, dec1))[0]?.tokens).toBe(0)
      await store.reserve(e, q, input('r2', 70), dec1)
      await store.settle(e, 'r2', 70, 0, dec1)
      const dec31 = Date.UTC(2026, 11, 31, 12)
      expect((await store.status(e, q, dec31))[0]).toEqual({ qid: 'mo', tokens: 70, micro: 0, reset_ms: Date.UTC(2027, 0, 1) - dec31, reserved_tokens: 0, reserved_micro: 0 })
      const feb = Date.UTC(2028, 1, 29, 10)
      await store.reserve(e, q, input('r3', 1), feb)
      expect((await store.status(e, q, feb))[0]?.reset_ms).toBe(Date.UTC(2028, 2, 1) - feb)
    })

    it('counts sliding usage for a whole period across window edges, and lets it go after', async () => {
      const { store, entity } = await make()
      const e = entity()
      const q = [tokens('s', 100, 'sliding')]
      await store.reserve(e, q, input('r1', 60), T0)
      await store.settle(e, 'r1', 60, 0, T0)
      // 50 s later a fixed minute would have rolled over; a sliding one still holds the 60.
      expect(await store.reserve(e, q, input('r2', 50), T0 + 50_000)).toMatchObject({ ok: false, used: 60 })
      // A little over a minute (one bucket) later the 60 no longer count.
      expect((await store.reserve(e, q, input('r3', 50), T0 + MIN + 1000)).ok).toBe(true)
    })

    it('stops counting a reservation whose gateway never settled once it expires', async () => {
      const { store, entity } = await make()
      const e = entity()
      const q = [tokens('q', 100, 'fixed', 'day')]
      await store.reserve(e, q, { requestId: 'lost', ttlMs: 2000, tokens: 90, micro: 0 }, T0)
      expect((await store.reserve(e, q, input('r2', 20), T0 + 1999)).ok).toBe(false)
      expect((await store.reserve(e, q, input('r3', 20), T0 + 2000)).ok).toBe(true)
      expect(await store.settle(e, 'lost', 90, 0, T0 + 2001)).toBe(false)
      expect((await store.status(e, q, T0 + 2001))[0]?.tokens).toBe(20)
    })

    it('keeps entities apart and treats -1 as no limit', async () => {
      const { store, entity } = await make()
      const a = entity()
      const b = entity()
      await store.reserve(a, [tokens('q', 100)], input('r1', 100), T0)
      expect((await store.reserve(b, [tokens('q', 100)], input('r1', 100), T0)).ok).toBe(true)
      expect((await store.reserve(a, [tokens('free', -1)], input('r2', 1e9), T0)).ok).toBe(true)
    })
  })
}
