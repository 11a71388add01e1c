// The quota store contract: per-entity reservations against budget lines, idempotent by request id.

export type QuotaMode = 'fixed' | 'sliding'
export type QuotaPeriod = 'minute' | 'day' | 'month'

// One budget line of an entity; a limit of -1 means none.
export interface QuotaLine {
  qid: string
  mode: QuotaMode
  period: QuotaPeriod
  token_limit: number
  micro_limit: number
}

export interface LineUsage {
  qid: string
  // used + reserved in the window (status), or what is left after this reservation (reserve).
  tokens: number
  micro: number
  // ms until the window's oldest usage stops counting.
  reset_ms: number
  // reserve only: ms until the bucket the reservation was booked into closes.
  closes_ms?: number
}

export interface LineStatus extends LineUsage {
  // The part of tokens / micro held by reservations still in flight.
  reserved_tokens: number
  reserved_micro: number
}

export type ReserveOutcome =
  | { ok: true; remaining: LineUsage[] }
  | { ok: false; qid: string; kind: 'tokens' | 'cost'; limit: number; used: number; retry_after_ms: number }

// A count against one line, booked as used at once (nothing to settle): a provider's requests per
// minute. Refused when it would pass the line's token limit.
// closes_ms: until the bucket the count was booked into closes.
export type CountOutcome = { ok: true; closes_ms?: number } | { ok: false; limit: number; used: number; retry_after_ms: number }

export interface ReserveInput {
  requestId: string
  ttlMs: number
  tokens: number
  micro: number
}

// `now` is for tests only: the Redis store otherwise reads Redis TIME, the memory store Date.now().
export interface QuotaStore {
  reserve(entity: string, lines: QuotaLine[], input: ReserveInput, now?: number): Promise<ReserveOutcome>
  // Books actual usage for a reservation; false when there was none (already settled, released or expired).
  settle(entity: string, requestId: string, tokens: number, micro: number, now?: number): Promise<boolean>
  release(entity: string, requestId: string, now?: number): Promise<boolean>
  status(entity: string, lines: QuotaLine[], now?: number): Promise<LineStatus[]>
  // A held reservation counts only this much from now on (never more than it did); false when
  // there is none.
  shrink(entity: string, requestId: string, tokens: number, micro: number, now?: number): Promise<boolean>
  // Optional fast paths, answered in memory without a promise when the store can (a lease's room):
  // undefined means ask the method of the same name.
  tryReserve?(entity: string, lines: QuotaLine[], input: ReserveInput): ReserveOutcome | undefined
  trySettle?(entity: string, requestId: string, tokens: number, micro: number): boolean | undefined
  tryRelease?(entity: string, requestId: string): boolean | undefined
  // O(1) in the traffic: no record per count, only the window's bucket counters.
  count(entity: string, line: QuotaLine, amount: number, now?: number): Promise<CountOutcome>
}
