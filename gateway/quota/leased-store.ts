// Budgets on Redis at nearly the cost of memory: the process leases a block of an entity's budget (one reservation in the shared store, for many requests' estimates), serves reservations from it in memory, and books what they used in one settle when the lease is done. Near the limit, or when a lease is refused, each request reserves in the shared store itself, exactly as without leases.
//
// Why nothing can be overspent: a lease is an ordinary reservation, admitted by the shared store
// against every instance's usage and reservations; a process draws from it no more than it holds;
// a request books at most what it drew. What a lease costs instead: its unused part is held from
// other instances until it is done (a false 429 at worst), and a process that dies holding one
// leaves it to expire, when the store books it whole (usage it never reported may have been billed).
import { randomUUID } from 'node:crypto'
import { checkCountArgs, checkReleaseArgs, checkReserveArgs, checkSettleArgs, MAX_AMOUNT } from './amounts.ts'
import type { CountOutcome, LineStatus, LineUsage, QuotaLine, QuotaStore, ReserveInput, ReserveOutcome } from './types.ts'
import { windowAt } from './window.ts'

export interface LeaseSettings {
  // A lease holds this many requests' estimates (the first request's, times this).
  requests: number
  // A lease takes no new draws after this long, and is booked once its draws have ended.
  maxAgeMs: number
}

// A lease takes at most this share of the headroom the store last reported, so instances leave
// each other room and leases shrink as the limit nears.
const HEADROOM_SHARE = 0.25
// A bound on one reservation's turns at leases (each turn is progress: a draw, a lease taken or
// refused); past it, the request reserves in the store directly.
const MAX_TURNS = 64
// A lease stops drawing this long before the store's bucket it was booked into closes (the store's
// clock and this process's differ by the call's own time at most).
const CLOSE_MARGIN_MS = 20
// Headroom and count blocks of lines not used for this long are dropped.
const FORGET_AFTER_MS = 10 * 60_000
// A booking the store did not answer is asked again after 200 ms, 400 ms, ... (6 s in all).
// Counts a period before a process takes them from the store in blocks.
const COUNT_BLOCK_MIN = 4
const BOOKING_RETRIES = 5
const BOOKING_BACKOFF_MS = 200
// The prefix the stores know: a lease still held when it expires is booked whole, not released.
export const LEASE_PREFIX = 'lease:'

interface Amount {
  tokens: number
  micro: number
}

interface Lease {
  id: string
  entity: string
  lines: QuotaLine[]
  key: string
  size: Amount
  // Estimates of the draws still open, and what settled draws used.
  drawn: Amount
  used: Amount
  open: number
  // The most draws open at once: the next lease of its key holds twice that.
  peakOpen: number
  retired: boolean
  createdAt: number
  // No draws from this moment: the lease is old, or a bucket it was booked into closes (what it
  // serves later would be counted as of an earlier time, and fall out of its window too early).
  drawUntil: number
  // What the store had left right after the lease was taken.
  remaining: LineUsage[]
  booked?: Promise<void>
  // The connection to the store broke while it was held: the store may have lost it.
  lost?: boolean
}

interface Draw {
  // Undefined: a reservation of the request's own in the store.
  lease: Lease | undefined
  tokens: number
  micro: number
  expiresAt: number
}

export interface LeaseStats {
  leases: number
  // Reservations served from a lease, and made in the store directly (near a limit).
  local: number
  direct: number
  // Lease bookings the store refused (the lease had expired) or that failed (the store was down):
  // the lease is then booked whole when it expires.
  bookingsMissed: number
  bookingsFailed: number
}

