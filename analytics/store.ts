// The usage store on ClickHouse, and the in-process path that feeds it without Redis.
import type { Logger } from '../shared/log.ts'
import type { UsageRecord } from '../shared/usage-event.ts'
import type { ClickHouse } from './clickhouse.ts'
import type { UsageStore } from './drain.ts'
import { insertUsage } from './usage-table.ts'

export function clickHouseStore(ch: ClickHouse): UsageStore {
  return {
    insert: (records) => insertUsage(ch, records),
    reachable: async () => {
      try {
        await ch.query('SELECT 1 AS ok')
        return true
      } catch {
        return false
      }
    },
  }
}

// Remembers the UTC days of the records stored since last asked: the days whose rollup is stale,
// whenever their records arrive (a backlog drained after an outage lands on old days).
export function trackDays(store: UsageStore): { store: UsageStore; takeStaleDays(): string[]; markStale(day: string): void } {
  let stale = new Set<string>()
  return {
    store: {
      insert: async (records) => {
        await store.insert(records)
        for (const r of records) stale.add(r.created_at.slice(0, 10))
      },
      reachable: () => store.reachable(),
    },
    markStale(day) {
      stale.add(day)
    },
    takeStaleDays() {
      const days = [...stale].sort()
      stale = new Set()
      return days
    },
  }
}

export interface InProcessOptions {
  batchSize: number
  flushMs: number
  // Records held while the store is unreachable; past this they are dropped and counted.
  maxBuffered: number
  retryMs: number
}

// Without Redis the gateway hands records straight to this (same process): batched by size or
// time, retried while the store is down, a drop counted and logged, never silent.
export class InProcessUsageSink {
  private queue: UsageRecord[] = []
  private timer: ReturnType<typeof setTimeout> | undefined
  private writing: Promise<void> | undefined
  readonly stats = { inserted: 0, dropped: 0 }

  constructor(
    private readonly store: UsageStore,
    private readonly log: Logger,
    private readonly opts: InProcessOptions,
  ) {}

  get buffered(): number {
    return this.queue.length
  }

  append(record: UsageRecord): void {
    if (this.queue.length >= this.opts.maxBuffered) {
      this.stats.dropped++
      this.log.error('usage record dropped: the in-process buffer is full', { request_id: record.request_id, dropped_total: this.stats.dropped })
      return
    }
    this.queue.push(record)
    if (this.queue.length >= this.opts.batchSize) this.kick(0)
    else this.kick(this.opts.flushMs)
  }

  // Writes what is buffered; resolves when done or after ms.
  async drain(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (this.queue.length > 0 || this.writing) {
      const left = deadline - Date.now()
      if (left <= 0) return false
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([this.writing ?? this.write(), new Promise((resolve) => (timer = setTimeout(resolve, left)))])
      clearTimeout(timer)
    }
    return true
  }

  private kick(delay: number): void {
    if (this.writing || (this.timer && delay > 0)) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.write()
    }, delay)
  }

  private write(): Promise<void> {
    this.writing ??= (async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.slice(0, this.opts.batchSize)
        try {
          await this.store.insert(batch)
        } catch (err) {
          this.log.warn('usage store unavailable; records kept in memory', { buffered: this.queue.length, err })
          await new Promise((resolve) => setTimeout(resolve, this.opts.retryMs))
          continue
        }
        this.queue.splice(0, batch.length)
        this.stats.inserted += batch.length
      }
    })().finally(() => {
      this.writing = undefined
    })
    return this.writing
  }
}
