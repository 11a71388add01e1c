// Appends each UsageRecord to the usage Redis Stream off the response path; a bounded buffer rides out a Redis blip, and a drop is counted.
import type { Logger } from '../shared/log.ts'
import type { RedisClient } from '../shared/redis.ts'
import type { UsageRecord } from '../shared/usage-event.ts'
import { encodeUsage, RECORD_FIELD, USAGE_STREAM } from '../shared/usage-stream.ts'
import type { UsageSink } from './usage.ts'

export interface StreamSinkOptions {
  // Records held while Redis is unreachable; past this, new records are dropped and counted.
  maxBuffered: number
  // XADDs per pipeline round trip.
  batch: number
  // Wait before trying again after Redis refused a round.
  retryMs: number
}

export interface UsageSinkStats {
  appended: number
  buffered: number
  dropped: number
  // Append rounds Redis refused (each retried later).
  failures: number
}

export class RedisStreamSink implements UsageSink {
  private queue: UsageRecord[] = []
  private flushing = false
  private retry: ReturnType<typeof setTimeout> | undefined
  private idle: Array<() => void> = []
  private lastDropLog = 0
  readonly stats = { appended: 0, dropped: 0, failures: 0 }

  constructor(
    private readonly redis: RedisClient,
    private readonly log: Logger,
    private readonly opts: StreamSinkOptions,
  ) {}

  get buffered(): number {
    return this.queue.length
  }

  append(record: UsageRecord): void {
    if (this.queue.length >= this.opts.maxBuffered) {
      this.stats.dropped++
      // Never silent, but one line a second at most while it lasts.
      const now = Date.now()
      if (now - this.lastDropLog >= 1000) {
        this.lastDropLog = now
        this.log.error('usage record dropped: the stream buffer is full', { request_id: record.request_id, buffered: this.queue.length, dropped_total: this.stats.dropped })
      }
      return
    }
    this.queue.push(record)
    if (!this.flushing && this.retry === undefined) {
      this.flushing = true
      // After the response: the caller never waits on Redis.
      setImmediate(() => void this.flush())
    }
  }

  // Resolves once everything buffered was written, or after ms (shutdown).
  drain(ms: number): Promise<boolean> {
    if (this.queue.length === 0 && !this.flushing) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms)
      this.idle.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
      if (this.retry !== undefined) {
        clearTimeout(this.retry)
        this.retry = undefined
        this.flushing = true
        void this.flush()
      }
    })
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const round = this.queue.slice(0, this.opts.batch)
      let written = 0
      try {
        const pipeline = this.redis.pipeline()
        for (const r of round) pipeline.xadd(USAGE_STREAM, '*', RECORD_FIELD, encodeUsage(r))
        const results = (await pipeline.exec()) ?? []
        // Keep order: stop at the first refused entry and retry from there.
        while (written < round.length && results[written] && !results[written]?.[0]) written++
        if (written < round.length) throw results[written]?.[0] ?? new Error('no reply')
      } catch (err) {
        this.queue.splice(0, written)
        this.stats.appended += written
        this.stats.failures++
        this.log.warn('usage stream unavailable; records kept in memory', { buffered: this.queue.length, err })
        this.flushing = false
        this.retry = setTimeout(() => {
          this.retry = undefined
          this.flushing = true
          void this.flush()
        }, this.opts.retryMs)
        return
      }
      this.queue.splice(0, written)
      this.stats.appended += written
    }
    this.flushing = false
    for (const done of this.idle.splice(0)) done()
  }
}