export class LeasedQuotaStore implements QuotaStore {
  readonly stats: LeaseStats = { leases: 0, local: 0, direct: 0, bookingsMissed: 0, bookingsFailed: 0 }
  readonly #active = new Map<string, Lease>()
  // Leases taken and not yet booked: for status(), and for close() to await.
  readonly #held = new Set<Lease>()
  readonly #acquiring = new Map<string, Promise<void>>()
  readonly #draws = new Map<string, Draw>()
  // Reservations under way, by entity and request id: the same id again is answered as reserved.
  readonly #reserving = new Set<string>()
  // The headroom the store last reported, per entity and lines: the next lease's ceiling.
  readonly #headroom = new Map<string, Amount & { at: number }>()
  // The most requests a lease of each key had open at once, the last time one retired: more in
  // flight than a lease holds would retire each lease as soon as it is taken.
  readonly #inFlight = new Map<string, { open: number; at: number }>()
  // Blocks of counts taken from the store, per entity and line.
  readonly #counts = new Map<string, { left: number; served: number; demand: number; expiresAt: number }>()
  readonly #refills = new Map<string, Promise<void>>()
  readonly #instance = randomUUID().slice(0, 12)
  #seq = 0
  readonly #timer: ReturnType<typeof setInterval>

  constructor(
    private readonly backing: QuotaStore,
    private readonly settings: LeaseSettings,
    private readonly clock: () => number = Date.now,
  ) {
    this.#timer = setInterval(() => this.tick(), Math.max(50, Math.floor(settings.maxAgeMs / 2)))
    this.#timer.unref?.()
  }

