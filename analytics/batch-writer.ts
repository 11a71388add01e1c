// Writes a batch of usage records to the store: waits out outages, isolates a record the store refuses while taking others, and sets it aside after a few tries.
import type { Logger } from '../shared/log.ts'
import type { UsageRecord } from '../shared/usage-event.ts'
import type { UsageStore } from './drain.ts'

export interface Item {
  // The stream entry id, or any unique id for records that never were in a stream.
  id: string
  record: UsageRecord
}

export interface WriteHooks {
  // The store took these (acknowledge them).
  stored(items: readonly Item[]): Promise<void>
  // Refused maxTries times while other records went in: set it aside.
  dead(item: Item, reason: string): Promise<void>
  // Give up waiting (shutdown): what is left stays unwritten (pending in the stream).
  stopping(): boolean
}

export interface WriterOptions {
  maxTries: number
  retryMs: number
  maxRetryMs: number
}

// Written to check that the store takes writes: always the same row (one per request_id survives),
// on 1970-01-02, a day no cost query or scheduled rollup looks at, with nothing to bill.
export const PROBE: UsageRecord = {
  request_id: '__write_probe__',
  client_request_id: null,
  client_id: '__probe__',
  team_id: '__probe__',
  provider_id: '',
  model: '',
  upstream_model: '',
  input_tokens: 0,
  output_tokens: 0,
  cached_input_tokens: 0,
  cache_write_input_tokens: 0,
  reasoning_tokens: 0,
  usage_estimated: false,
  cost_pico: 0,
  cost_usd: 0,
  latency_ms: 0,
  ttfb_ms: null,
  status: 'success',
  http_status: 200,
  error_type: null,
  error_code: null,
  stream: false,
  client_closed: false,
  attempts: 0,
  attempt_log: [],
  created_at: '1970-01-02T00:00:00.000Z',
}

interface Round {
  stored: Item[]
  failed: Item[]
  // The failed items were each refused alone while others went in: suspects, not an outage.
  isolated: boolean
  error: unknown
}

export class BatchWriter {
  private readonly tries = new Map<string, number>()
  unreachableSince: number | undefined

  constructor(
    private readonly store: UsageStore,
    private readonly log: Logger,
    private readonly opts: WriterOptions,
  ) {}

  // Resolves once every item is stored or set aside; or, when stopping() says so during a wait,
  // with the items still unwritten.
  async write(items: readonly Item[], hooks: WriteHooks): Promise<Item[]> {
    let pending = [...items]
    let backoff = this.opts.retryMs
    while (pending.length > 0) {
      const round = await this.attempt(pending)
      if (round.stored.length > 0) await hooks.stored(round.stored)
      for (const item of round.stored) this.tries.delete(item.id)
      if (round.failed.length === 0) {
        if (this.unreachableSince !== undefined) {
          this.log.info('usage store reachable again', { down_ms: Date.now() - this.unreachableSince })
          this.unreachableSince = undefined
        }
        return []
      }
      pending = []
      for (const item of round.failed) {
        if (!round.isolated) {
          pending.push(item)
          continue
        }
        const tries = (this.tries.get(item.id) ?? 0) + 1
        if (tries < this.opts.maxTries) {
          this.tries.set(item.id, tries)
          pending.push(item)
          continue
        }
        this.tries.delete(item.id)
        await hooks.dead(item, `refused by the store ${tries} times while other records went in: ${String(round.error).slice(0, 300)}`)
      }
      if (pending.length === 0) return []
      if (!round.isolated) {
        // Nothing went in: the store is down, or refuses every write (too many parts, read-only,
        // out of memory). Wait; no record is blamed.
        if (this.unreachableSince === undefined) {
          this.unreachableSince = Date.now()
          this.log.warn('usage store unreachable or refusing writes; the batch waits', { records: pending.length, err: round.error })
        }
      }
      if (hooks.stopping()) return pending
      await new Promise((resolve) => setTimeout(resolve, backoff))
      backoff = Math.min(backoff * 2, this.opts.maxRetryMs)
    }
    return []
  }

  private async attempt(items: Item[]): Promise<Round> {
    const first = await this.insert(items)
    if (first === undefined) return { stored: items, failed: [], isolated: false, error: undefined }
    const reachable = await this.store.reachable().catch(() => false)
    if (!reachable) return { stored: [], failed: items, isolated: false, error: first }
    // Does the store take writes at all? The probe record says: refused too, the store is the
    // problem (too many parts, read-only, out of memory) and the batch waits like in an outage.
    if ((await this.insert([{ id: PROBE.request_id, record: PROBE }])) !== undefined) return { stored: [], failed: items, isolated: false, error: first }
    // The store works and refuses something in this batch: split until the refused records stand
    // alone; they are the suspects.
    const stored: Item[] = []
    const failed: Item[] = []
    await this.bisect(items, stored, failed, true)
    return { stored, failed, isolated: true, error: first }
  }

  // Splits a part holding a refused record until the refused ones stand alone (`known`: the part
  // itself was just refused, so it is split without trying it again).
  private async bisect(items: Item[], stored: Item[], failed: Item[], known = false): Promise<void> {
    if (items.length === 1) {
      if (!known && (await this.insert(items)) === undefined) stored.push(...items)
      else failed.push(...items)
      return
    }
    const half = Math.ceil(items.length / 2)
    for (const part of [items.slice(0, half), items.slice(half)]) {
      if ((await this.insert(part)) === undefined) stored.push(...part)
      else await this.bisect(part, stored, failed, true)
    }
  }

  private async insert(items: readonly Item[]): Promise<unknown> {
    try {
      await this.store.insert(items.map((i) => i.record))
      return undefined
    } catch (err) {
      return err ?? new Error('insert failed')
    }
  }
}
