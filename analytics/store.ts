// The usage store on ClickHouse, and the in-process path that feeds it without Redis.
import type { Logger } from '../shared/log.ts'
import type { UsageRecord } from '../shared/usage-event.ts'
import type { ClickHouse } from './clickhouse.ts'
import type { UsageStore } from './drain.ts'
import { insertUsage } from './usage-table.ts'
import { BatchWriter, PROBE } from './batch-writer.ts'

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
        // The UTC day, as ClickHouse files it, whatever offset the timestamp was written with.
        for (const r of records) if (r.request_id !== PROBE.request_id) stale.add(new Date(r.created_at).toISOString().slice(0, 10))
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
  maxRetryMs: number
  maxTries: number
}

// Without Redis the gateway hands records straight to this (same process): batched by size or
// time, written by the same BatchWriter as the stream drain (waits out outages, sets aside a record
// the store keeps refusing, as an error log line holding the whole record); a drop is counted and
// logged, never silent.
export class InProcessUsageSink {
  private queue: UsageRecord[] = []
  private timer: ReturnType<typeof setTimeout> | undefined
  private writing: Promise<void> | undefined
  private stopping = false
  private seq = 0
  private readonly writer: BatchWriter
  readonly stats = { inserted: 0, dropped: 0, dead_lettered: 0 }

  constructor(
    store: UsageStore,
    private readonly log: Logger,
    private readonly opts: InProcessOptions,
  ) {
    this.writer = new BatchWriter(store, log, { maxTries: opts.maxTries, retryMs: opts.retryMs, maxRetryMs: opts.maxRetryMs })
  }

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

  // Writes what is buffered now (a rollup on demand wants the records just taken), for at most ms.
  async flush(ms: number): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    const until = Date.now() + ms
    while (this.queue.length > 0 && !this.stopping && Date.now() < until) await (this.writing ?? this.write())
    await this.writing
  }

  // Writes what is buffered; after ms (shutdown) stops waiting and says how many are left.
  async drain(ms: number): Promise<number> {
    clearTimeout(this.timer)
    const deadline = setTimeout(() => {
      this.stopping = true
    }, ms)
    try {
      while (this.queue.length > 0 && !this.stopping) await (this.writing ?? this.write())
      await this.writing
    } finally {
      clearTimeout(deadline)
      this.stopping = true
    }
    return this.queue.length
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
      while (this.queue.length > 0 && !this.stopping) {
        const batch = this.queue.splice(0, this.opts.batchSize)
        const left = await this.writer.write(
          batch.map((record) => ({ id: String(++this.seq), record })),
          {
            stored: async (done) => {
              this.stats.inserted += done.length
            },
            dead: async (item, reason) => {
              this.stats.dead_lettered++
              this.log.error('usage record set aside: the store keeps refusing it', { reason, record: item.record })
            },
            stopping: () => this.stopping,
          },
        )
        if (left.length > 0) this.queue.unshift(...left.map((i) => i.record))
      }
    })().finally(() => {
      this.writing = undefined
    })
    return this.writing
  }
}
