// Budgets on the request path: which lines apply to a caller, reserve across entities, settle or release.
import type { ProviderConfig, QuotaRecord, QuotaSettings } from '../../shared/config/schema.ts'
import type { Logger } from '../../shared/log.ts'
import { picoToMicroCeil } from '../../shared/money.ts'
import type { Caller } from '../config-store.ts'
import type { KeyLimits } from '../keys/registry.ts'
import { GatewayError } from '../errors.ts'
import type { Estimate } from './estimate.ts'
import type { CountOutcome, QuotaLine, QuotaStore, ReserveOutcome } from './types.ts'

export interface EntityPlan {
  entity: string
  lines: QuotaLine[]
}

// Plans by config records (one array per config snapshot) and caller: the same objects for every
// request of a caller, so the stores can key their work by them. Never mutated.
const plans = new WeakMap<readonly QuotaRecord[], Map<string, readonly EntityPlan[]>>()

// Lines grouped by entity (user:<client_id>, team:<team_id>, global): one atomic script each.
export function planFor(records: readonly QuotaRecord[], caller: Caller): readonly EntityPlan[] {
  let byCaller = plans.get(records)
  if (!byCaller) {
    byCaller = new Map()
    plans.set(records, byCaller)
  }
  const key = `${caller.client.client_id}\u0000${caller.client.team_id}`
  let plan = byCaller.get(key)
  if (!plan) {
    plan = buildPlan(records, caller)
    byCaller.set(key, plan)
  }
  return plan
}

function buildPlan(records: readonly QuotaRecord[], caller: Caller): readonly EntityPlan[] {
  const byEntity = new Map<string, QuotaRecord[]>()
  for (const q of records) {
    const entity = entityOf(q, caller)
    if (!entity) continue
    byEntity.set(entity, [...(byEntity.get(entity) ?? []), q])
  }
  // Frozen: the stores check a list once, and key leases by it.
  return Object.freeze([...byEntity].map(([entity, qs]) => Object.freeze({ entity, lines: Object.freeze(linesOf(qs).map((l) => Object.freeze(l))) as QuotaLine[] })))
}

// Config records as store lines: limits as integers, -1 for none, dollars as micro-dollars.
export function linesOf(records: readonly QuotaRecord[]): QuotaLine[] {
  return records.map((q) => ({
    qid: q.quota_id,
    mode: q.window,
    period: q.period,
    token_limit: q.token_limit ?? -1,
    micro_limit: q.cost_limit_usd === undefined ? -1 : Math.floor(q.cost_limit_usd * 1_000_000),
  }))
}

function entityOf(q: QuotaRecord, caller: Caller): string | undefined {
  if (q.entity_type === 'global') return 'global'
  const id = q.entity_type === 'user' ? caller.client.client_id : caller.client.team_id
  if (q.entity_id !== undefined && q.entity_id !== id) return undefined
  return `${q.entity_type}:${id}`
}

export interface Reservation {
  // x-ratelimit-* for the tightest line, to send with the response.
  headers: Record<string, string>
  // Books actual usage (tokens, exact cost in pico-dollars), never more than was reserved. Off the
  // response path: resolves once the store answered or failed (never rejects), for shutdown to await.
  settle(tokens: number, costPico: number): Promise<void>
  release(): Promise<void>
}

// Why a settle booked nothing on an entity: its reservation had expired (and been swept), or was
// not there at all (released, settled under the same request id, or lost by the store).
export type SettleSkipReason = 'expired' | 'not_found'

// One rpm line per key version (the leased store counts by the line's content).
const keyLines = new WeakMap<KeyLimits, QuotaLine>()

