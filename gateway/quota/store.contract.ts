// One contract suite for every quota store: the memory store and Redis must behave the same.
import { describe, expect, it } from 'bun:test'
import { MAX_AMOUNT, MAX_LIMIT, MAX_NAME_BYTES, MAX_TTL_MS } from './amounts.ts'
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

// What no store may accept, by kind of argument. `undefined` is a valid `now` (the store's clock).
const BAD_AMOUNTS: unknown[] = [-1, 0.5, NaN, Infinity, -Infinity, 1e15, 1e300, MAX_AMOUNT + 1, '70', '1e3', null, undefined]
const BAD_LIMITS: unknown[] = [-2, -1.5, 0.5, NaN, Infinity, 2 ** 53, 1e300, '100', '-1', '1e3', null, undefined]
// 'é' is two UTF-8 bytes: 101 of them pass a length test in UTF-16 units but not in bytes.
const BAD_NAMES: unknown[] = ['', 'a\nb', 'nul\u0000', 'del\u007f', 'nel\u0085', 'x'.repeat(MAX_NAME_BYTES + 1), 'é'.repeat(101), 'lone\ud800', 5, null, undefined]
const BAD_NOWS: unknown[] = [-1, 0.5, NaN, Infinity, 1e300, String(T0), null]
const BAD_TTLS: unknown[] = [0, -1, 0.5, NaN, Infinity, MAX_TTL_MS + 1, '300000', null, undefined]
const BAD_ENTITIES: unknown[] = ['', 5, null, undefined]
const BAD_LINE_LISTS: unknown[] = [null, 'q', {}, [null], [{}]]
const BAD_LINE_FIELDS: Record<keyof QuotaLine, unknown[]> = {
  qid: BAD_NAMES,
  mode: ['rolling', 'FIXED', '', null, undefined],
  period: ['week', 'hour', '', 'toString', null, undefined],
  token_limit: BAD_LIMITS,
  micro_limit: BAD_LIMITS,
}

// The entity every bad call aims at: used, reserved and an expired reservation on two lines.
const Q = tokens('q', 1000)
const M: QuotaLine = { qid: 'm', mode: 'sliding', period: 'day', token_limit: -1, micro_limit: 100_000 }
const LINES = [Q, M]
// After 'short' expired: a store that swept before checking its arguments would show it.
const LATER = T0 + 5000
const FRESH = { requestId: 'fresh', ttlMs: 5 * MIN, tokens: 10, micro: 20 }
const withLine = (field: keyof QuotaLine, value: unknown): QuotaLine[] => [Q, { ...M, [field]: value } as QuotaLine]

interface BadRow {
  op: string
  argument: string
  values: readonly unknown[]
  call: (store: QuotaStore, entity: string, value: unknown) => Promise<unknown>
}

function lineRows(op: string, call: (store: QuotaStore, entity: string, lines: QuotaLine[]) => Promise<unknown>): BadRow[] {
  const fields = Object.keys(BAD_LINE_FIELDS) as Array<keyof QuotaLine>
  return [
    { op, argument: 'lines', values: BAD_LINE_LISTS, call: (s, e, v) => call(s, e, v as QuotaLine[]) },
    ...fields.map((f): BadRow => ({ op, argument: `lines[1].${f}`, values: BAD_LINE_FIELDS[f], call: (s, e, v) => call(s, e, withLine(f, v)) })),
  ]
}

