// The embedded quota store: the same semantics as quota.lua, in process memory (one gateway instance).
import { checkCountArgs, checkReleaseArgs, checkReserveArgs, checkSettleArgs, checkStatusArgs } from './amounts.ts'
import type { CountOutcome, LineStatus, LineUsage, QuotaLine, QuotaStore, ReserveInput, ReserveOutcome } from './types.ts'
import { windowAt } from './window.ts'

interface Bucket {
  ut: number
  um: number
  rt: number
  rm: number
}

interface Reservation {
  tokens: number
  micro: number
  buckets: Map<string, number>
  expiresAt: number
}

interface Entity {
  // qid → bucket id → counters
  lines: Map<string, Map<number, Bucket>>
  reservations: Map<string, Reservation>
}

// Every method checks its arguments (amounts.ts) before it touches an entity, as quota.lua does:
// a bad one throws and changes nothing, not even the sweep of expired reservations.
export class MemoryQuotaStore implements QuotaStore {
  private readonly entities = new Map<string, Entity>()

  constructor(private readonly clock: () => number = Date.now) {}

  async reserve(entityId: string, lines: QuotaLine[], input: ReserveInput, now = this.clock()): Promise<ReserveOutcome> {
    checkReserveArgs(entityId, lines, input, now)
    const e = this.entity(entityId)
    this.sweep(e, now)
    if (e.reservations.has(input.requestId)) return { ok: true, remaining: [] }
    const booked = new Map<string, number>()
    const remaining: LineUsage[] = []
    for (const line of lines) {
      const { bucket, t, m, freesAt } = this.usage(e, line, now)
      if (line.token_limit >= 0 && t + input.tokens > line.token_limit) return { ok: false, qid: line.qid, kind: 'tokens', limit: line.token_limit, used: t, retry_after_ms: freesAt - now }
      if (line.micro_limit >= 0 && m + input.micro > line.micro_limit) return { ok: false, qid: line.qid, kind: 'cost', limit: line.micro_limit, used: m, retry_after_ms: freesAt - now }
      booked.set(line.qid, bucket)
      remaining.push({
        qid: line.qid,
        tokens: line.token_limit >= 0 ? line.token_limit - t - input.tokens : -1,
        micro: line.micro_limit >= 0 ? line.micro_limit - m - input.micro : -1,
        reset_ms: freesAt - now,
        closes_ms: windowAt(line.mode, line.period, now).closesAt - now,
      })
    }
    for (const [qid, b] of booked) {
      const c = this.bucket(e, qid, b, true)
      if (c) {
        c.rt += input.tokens
        c.rm += input.micro
      }
    }
    e.reservations.set(input.requestId, { tokens: input.tokens, micro: input.micro, buckets: booked, expiresAt: now + input.ttlMs })
    return { ok: true, remaining }
  }

  // `now` is only checked: settling and releasing do not depend on the time (nor in quota.lua).
  async settle(entityId: string, requestId: string, tokens: number, micro: number, now = this.clock()): Promise<boolean> {
    checkSettleArgs(entityId, requestId, tokens, micro, now)
    return this.unreserve(this.entity(entityId), requestId, { tokens, micro })
  }

  async shrink(entityId: string, requestId: string, tokens: number, micro: number, now = this.clock()): Promise<boolean> {
    checkSettleArgs(entityId, requestId, tokens, micro, now)
    const e = this.entity(entityId)
    const r = e.reservations.get(requestId)
    if (!r) return false
    const toTokens = Math.min(r.tokens, tokens)
    const toMicro = Math.min(r.micro, micro)
    for (const [qid, b] of r.buckets) {
      const c = this.bucket(e, qid, b, false)
      if (!c) continue
      c.rt -= r.tokens - toTokens
      c.rm -= r.micro - toMicro
    }
    r.tokens = toTokens
    r.micro = toMicro
    return true
  }