export class QuotaService {
  // Reservations this process holds that are not yet settled or released (for /metrics).
  outstanding = 0
  // Tokens providers reported beyond what their requests reserved, so not booked (an estimate that
  // fell short; for /metrics). Only grows.
  unbookedTokens = 0
  // Entities whose settle booked nothing, by reason (for /metrics). Only grows.
  readonly settlesSkipped: Record<SettleSkipReason, number> = { expired: 0, not_found: 0 }
  // Settings may be a function, so a config reload reaches a running service. `now` only tells an
  // expired reservation from a missing one (the stores keep their own time).
  constructor(
    private readonly store: QuotaStore,
    private readonly settingsOf: QuotaSettings | (() => QuotaSettings),
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  private get settings(): QuotaSettings {
    return typeof this.settingsOf === 'function' ? this.settingsOf() : this.settingsOf
  }

  // Reserves on every entity or on none: entities are reserved together and, if one refuses,
  // the others are released (a false 429 at worst while that runs, never overspend).
  async reserve(plan: readonly EntityPlan[], requestId: string, est: Pick<Estimate, 'tokens' | 'micro'>): Promise<Reservation | undefined> {
    if (plan.length === 0) return undefined
    const input = { requestId, ttlMs: this.settings.reservation_ttl_ms, tokens: est.tokens, micro: est.micro }
    // When the reservations stop counting, by this process's clock (the store keeps its own): only
    // to tell an expired reservation from a missing one when a settle finds none.
    const expiresAt = this.now() + input.ttlMs
    // Entities a store answers in memory (a lease's room) need no call, and all of them none.
    let quick: Array<ReserveOutcome | undefined> | undefined
    if (this.store.tryReserve) {
      quick = []
      try {
        for (const p of plan) quick.push(this.store.tryReserve(p.entity, p.lines, input))
      } catch (err) {
        // Arguments a store refuses are a bug here: what was drawn goes back, and the error up.
        this.releaseAll(plan.filter((_, i) => quick?.[i]?.ok), requestId, expiresAt)
        throw err
      }
    }
    const results: Array<PromiseSettledResult<ReserveOutcome>> =
      quick?.every((r) => r !== undefined) ? quick.map((value) => ({ status: 'fulfilled', value: value! })) : await Promise.allSettled(plan.map((p, i) => quick?.[i] ?? this.store.reserve(p.entity, p.lines, input)))
    const held = plan.filter((_, i) => {
      const r = results[i]
      return r?.status === 'fulfilled' && r.value.ok
    })
    const failure = results.find((r) => r.status === 'rejected')
    // A store that refuses its arguments is a bug here, not an outage: never served unmetered.
    if (failure && (failure as PromiseRejectedResult).reason instanceof RangeError) {
      this.releaseAll(held, requestId, expiresAt)
      throw (failure as PromiseRejectedResult).reason
    }
    const refusal = results.findIndex((r) => r.status === 'fulfilled' && !r.value.ok)
    if (failure || refusal !== -1) {
      this.releaseAll(held, requestId, expiresAt)
      if (refusal !== -1) {
        const r = results[refusal] as PromiseFulfilledResult<Extract<ReserveOutcome, { ok: false }>>
        throw quotaError(r.value, plan[refusal]?.entity ?? '', r.value.kind === 'tokens' ? est.tokens : est.micro)
      }
      if (this.settings.fail_open) {
        this.log.warn('quota store unavailable, serving unmetered (fail_open)', { request_id: requestId, err: (failure as PromiseRejectedResult).reason })
        return undefined
      }
      throw new GatewayError('dependency_unavailable', 'The quota store is unavailable; the request was not sent.', { cause: (failure as PromiseRejectedResult).reason })
    }
    const headers = rateHeaders(plan, results as Array<PromiseFulfilledResult<Extract<ReserveOutcome, { ok: true }>>>)
    this.outstanding++
    let done = false
    const end = () => {
      if (done) return false
      done = true
      this.outstanding--
      return true
    }
    return {
      headers,
      settle: (tokens, costPico) => {
        if (!end()) return Promise.resolve()
        // What was reserved is the most a request may book: the budget never goes past its limit on
        // a provider's word, and a report that is not a count books the reservation whole.
        const booked = bookable(tokens, est.tokens)
        if (Number.isSafeInteger(tokens) && tokens > booked) this.unbookedTokens += tokens - booked
        const micro = bookable(picoToMicroCeil(costPico), est.micro)
        return this.finish('settle', plan, requestId, expiresAt, (p) => this.store.settle(p.entity, requestId, booked, micro), this.store.trySettle && ((p) => this.store.trySettle!(p.entity, requestId, booked, micro)))
      },
      release: () => (end() ? this.releaseAll(plan, requestId, expiresAt) : Promise.resolve()),
    }
  }

  // A provider's rate_limit_rpm as a sliding minute of admitted requests, counted in the window's
  // buckets (a second each): one store call per admission, no record of it, no settlement, so its
  // cost stays flat under sustained load. Returns undefined when admitted, else ms until a slot
  // frees. The bucket of the oldest second counts whole, so the window is a minute plus up to a
  // second: never more requests than the limit in any minute.
  async admitProvider(provider: ProviderConfig): Promise<number | undefined> {
    if (provider.rate_limit_rpm === undefined) return undefined
    const line: QuotaLine = { qid: 'rpm', mode: 'sliding', period: 'minute', token_limit: provider.rate_limit_rpm, micro_limit: -1 }
    let r: CountOutcome
    try {
      r = await this.store.count(`provider:${provider.provider_id}`, line, 1)
    } catch (err) {
      if (this.settings.fail_open) return undefined
      throw new GatewayError('dependency_unavailable', 'The quota store is unavailable; the request was not sent.', { cause: err })
    }
    return r.ok ? undefined : r.retry_after_ms
  }

  // A runtime key's rpm_limit, as a provider's: a sliding minute of admitted requests counted in
  // buckets. Throws its 429 (with OpenAI's x-ratelimit-*-requests headers) when it is spent.
  async admitKey(key: KeyLimits | undefined): Promise<void> {
    if (!key || key.rpm_limit === null) return
    let line = keyLines.get(key)
    if (!line) {
      line = Object.freeze({ qid: 'rpm', mode: 'sliding', period: 'minute', token_limit: key.rpm_limit, micro_limit: -1 }) as QuotaLine
      keyLines.set(key, line)
    }
    let r: CountOutcome
    try {
      r = await this.store.count(`key:${key.key_id}`, line, 1)
    } catch (err) {
      if (this.settings.fail_open) return
      throw new GatewayError('dependency_unavailable', 'The quota store is unavailable; the request was not sent.', { cause: err })
    }
    if (r.ok) return
    const seconds = Math.max(1, Math.ceil(r.retry_after_ms / 1000))
    throw new GatewayError('rate_limit_exceeded', `Rate limit of this API key reached: ${key.rpm_limit} requests per minute. Retry in ${seconds} s.`, {
      retryAfterSeconds: seconds,
      headers: { 'x-ratelimit-limit-requests': String(key.rpm_limit), 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': `${seconds}s` },
    })
  }

  private releaseAll(plan: readonly EntityPlan[], requestId: string, expiresAt: number): Promise<void> {
    return this.finish('release', plan, requestId, expiresAt, (p) => this.store.release(p.entity, requestId), this.store.tryRelease && ((p) => this.store.tryRelease!(p.entity, requestId)))
  }

  // Off the response path; a failure leaves the reservation to expire after reservation_ttl_ms.
  // The store answers false for an entity that held no reservation: the log says so, not "booked".
  // quick: the store's in-memory answer for an entity, when it has one (undefined: ask run).
  private finish(op: 'settle' | 'release', plan: readonly EntityPlan[], requestId: string, expiresAt: number, run: (p: EntityPlan) => Promise<boolean>, quick?: (p: EntityPlan) => boolean | undefined): Promise<void> {
    const done = (found: readonly boolean[]) => this.#finished(op, plan, requestId, expiresAt, found)
    let known: Array<boolean | undefined> | undefined
    try {
      known = quick && plan.map(quick)
    } catch (err) {
      return Promise.resolve(this.log.warn('quota settle/release failed; the reservation will expire', { request_id: requestId, err }))
    }
    if (known?.every((f) => f !== undefined)) return Promise.resolve(done(known as boolean[]))
    return Promise.all(plan.map((p, i) => known?.[i] ?? run(p))).then(done, (err: unknown) => this.log.warn('quota settle/release failed; the reservation will expire', { request_id: requestId, err }))
  }

  #finished(op: 'settle' | 'release', plan: readonly EntityPlan[], requestId: string, expiresAt: number, found: readonly boolean[]): void {
    const missed = plan.filter((_, i) => !found[i]).map((p) => p.entity)
    if (missed.length === 0) return this.log.debug(op === 'settle' ? 'quota booked' : 'quota released', { request_id: requestId })
    const reason: SettleSkipReason = this.now() >= expiresAt ? 'expired' : 'not_found'
    const fields = { request_id: requestId, reason, entities: missed, ...(missed.length < plan.length ? { done_entities: plan.length - missed.length } : {}) }
    // A reservation gone before its release had stopped counting anyway: nothing is lost.
    if (op === 'release') return this.log.debug('quota release skipped', fields)
    this.settlesSkipped[reason] += missed.length
    // The request's usage was not charged to these budgets.
    this.log.warn('quota settle skipped', fields)
  }
}

function bookable(actual: number, reserved: number): number {
  return Number.isSafeInteger(actual) && actual >= 0 ? Math.min(actual, reserved) : reserved
}

// `needed`: what this request reserves, in the refusing line's unit. A request that needs more than
// the whole limit can never be admitted, so it is not told to retry.
function quotaError(r: Extract<ReserveOutcome, { ok: false }>, entity: string, needed: number): GatewayError {
  const amount = (n: number) => (r.kind === 'tokens' ? `${n} tokens` : `$${(n / 1e6).toFixed(6)}`)
  if (needed > r.limit) {
    return new GatewayError(
      'request_exceeds_budget',
      `Budget '${r.qid}' (${entity}) allows ${amount(r.limit)} in all, and this request may use up to ${amount(needed)} (its input plus its output cap${r.kind === 'cost' ? ' at the target\'s prices' : ''}). Lower max_tokens or n, or send less.`,
      { param: `quota:${r.qid}` },
    )
  }
  const seconds = Math.max(1, Math.ceil(r.retry_after_ms / 1000))
  const what = r.kind === 'tokens' ? `${r.used} of ${r.limit} tokens` : `$${(r.used / 1e6).toFixed(6)} of $${(r.limit / 1e6).toFixed(6)}`
  return new GatewayError(
    r.kind === 'tokens' ? 'token_quota_exceeded' : 'cost_quota_exceeded',
    `Budget '${r.qid}' (${entity}) would be exceeded by this request: ${what} already used or reserved. Retry in ${seconds} s.`,
    { param: `quota:${r.qid}`, retryAfterSeconds: seconds, headers: limitHeaders(r.kind, r.limit, Math.max(0, r.limit - r.used), seconds) },
  )
}

function rateHeaders(plan: readonly EntityPlan[], results: Array<PromiseFulfilledResult<Extract<ReserveOutcome, { ok: true }>>>): Record<string, string> {
  const headers: Record<string, string> = {}
  let tightestTokens: { limit: number; left: number; reset: number } | undefined
  let tightestCost: { limit: number; left: number; reset: number } | undefined
  plan.forEach((p, i) => {
    for (const rem of results[i]?.value.remaining ?? []) {
      const line = p.lines.find((l) => l.qid === rem.qid)
      if (!line) continue
      if (line.token_limit >= 0 && (!tightestTokens || rem.tokens < tightestTokens.left)) tightestTokens = { limit: line.token_limit, left: rem.tokens, reset: rem.reset_ms }
      if (line.micro_limit >= 0 && (!tightestCost || rem.micro < tightestCost.left)) tightestCost = { limit: line.micro_limit, left: rem.micro, reset: rem.reset_ms }
    }
  })
  if (tightestTokens) Object.assign(headers, limitHeaders('tokens', tightestTokens.limit, tightestTokens.left, Math.ceil(tightestTokens.reset / 1000)))
  if (tightestCost) Object.assign(headers, limitHeaders('cost', tightestCost.limit, tightestCost.left, Math.ceil(tightestCost.reset / 1000)))
  return headers
}

// OpenAI-style x-ratelimit-* headers; cost in USD.
function limitHeaders(kind: 'tokens' | 'cost', limit: number, left: number, resetSeconds: number): Record<string, string> {
  if (kind === 'tokens') {
    return { 'x-ratelimit-limit-tokens': String(limit), 'x-ratelimit-remaining-tokens': String(left), 'x-ratelimit-reset-tokens': `${resetSeconds}s` }
  }
  return { 'x-ratelimit-limit-usd': (limit / 1e6).toFixed(6), 'x-ratelimit-remaining-usd': (left / 1e6).toFixed(6), 'x-ratelimit-reset-usd': `${resetSeconds}s` }
}