const BAD_ROWS: BadRow[] = [
  { op: 'reserve', argument: 'entity', values: BAD_ENTITIES, call: (s, _, v) => s.reserve(v as string, LINES, FRESH, LATER) },
  { op: 'reserve', argument: 'now', values: BAD_NOWS, call: (s, e, v) => s.reserve(e, LINES, FRESH, v as number) },
  { op: 'reserve', argument: 'input.requestId', values: BAD_NAMES, call: (s, e, v) => s.reserve(e, LINES, { ...FRESH, requestId: v as string }, LATER) },
  { op: 'reserve', argument: 'input.ttlMs', values: BAD_TTLS, call: (s, e, v) => s.reserve(e, LINES, { ...FRESH, ttlMs: v as number }, LATER) },
  { op: 'reserve', argument: 'input.tokens', values: BAD_AMOUNTS, call: (s, e, v) => s.reserve(e, LINES, { ...FRESH, tokens: v as number }, LATER) },
  { op: 'reserve', argument: 'input.micro', values: BAD_AMOUNTS, call: (s, e, v) => s.reserve(e, LINES, { ...FRESH, micro: v as number }, LATER) },
  ...lineRows('reserve', (s, e, lines) => s.reserve(e, lines, FRESH, LATER)),
  { op: 'settle', argument: 'entity', values: BAD_ENTITIES, call: (s, _, v) => s.settle(v as string, 'held', 25, 120, LATER) },
  { op: 'settle', argument: 'now', values: BAD_NOWS, call: (s, e, v) => s.settle(e, 'held', 25, 120, v as number) },
  { op: 'settle', argument: 'requestId', values: BAD_NAMES, call: (s, e, v) => s.settle(e, v as string, 25, 120, LATER) },
  { op: 'settle', argument: 'tokens', values: BAD_AMOUNTS, call: (s, e, v) => s.settle(e, 'held', v as number, 120, LATER) },
  { op: 'settle', argument: 'micro', values: BAD_AMOUNTS, call: (s, e, v) => s.settle(e, 'held', 25, v as number, LATER) },
  { op: 'release', argument: 'entity', values: BAD_ENTITIES, call: (s, _, v) => s.release(v as string, 'held', LATER) },
  { op: 'release', argument: 'now', values: BAD_NOWS, call: (s, e, v) => s.release(e, 'held', v as number) },
  { op: 'release', argument: 'requestId', values: BAD_NAMES, call: (s, e, v) => s.release(e, v as string, LATER) },
  { op: 'status', argument: 'entity', values: BAD_ENTITIES, call: (s, _, v) => s.status(v as string, LINES, LATER) },
  { op: 'status', argument: 'now', values: BAD_NOWS, call: (s, e, v) => s.status(e, LINES, v as number) },
  ...lineRows('status', (s, e, lines) => s.status(e, lines, LATER)),
  { op: 'count', argument: 'entity', values: BAD_ENTITIES, call: (s, _, v) => s.count(v as string, Q, 1, LATER) },
  { op: 'count', argument: 'now', values: BAD_NOWS, call: (s, e, v) => s.count(e, Q, 1, v as number) },
  { op: 'count', argument: 'amount', values: [0, ...BAD_AMOUNTS], call: (s, e, v) => s.count(e, Q, v as number, LATER) },
  ...(Object.keys(BAD_LINE_FIELDS) as Array<keyof QuotaLine>).map(
    (f): BadRow => ({ op: 'count', argument: `lines[0].${f}`, values: BAD_LINE_FIELDS[f], call: (s, e, v) => s.count(e, { ...Q, [f]: v } as QuotaLine, 1, LATER) }),
  ),
]

// Undefined when the call was refused with a RangeError naming the argument, else what happened.
async function refusal(row: BadRow, store: QuotaStore, entity: string, value: unknown): Promise<string | undefined> {
  try {
    await row.call(store, entity, value)
    return 'accepted'
  } catch (err) {
    if (!(err instanceof RangeError)) return `threw ${String(err)}`
    const named = err.message.startsWith(`quota: ${row.argument} invalid`) || err.message.startsWith(`quota: ${row.argument}[`)
    return named ? undefined : `named the wrong argument: ${err.message}`
  }
}