  async reserve(entity: string, lines: QuotaLine[], input: ReserveInput, now?: number): Promise<ReserveOutcome> {
    checkReserveArgs(entity, lines, input, now)
    const dk = drawKey(entity, input.requestId)
    // Idempotent by request id, as the stores are.
    if (this.#draws.has(dk) || this.#reserving.has(dk)) return { ok: true, remaining: [] }
    this.#reserving.add(dk)
    try {
      return await this.#reserve(dk, entity, lines, input, now)
    } finally {
      this.#reserving.delete(dk)
    }
  }

  async #reserve(dk: string, entity: string, lines: QuotaLine[], input: ReserveInput, now: number | undefined): Promise<ReserveOutcome> {
    const t = now ?? this.clock()
    const key = leaseKey(entity, lines)
    // Each turn draws, or waits for a lease being taken, or takes one: a request that lost the race
    // for a lease's last room tries the next lease, not the store directly (where the leases
    // of its own process would hold the room it needs).
    for (let turn = 0; turn < MAX_TURNS; turn++) {
      const at = now ?? this.clock()
      const lease = this.#active.get(key)
      if (lease) {
        if (at < lease.drawUntil && fits(lease, input)) return this.#draw(lease, dk, input, t)
        // Full while young: one more than it had open was wanted at once.
        if (at < lease.drawUntil) lease.peakOpen = Math.max(lease.peakOpen, lease.open + 1)
        this.#retire(lease)
      }
      // A lease being taken: wait for it, and fail as it failed (the store unreachable), at once.
      const pending = this.#acquiring.get(key)
      if (pending) {
        await pending
        continue
      }
      const size = this.#sizeFor(key, lines, input)
      if (!size) break
      const acquiring = this.#acquire(key, entity, lines, size, input.ttlMs, now)
      this.#acquiring.set(
        key,
        acquiring.then(() => undefined),
      )
      // Nobody may be waiting: the rejection is handled here, and by each waiter.
      this.#acquiring.get(key)?.catch(() => undefined)
      try {
        if (!(await acquiring)) break
      } finally {
        this.#acquiring.delete(key)
      }
    }
    // Near the limit, or the lease refused: the request's own reservation, as without leases.
    const r = await this.backing.reserve(entity, lines, input, now)
    this.#learn(key, r)
    if (r.ok) {
      this.#draws.set(dk, { lease: undefined, tokens: input.tokens, micro: input.micro, expiresAt: t + input.ttlMs })
      this.stats.direct++
    }
    return r
  }

  // A draw from the live lease, when it has room: the common case, without a promise.
  tryReserve(entity: string, lines: QuotaLine[], input: ReserveInput): ReserveOutcome | undefined {
    checkReserveArgs(entity, lines, input, undefined)
    const dk = drawKey(entity, input.requestId)
    if (this.#draws.has(dk) || this.#reserving.has(dk)) return { ok: true, remaining: [] }
    const lease = this.#active.get(leaseKey(entity, lines))
    const t = this.clock()
    if (!lease || t >= lease.drawUntil || !fits(lease, input)) return undefined
    return this.#draw(lease, dk, input, t)
  }

  // A draw from a lease settled in memory (its booking, when it is the last, runs on by itself and
  // close() awaits it); undefined for a reservation of the store's own.
  trySettle(entity: string, requestId: string, tokens: number, micro: number): boolean | undefined {
    checkSettleArgs(entity, requestId, tokens, micro, undefined)
    const dk = drawKey(entity, requestId)
    const d = this.#draws.get(dk)
    if (!d?.lease) return undefined
    this.#draws.delete(dk)
    void this.#undraw(d, { tokens: Math.min(tokens, d.tokens), micro: Math.min(micro, d.micro) })
    return true
  }

  tryRelease(entity: string, requestId: string): boolean | undefined {
    checkReleaseArgs(entity, requestId, undefined)
    const dk = drawKey(entity, requestId)
    const d = this.#draws.get(dk)
    if (!d?.lease) return undefined
    this.#draws.delete(dk)
    void this.#undraw(d, undefined)
    return true
  }

  async settle(entity: string, requestId: string, tokens: number, micro: number, now?: number): Promise<boolean> {
    checkSettleArgs(entity, requestId, tokens, micro, now)
    const dk = drawKey(entity, requestId)
    const d = this.#draws.get(dk)
    if (!d) return false
    this.#draws.delete(dk)
    if (!d.lease) return this.backing.settle(entity, requestId, tokens, micro, now)
    await this.#undraw(d, { tokens: Math.min(tokens, d.tokens), micro: Math.min(micro, d.micro) })
    return true
  }

  async release(entity: string, requestId: string, now?: number): Promise<boolean> {
    checkReleaseArgs(entity, requestId, now)
    const dk = drawKey(entity, requestId)
    const d = this.#draws.get(dk)
    if (!d) return false
    this.#draws.delete(dk)
    if (!d.lease) return this.backing.release(entity, requestId, now)
    await this.#undraw(d, undefined)
    return true
  }

  async shrink(entity: string, requestId: string, tokens: number, micro: number, now?: number): Promise<boolean> {
    checkSettleArgs(entity, requestId, tokens, micro, now)
    const d = this.#draws.get(drawKey(entity, requestId))
    if (!d) return false
    if (!d.lease) return this.backing.shrink(entity, requestId, tokens, micro, now)
    const to = { tokens: Math.min(d.tokens, tokens), micro: Math.min(d.micro, micro) }
    d.lease.drawn.tokens -= d.tokens - to.tokens
    d.lease.drawn.micro -= d.micro - to.micro
    d.tokens = to.tokens
    d.micro = to.micro
    return true
  }

  // The store's figures, with this process's leases counted as what was drawn and used from them
  // (the store sees each whole, as reserved).
  async status(entity: string, lines: QuotaLine[], now?: number): Promise<LineStatus[]> {
    const rows = await this.backing.status(entity, lines, now)
    const at = now ?? this.clock()
    for (const lease of this.#held) {
      // A lease past its bucket (or lost) is no longer in the store's figures for this window.
      if (lease.entity !== entity || lease.booked || lease.lost || at >= lease.createdAt + (Math.min(...lease.remaining.map((l) => l.closes_ms ?? Infinity)) - CLOSE_MARGIN_MS)) continue
      const idle = { tokens: lease.size.tokens - lease.drawn.tokens - lease.used.tokens, micro: lease.size.micro - lease.drawn.micro - lease.used.micro }
      for (const row of rows) {
        if (!lease.lines.some((l) => l.qid === row.qid)) continue
        row.tokens -= idle.tokens
        row.micro -= idle.micro
        row.reserved_tokens -= lease.size.tokens - lease.drawn.tokens
        row.reserved_micro -= lease.size.micro - lease.drawn.micro
      }
    }
    for (const row of rows) {
      row.tokens = Math.max(0, row.tokens)
      row.micro = Math.max(0, row.micro)
      row.reserved_tokens = Math.max(0, row.reserved_tokens)
      row.reserved_micro = Math.max(0, row.reserved_micro)
    }
    return rows
  }

  // Counts (a provider's requests per minute) are taken from Redis in blocks too, once a process
  // counts often enough: a block is counted there whole at once and handed out here for at most
  // lease_max_age_ms. A block is about what the last period served (a quarter more), at most a
  // second's share of the limit (limit / 60): what a process counts and does not use is at most
  // that, per provider, per period, so a request is refused early, never one too many. Under
  // COUNT_BLOCK_MIN counts a period, and for limits under 240 a minute, each is counted alone.
  async count(entity: string, line: QuotaLine, amount: number, now?: number): Promise<CountOutcome> {
    checkCountArgs(entity, line, amount, now)
    const t = now ?? this.clock()
    const key = leaseKey(entity, [line])
    const ceiling = line.token_limit < 0 ? this.settings.requests : Math.floor(line.token_limit / 60)
    for (let turn = 0; turn < MAX_TURNS; turn++) {
      let pool = this.#counts.get(key)
      if (!pool || t >= pool.expiresAt) {
        // A new period: what the last one served is the demand; what it left unused is gone.
        pool = { left: 0, served: 0, demand: pool && t < pool.expiresAt + this.settings.maxAgeMs ? pool.served : 0, expiresAt: t + this.settings.maxAgeMs }
        this.#counts.set(key, pool)
      }
      if (pool.left >= amount) {
        pool.left -= amount
        pool.served += amount
        return { ok: true }
      }
      // One block at a time per line: the others wait for it, then take from it.
      const pending = this.#refills.get(key)
      if (pending) {
        await pending
        continue
      }
      const demand = Math.max(pool.demand, pool.served)
      // A block is handed out only until the store's bucket closes: sized for the part of a period
      // left before then (by this process's clock: sizing only, the store's answer bounds it).
      const left = Math.min(1, Math.max(0, (windowAt(line.mode, line.period, t).closesAt - t) / this.settings.maxAgeMs))
      const block = Math.min(this.settings.requests, ceiling, Math.ceil(demand * 1.25 * left) + amount)
      if (demand < COUNT_BLOCK_MIN || ceiling < COUNT_BLOCK_MIN || block < 2 * amount) break
      const filled = pool
      const refill = this.backing.count(entity, line, block, now)
      // Runs before the await below resumes: the block is in the pool for this turn and the waiters.
      const added = refill.then(
        (r) => {
          if (!r.ok) return
          filled.left += block
          // Handed out no later than the bucket it was counted in closes.
          filled.expiresAt = Math.min(Math.max(filled.expiresAt, t + this.settings.maxAgeMs), t + (r.closes_ms ?? Infinity) - CLOSE_MARGIN_MS)
        },
        () => undefined,
      )
      this.#refills.set(key, added)
      let r: CountOutcome
      try {
        r = await refill
      } finally {
        this.#refills.delete(key)
      }
      if (!r.ok) break
    }
    const r = await this.backing.count(entity, line, amount, now)
    const pool = this.#counts.get(key)
    if (r.ok && pool) pool.served += amount
    return r
  }

  // Retires leases past their age and lets draws past their reservation's ttl go (the store would
  // have stopped counting them); books leases whose draws have all ended.
  tick(now = this.clock()): void {
    for (const lease of [...this.#active.values()]) if (now >= lease.drawUntil) this.#retire(lease)
    for (const [dk, d] of this.#draws) {
      if (d.expiresAt > now) continue
      this.#draws.delete(dk)
      if (d.lease) void this.#undraw(d, undefined)
    }
    // What is known of entities and lines not seen for a while (callers gone, configs replaced)
    // is forgotten, so memory follows the traffic, not its history.
    for (const [key, h] of this.#headroom) if (now - h.at > FORGET_AFTER_MS) this.#headroom.delete(key)
    for (const [key, f] of this.#inFlight) if (now - f.at > FORGET_AFTER_MS) this.#inFlight.delete(key)
    for (const [key, pool] of this.#counts) if (now - pool.expiresAt > FORGET_AFTER_MS) this.#counts.delete(key)
  }

  // The connection to the store broke (Redis restarting, failing over): it may come back without
  // the leases, so none is drawn from again, and counts are taken afresh. Requests already drawn
  // run on and book as usual (without leases, their reservations would be as lost).
  // Returns how many leases were active.
  invalidate(): number {
    const active = [...this.#active.values()]
    for (const lease of active) {
      lease.lost = true
      this.#retire(lease)
    }
    this.#counts.clear()
    return active.length
  }

  // Books every lease (after the last requests settled): for shutdown.
  async close(): Promise<void> {
    clearInterval(this.#timer)
    for (const lease of [...this.#active.values()]) this.#retire(lease)
    await Promise.all([...this.#held].map((l) => l.booked))
  }

  #draw(lease: Lease, dk: string, input: ReserveInput, t: number): ReserveOutcome {
    lease.drawn.tokens += input.tokens
    lease.drawn.micro += input.micro
    lease.open++
    if (lease.open > lease.peakOpen) lease.peakOpen = lease.open
    this.#draws.set(dk, { lease, tokens: input.tokens, micro: input.micro, expiresAt: t + input.ttlMs })
    this.stats.local++
    // What the store has left, plus what this lease still has after this draw.
    const idleTokens = lease.size.tokens - lease.drawn.tokens - lease.used.tokens
    const idleMicro = lease.size.micro - lease.drawn.micro - lease.used.micro
    return {
      ok: true,
      remaining: lease.remaining.map((r) => ({ qid: r.qid, tokens: r.tokens < 0 ? -1 : r.tokens + idleTokens, micro: r.micro < 0 ? -1 : r.micro + idleMicro, reset_ms: r.reset_ms, closes_ms: r.closes_ms })),
    }
  }

  #undraw(d: Draw, used: Amount | undefined): Promise<void> {
    const lease = d.lease!
    lease.drawn.tokens -= d.tokens
    lease.drawn.micro -= d.micro
    lease.open--
    if (used) {
      lease.used.tokens += used.tokens
      lease.used.micro += used.micro
    }
    return lease.retired && lease.open === 0 ? this.#book(lease) : Promise.resolve()
  }

  // A lease's size: the requests it is for, within its share of the headroom last seen; none when
  // that is not worth a lease (room for two requests or less): then each request reserves itself.
  #sizeFor(key: string, lines: QuotaLine[], input: ReserveInput): Amount | undefined {
    // Before the store said what is left, the limits bound it.
    const room = this.#headroom.get(key) ?? limitsOf(lines)
    const share = (left: number | undefined) => (left === undefined || left < 0 ? Infinity : Math.floor(left * HEADROOM_SHARE))
    // Whole requests of this size, so that requests alike leave no room stranded in a lease.
    const per = input.tokens > 0 && input.micro > 0 ? Math.min(Math.floor(share(room?.tokens) / input.tokens), Math.floor(share(room?.micro) / input.micro)) : input.tokens > 0 ? Math.floor(share(room?.tokens) / input.tokens) : input.micro > 0 ? Math.floor(share(room?.micro) / input.micro) : 0
    // At least lease_requests, and twice what was last in flight at once, so that concurrency alone
    // never empties a lease: its room comes back as its draws settle.
    const wanted = Math.max(this.settings.requests, 2 * (this.#inFlight.get(key)?.open ?? 0))
    const requests = Math.min(wanted, per, Math.floor(MAX_AMOUNT / Math.max(1, input.tokens, input.micro)))
    if (requests < 2) return undefined
    return { tokens: input.tokens * requests, micro: input.micro * requests }
  }

  async #acquire(key: string, entity: string, lines: QuotaLine[], size: Amount, ttlMs: number, now: number | undefined): Promise<boolean> {
    const id = `${LEASE_PREFIX}${this.#instance}:${++this.#seq}`
    // Held until its last draw ends: a request's ttl after its last draw at most.
    const r = await this.backing.reserve(entity, lines, { requestId: id, ttlMs: ttlMs + this.settings.maxAgeMs, tokens: size.tokens, micro: size.micro }, now)
    this.#learn(key, r)
    if (!r.ok) return false
    // Times are this process's, taken before the call: the store's moments fall after them.
    const createdAt = now ?? this.clock()
    const closes = Math.min(...r.remaining.map((l) => l.closes_ms ?? Infinity))
    const drawUntil = Math.min(createdAt + this.settings.maxAgeMs, createdAt + closes - CLOSE_MARGIN_MS)
    const lease: Lease = { id, entity, lines, key, size, drawn: { tokens: 0, micro: 0 }, used: { tokens: 0, micro: 0 }, open: 0, peakOpen: 0, retired: false, createdAt, drawUntil, remaining: r.remaining }
    this.#active.set(key, lease)
    this.#held.add(lease)
    this.stats.leases++
    return true
  }

  #retire(lease: Lease): void {
    if (lease.retired) return
    lease.retired = true
    this.#inFlight.set(lease.key, { open: lease.peakOpen, at: this.clock() })
    if (this.#active.get(lease.key) === lease) this.#active.delete(lease.key)
    if (lease.open === 0) return void this.#book(lease)
    // Requests still run on it (a long stream, say): its idle part goes back to the store now, not
    // when the last of them ends. Sent before the booking, so the store applies it first.
    const held = { tokens: lease.used.tokens + lease.drawn.tokens, micro: lease.used.micro + lease.drawn.micro }
    if (held.tokens < lease.size.tokens || held.micro < lease.size.micro) {
      lease.size = held
      void this.backing.shrink(lease.entity, lease.id, held.tokens, held.micro).catch(() => undefined)
    }
  }

  // Books what the lease's draws used (or releases it, none used): one settle for all of them. A
  // store that does not answer (Redis restarting) is asked again (settling is idempotent by id),
  // a few times over some seconds; after that the lease is booked whole when it expires.
  #book(lease: Lease): Promise<void> {
    const once = () => (lease.used.tokens > 0 || lease.used.micro > 0 ? this.backing.settle(lease.entity, lease.id, lease.used.tokens, lease.used.micro) : this.backing.release(lease.entity, lease.id))
    const attempt = async (): Promise<void> => {
      for (let n = 0; ; n++) {
        try {
          if (!(await once())) this.stats.bookingsMissed++
          return
        } catch {
          if (n >= BOOKING_RETRIES) return void this.stats.bookingsFailed++
          await new Promise((resolve) => setTimeout(resolve, BOOKING_BACKOFF_MS * 2 ** n))
        }
      }
    }
    lease.booked ??= attempt().finally(() => this.#held.delete(lease))
    return lease.booked
  }

  // The headroom the store reports: the next lease is sized by it.
  #learn(key: string, r: ReserveOutcome): void {
    if (r.ok) {
      if (r.remaining.length > 0) this.#headroom.set(key, { ...headroomOf(r.remaining), at: this.clock() })
      return
    }
    const left = Math.max(0, r.limit - r.used)
    const known = this.#headroom.get(key) ?? { tokens: -1, micro: -1 }
    this.#headroom.set(key, r.kind === 'tokens' ? { ...known, tokens: left, at: this.clock() } : { ...known, micro: left, at: this.clock() })
  }
}

// The least limit of the lines, per unit; -1 where none limits it.
function limitsOf(lines: QuotaLine[]): Amount {
  return leastOf(lines.map((l) => ({ tokens: l.token_limit, micro: l.micro_limit })))
}

function fits(lease: Lease, input: ReserveInput): boolean {
  return lease.drawn.tokens + lease.used.tokens + input.tokens <= lease.size.tokens && lease.drawn.micro + lease.used.micro + input.micro <= lease.size.micro
}

// The least left on any line, per unit; -1 where no line limits it.
function headroomOf(remaining: LineUsage[]): Amount {
  return leastOf(remaining)
}

// The least of each unit over amounts where -1 means none; -1 when none has it.
function leastOf(amounts: readonly Amount[]): Amount {
  let tokens = -1
  let micro = -1
  for (const a of amounts) {
    if (a.tokens >= 0) tokens = tokens < 0 ? a.tokens : Math.min(tokens, a.tokens)
    if (a.micro >= 0) micro = micro < 0 ? a.micro : Math.min(micro, a.micro)
  }
  return { tokens, micro }
}

function drawKey(entity: string, requestId: string): string {
  return `${entity}\u0000${requestId}`
}

// Keyed by the list's content; the gateway passes the same frozen lists with every request.
const leaseKeys = new WeakMap<QuotaLine[], { entity: string; key: string }>()

function leaseKey(entity: string, lines: QuotaLine[]): string {
  const known = leaseKeys.get(lines)
  if (known?.entity === entity) return known.key
  const key = `${entity}\u0000${JSON.stringify(lines)}`
  if (Object.isFrozen(lines)) leaseKeys.set(lines, { entity, key })
  return key
}