  async release(entityId: string, requestId: string, now = this.clock()): Promise<boolean> {
    checkReleaseArgs(entityId, requestId, now)
    return this.unreserve(this.entity(entityId), requestId, undefined)
  }

  async status(entityId: string, lines: QuotaLine[], now = this.clock()): Promise<LineStatus[]> {
    checkStatusArgs(entityId, lines, now)
    const e = this.entity(entityId)
    this.sweep(e, now)
    return lines.map((line) => {
      const { t, m, rt, rm, freesAt } = this.usage(e, line, now)
      return { qid: line.qid, tokens: t, micro: m, reset_ms: freesAt - now, reserved_tokens: rt, reserved_micro: rm }
    })
  }

  async count(entityId: string, line: QuotaLine, amount: number, now = this.clock()): Promise<CountOutcome> {
    checkCountArgs(entityId, line, amount, now)
    const e = this.entity(entityId)
    // No reservations to sweep: a count is booked as used, and leaves with its bucket.
    const { bucket, t, freesAt } = this.usage(e, line, now)
    if (line.token_limit >= 0 && t + amount > line.token_limit) return { ok: false, limit: line.token_limit, used: t, retry_after_ms: freesAt - now }
    const c = this.bucket(e, line.qid, bucket, true)
    if (c) c.ut += amount
    return { ok: true, closes_ms: windowAt(line.mode, line.period, now).closesAt - now }
  }

  private unreserve(e: Entity, requestId: string, actual: { tokens: number; micro: number } | undefined): boolean {
    const r = e.reservations.get(requestId)
    if (!r) return false
    for (const [qid, b] of r.buckets) {
      // A bucket that already left its window is gone: its usage no longer counts anywhere.
      const c = this.bucket(e, qid, b, false)
      if (!c) continue
      c.rt -= r.tokens
      c.rm -= r.micro
      if (actual) {
        c.ut += actual.tokens
        c.um += actual.micro
      }
    }
    e.reservations.delete(requestId)
    return true
  }

  // An expired lease (a process's block of many requests' budget, held by a process that died) is
  // booked whole as used, as quota.lua does: the usage it served was never reported.
  private sweep(e: Entity, now: number): void {
    for (const [id, r] of e.reservations) if (r.expiresAt <= now) this.unreserve(e, id, id.startsWith('lease:') ? { tokens: r.tokens, micro: r.micro } : undefined)
  }

  private usage(e: Entity, line: QuotaLine, now: number) {
    const w = windowAt(line.mode, line.period, now)
    const buckets = e.lines.get(line.qid)
    let t = 0
    let m = 0
    let rt = 0
    let rm = 0
    // A sliding window frees when its oldest bucket holding usage leaves it, not merely its oldest.
    let first = Infinity
    if (buckets) {
      for (const [id, c] of buckets) {
        if (id < w.oldest) {
          buckets.delete(id)
          continue
        }
        if (id < first) first = id
        t += c.ut + c.rt
        m += c.um + c.rm
        rt += c.rt
        rm += c.rm
      }
    }
    const freesAt = line.mode === 'sliding' && first !== Infinity ? w.freesAt + (first - w.oldest) : w.freesAt
    return { bucket: w.bucket, t, m, rt, rm, freesAt }
  }

  private bucket(e: Entity, qid: string, id: number, create: boolean): Bucket | undefined {
    let buckets = e.lines.get(qid)
    if (!buckets) {
      if (!create) return undefined
      buckets = new Map()
      e.lines.set(qid, buckets)
    }
    let c = buckets.get(id)
    if (!c && create) {
      c = { ut: 0, um: 0, rt: 0, rm: 0 }
      buckets.set(id, c)
    }
    return c
  }

  private entity(id: string): Entity {
    let e = this.entities.get(id)
    if (!e) {
      e = { lines: new Map(), reservations: new Map() }
      this.entities.set(id, e)
    }
    return e
  }
}