export function describeQuotaStore(name: string, make: () => Promise<{ store: QuotaStore; entity: () => string }>) {
  describe(`quota store contract: ${name}`, () => {
    const input = (requestId: string, t: number, micro = 0) => ({ requestId, ttlMs: 5 * MIN, tokens: t, micro })

    it('reserves within the limit and reports what is left', async () => {
      const { store, entity } = await make()
      const e = entity()
      const r = await store.reserve(e, [tokens('q', 100)], input('r1', 30), T0)
      // A fixed minute: the bucket booked into closes with the window, 30 s on.
      expect(r).toEqual({ ok: true, remaining: [{ qid: 'q', tokens: 70, micro: -1, reset_ms: 30_000, closes_ms: 30_000 }] })
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

    it('never lets sliding usage go before a whole period has passed, wherever in its bucket it fell', async () => {
      const { store, entity } = await make()
      const e = entity()
      const q = [tokens('s', 100, 'sliding')]
      // Booked late in its second (T0 is on a whole second): 59.6 s later it is inside the minute.
      await store.reserve(e, q, input('r1', 60), T0 + 900)
      await store.settle(e, 'r1', 60, 0, T0 + 900)
      expect(await store.reserve(e, q, input('r2', 50), T0 + 60_500)).toMatchObject({ ok: false, used: 60 })
      // The same for a sliding day, whose buckets are 24 minutes: 23 h 40 min later it still counts.
      const d = [tokens('d', 100, 'sliding', 'day')]
      await store.reserve(e, d, input('d1', 60), T0 + 20 * MIN)
      await store.settle(e, 'd1', 60, 0, T0 + 20 * MIN)
      expect(await store.reserve(e, d, input('d2', 50), T0 + 24 * 60 * MIN)).toMatchObject({ ok: false, used: 60 })
      // And it says when it frees: once the window's start passed the end of its bucket.
      const [line] = await store.status(e, d, T0 + 24 * 60 * MIN)
      expect(T0 + 24 * 60 * MIN + line!.reset_ms).toBeGreaterThan(T0 + 20 * MIN + 24 * 60 * MIN)
    })

    it('counts against a line without a record per count: refused past the limit, then freed with its bucket', async () => {
      const { store, entity } = await make()
      const e = entity()
      const rpm = tokens('rpm', 3, 'sliding')
      // Each booked into T0's one-second bucket, which closes at T0 + 1 s.
      for (let i = 0; i < 3; i++) expect(await store.count(e, rpm, 1, T0 + i * 100)).toEqual({ ok: true, closes_ms: 1000 - i * 100 })
      const refused = await store.count(e, rpm, 1, T0 + 20_000)
      expect(refused).toMatchObject({ ok: false, limit: 3, used: 3 })
      // The oldest count's bucket (T0's second) leaves the window after a minute and a second.
      expect(refused.ok === false && T0 + 20_000 + refused.retry_after_ms).toBe(T0 + MIN + 1000)
      expect((await store.count(e, rpm, 1, T0 + MIN + 999)).ok).toBe(false)
      expect(await store.count(e, rpm, 1, T0 + MIN + 1000)).toMatchObject({ ok: true })
      // A count is usage: status shows it, nothing of it reserved.
      expect((await store.status(e, [rpm], T0 + MIN + 1000))[0]).toMatchObject({ tokens: 1, reserved_tokens: 0 })
    })

    it("books a lease whose process never settled it whole once it expires, instead of releasing it", async () => {
      const { store, entity } = await make()
      const e = entity()
      const q = [tokens('q', 100, 'fixed', 'day')]
      await store.reserve(e, q, { requestId: 'lease:dead-instance:1', ttlMs: 2000, tokens: 60, micro: 0 }, T0)
      expect((await store.status(e, q, T0 + 2000))[0]).toMatchObject({ tokens: 60, reserved_tokens: 0 })
      expect(await store.settle(e, 'lease:dead-instance:1', 10, 0, T0 + 2001)).toBe(false)
    })

    it('shrinks a held reservation to what it still may use, never growing it', async () => {
      const { store, entity } = await make()
      const e = entity()
      const q = [tokens('q', 1000, 'fixed', 'day')]
      await store.reserve(e, q, input('lease:x:1', 600), T0)
      expect(await store.shrink(e, 'lease:x:1', 150, 0, T0)).toBe(true)
      expect(await store.shrink(e, 'lease:x:1', 400, 0, T0)).toBe(true)
      expect((await store.status(e, q, T0))[0]).toMatchObject({ tokens: 150, reserved_tokens: 150 })
      expect(await store.settle(e, 'lease:x:1', 120, 0, T0)).toBe(true)
      expect((await store.status(e, q, T0))[0]).toMatchObject({ tokens: 120, reserved_tokens: 0 })
      expect(await store.shrink(e, 'lease:x:1', 10, 0, T0)).toBe(false)
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

    it('refuses every invalid argument to every call, changing nothing, and settles normally after', async () => {
      const { store, entity } = await make()
      const e = entity()
      await store.reserve(e, LINES, { requestId: 'done', ttlMs: 5 * MIN, tokens: 40, micro: 300 }, T0)
      await store.settle(e, 'done', 30, 200, T0)
      await store.reserve(e, LINES, { requestId: 'held', ttlMs: 5 * MIN, tokens: 60, micro: 500 }, T0)
      await store.reserve(e, LINES, { requestId: 'short', ttlMs: 1000, tokens: 7, micro: 3 }, T0)
      const before = await store.status(e, LINES, T0)
      expect(before.map((l) => [l.tokens, l.micro, l.reserved_tokens, l.reserved_micro])).toEqual([
        [97, 703, 67, 503],
        [97, 703, 67, 503],
      ])
      const wrong: string[] = []
      for (const row of BAD_ROWS) {
        for (const value of row.values) {
          const what = `${row.op} ${row.argument}=${typeof value === 'string' ? JSON.stringify(value.slice(0, 12)) : String(value)}`
          const failure = await refusal(row, store, e, value)
          if (failure) wrong.push(`${what}: ${failure}`)
          if (JSON.stringify(await store.status(e, LINES, T0)) !== JSON.stringify(before)) wrong.push(`${what}: changed the status`)
        }
      }
      expect(wrong).toEqual([])
      expect(await store.settle(e, 'held', 25, 120, LATER)).toBe(true)
      expect(await store.settle(e, 'held', 25, 120, LATER)).toBe(false)
      const after = before.map((l) => ({ ...l, tokens: l.tokens - 60 + 25, micro: l.micro - 500 + 120, reserved_tokens: 7, reserved_micro: 3 }))
      expect(await store.status(e, LINES, T0)).toEqual(after)
    })

    it('books the largest amounts and limits exactly', async () => {
      const { store, entity } = await make()
      const e = entity()
      const big: QuotaLine[] = [{ qid: 'big', mode: 'fixed', period: 'day', token_limit: MAX_LIMIT, micro_limit: -1 }]
      const resetMs = Date.UTC(2026, 10, 27) - T0
      const r = await store.reserve(e, big, { requestId: 'r1', ttlMs: MAX_TTL_MS, tokens: MAX_AMOUNT, micro: MAX_AMOUNT - 1 }, T0)
      expect(r).toEqual({ ok: true, remaining: [{ qid: 'big', tokens: MAX_LIMIT - MAX_AMOUNT, micro: -1, reset_ms: resetMs, closes_ms: resetMs }] })
      expect(await store.settle(e, 'r1', MAX_AMOUNT - 1, MAX_AMOUNT, T0)).toBe(true)
      await store.reserve(e, big, { requestId: 'r2', ttlMs: MAX_TTL_MS, tokens: MAX_AMOUNT, micro: MAX_AMOUNT }, T0)
      expect(await store.status(e, big, T0)).toEqual([
        { qid: 'big', tokens: 2 * MAX_AMOUNT - 1, micro: 2 * MAX_AMOUNT, reset_ms: resetMs, reserved_tokens: MAX_AMOUNT, reserved_micro: MAX_AMOUNT },
      ])
      expect(await store.settle(e, 'r2', MAX_AMOUNT, MAX_AMOUNT, T0)).toBe(true)
      expect((await store.status(e, big, T0))[0]).toMatchObject({ tokens: 2 * MAX_AMOUNT - 1, micro: 2 * MAX_AMOUNT, reserved_tokens: 0, reserved_micro: 0 })
    })
  })
}
