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
    // Alone: a record already caught failing while others went in stays a suspect while the
    // store answers; a lone record not yet suspected tells nothing.
    if (items.length === 1) return { stored: [], failed: items, isolated: this.tries.has((items[0] as Item).id), error: first }
    // Shuffled, so two bad records in one batch do not meet the same split every round.
    const shuffled = [...items].sort(() => Math.random() - 0.5)
    const half = Math.ceil(shuffled.length / 2)
    const halves = [shuffled.slice(0, half), shuffled.slice(half)]
    const errors = await Promise.all(halves.map((h) => this.insert(h)))
    // Every part refused: the store refuses all writes, unless these are all records already caught
    // failing while others went in (the suspects left over from an earlier round).
    if (errors.every((e) => e !== undefined)) return { stored: [], failed: items, isolated: items.every((i) => this.tries.has(i.id)), error: errors[0] }
    const stored: Item[] = []
    const failed: Item[] = []
    for (const [i, h] of halves.entries()) {
      if (errors[i] === undefined) stored.push(...h)
      else await this.bisect(h, stored, failed)
    }
    return { stored, failed, isolated: true, error: errors.find((e) => e !== undefined) }
  }

  // Splits a part holding a refused record until the refused ones stand alone.
  private async bisect(items: Item[], stored: Item[], failed: Item[]): Promise<void> {
    if (items.length === 1) {
      failed.push(...items)
      return
    }
    const half = Math.ceil(items.length / 2)
    for (const part of [items.slice(0, half), items.slice(half)]) {
      if ((await this.insert(part)) === undefined) stored.push(...part)
      else await this.bisect(part, stored, failed)
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
