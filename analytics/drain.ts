// Drains the usage stream into a store: XREADGROUP → batch → insert → XACK, reclaiming dead consumers' entries, dead-lettering poison, trimming only what every group acknowledged.
import type { Logger } from '../shared/log.ts'
import type { RedisClient } from '../shared/redis.ts'
import type { UsageRecord } from '../shared/usage-event.ts'
import { decodeUsage, USAGE_DEAD_LETTERS, USAGE_GROUP, USAGE_STREAM } from '../shared/usage-stream.ts'
import { BatchWriter, type Item } from './batch-writer.ts'

// Where records go: ClickHouse in production (idempotent by request_id, so a redelivered record
// is stored once).
export interface UsageStore {
  insert(records: readonly UsageRecord[]): Promise<void>
  // Whether the store answers at all: tells an outage (wait) from a record it refuses (poison).
  reachable(): Promise<boolean>
}

export interface DrainOptions {
  // This worker's name in the group; a restarted worker with the same name takes its own
  // pending entries back first.
  consumer: string
  batchSize: number
  // A partial batch is written once its oldest record is this old.
  flushMs: number
  // Entries another consumer has held this long without acknowledging are taken over.
  claimIdleMs: number
  // A record the store refused this many times while it took others goes to the dead-letter
  // stream instead of blocking the ones behind it.
  maxDeliveries: number
  // Backoff while the store is unreachable: doubles up to the max.
  retryMs: number
  maxRetryMs: number
  trimEveryMs: number
}

export interface DrainStats {
  inserted: number
  batches: number
  dead_lettered: number
  // Entries read but not yet acknowledged by this worker (the batch in hand).
  in_hand: number
  last_insert_at: number | undefined
  store_unreachable_since: number | undefined
}

interface Entry {
  id: string
  fields: string[]
}

type StreamReply = Array<[string, Array<[string, string[]]>]> | null

// The ids a trim may drop: below every group's oldest pending entry (or its last delivered one).
export async function safeTrimPoint(redis: RedisClient): Promise<string | undefined> {
  const groups = (await redis.xinfo('GROUPS', USAGE_STREAM)) as unknown[][]
  let bound: string | undefined
  for (const g of groups) {
    const info = pairs(g)
    const name = String(info.name)
    let groupBound = String(info['last-delivered-id'])
    if (Number(info.pending) > 0) {
      const summary = (await redis.xpending(USAGE_STREAM, name)) as [number, string | null, string | null, unknown]
      if (summary[1]) groupBound = summary[1]
    }
    if (bound === undefined || compareIds(groupBound, bound) < 0) bound = groupBound
  }
  return bound === '0-0' ? undefined : bound
}

export class StreamDrain {
  private running = false
  private stopped: Promise<void> | undefined
  private batch: Entry[] = []
  private batchSince = 0
  private lastClaim = 0
  private claimCursor = '0-0'
  private lastTrim = 0
  private readonly writer: BatchWriter
  readonly stats: DrainStats = { inserted: 0, batches: 0, dead_lettered: 0, in_hand: 0, last_insert_at: undefined, store_unreachable_since: undefined }

  constructor(
    private readonly redis: RedisClient,
    private readonly store: UsageStore,
    private readonly log: Logger,
    private readonly opts: DrainOptions,
    // The loop hit an error it cannot go on from: the process should exit so it is restarted.
    private readonly onFatal: (err: unknown) => void = () => {},
  ) {
    this.writer = new BatchWriter(store, log, { maxTries: opts.maxDeliveries, retryMs: opts.retryMs, maxRetryMs: opts.maxRetryMs })
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.stopped = this.run().catch((err: unknown) => {
      // An error while stopping (Redis disconnected under a timed-out stop) is not a crash.
      const stopping = !this.running
      this.running = false
      this.log.error('usage drain stopped on an error', { err, stopping })
      if (!stopping) this.onFatal(err)
    })
  }

  // Stops reading, writes the batch in hand (acknowledging what the store took), resolves; after
  // ms at most (Redis or the store down), with the rest left pending for the next worker.
  async stop(ms = 10_000): Promise<boolean> {
    this.running = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const done = await Promise.race([this.stopped?.then(() => true) ?? true, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))])
    clearTimeout(timer)
    return done
  }

  private async run(): Promise<void> {
    await this.ensureGroup()
    // After a crash, this consumer's own delivered-but-unacknowledged entries come first (read
    // back with id 0); other consumers' idle entries are reclaimed later, never this worker's own.
    let cursor = '0'
    this.lastClaim = Date.now()
    while (this.running) {
      const now = Date.now()
      if (now - this.lastClaim >= this.opts.claimIdleMs / 2 && this.batch.length < this.opts.batchSize) {
        this.lastClaim = now
        await this.reclaim()
      }
      const room = this.opts.batchSize - this.batch.length
      // COUNT 0 would mean "no limit" to Redis: a full batch is written before reading more.
      if (room > 0) {
        const wait = this.batch.length === 0 ? 1000 : Math.max(1, Math.min(1000, this.opts.flushMs - (now - this.batchSince)))
        let reply: StreamReply
        try {
          reply =
            cursor === '0'
              ? ((await this.redis.xreadgroup('GROUP', USAGE_GROUP, this.opts.consumer, 'COUNT', room, 'STREAMS', USAGE_STREAM, '0')) as StreamReply)
              : ((await this.redis.xreadgroup('GROUP', USAGE_GROUP, this.opts.consumer, 'COUNT', room, 'BLOCK', wait, 'STREAMS', USAGE_STREAM, '>')) as StreamReply)
        } catch (err) {
          if (!this.running) break
          this.log.warn('usage stream read failed', { err })
          await sleep(this.opts.retryMs)
          if (isNoGroup(err)) await this.ensureGroup()
          continue
        }
        const entries = toEntries(reply)
        if (cursor === '0' && entries.length < room) cursor = '>'
        this.take(entries)
      }
      if (this.batch.length >= this.opts.batchSize || (this.batch.length > 0 && Date.now() - this.batchSince >= this.opts.flushMs)) await this.flush()
      if (Date.now() - this.lastTrim >= this.opts.trimEveryMs) {
        this.lastTrim = Date.now()
        await this.trim()
      }
    }
    // Graceful stop: the batch in hand is written and acknowledged, or left pending for the next
    // worker (never lost, never half-acknowledged).
    if (this.batch.length > 0) await this.flush()
  }

  private take(entries: Entry[]): void {
    const fresh = entries.filter((e) => !this.batch.some((b) => b.id === e.id))
    if (fresh.length === 0) return
    if (this.batch.length === 0) this.batchSince = Date.now()
    this.batch.push(...fresh)
    this.stats.in_hand = this.batch.length
  }

  private async ensureGroup(): Promise<void> {
    try {
      // From the start of the stream: records appended before the first worker ran are read too.
      await this.redis.xgroup('CREATE', USAGE_STREAM, USAGE_GROUP, '0', 'MKSTREAM')
    } catch (err) {
      if (!String(err).includes('BUSYGROUP')) throw err
    }
  }

  // Entries another consumer held idle for claimIdleMs: taken over, walking the pending list with
  // XAUTOCLAIM's cursor. How often an entry was delivered says nothing here (consumers restarted
  // under new names during an outage claim it again and again): only the BatchWriter, which sees
  // the store refuse a record while it takes others, sets one aside.
  private async reclaim(): Promise<void> {
    try {
      const room = this.opts.batchSize - this.batch.length
      const [next, claimed] = (await this.redis.xautoclaim(USAGE_STREAM, USAGE_GROUP, this.opts.consumer, this.opts.claimIdleMs, this.claimCursor, 'COUNT', room)) as [
        string,
        Array<[string, string[]] | null>,
      ]
      this.claimCursor = next
      const entries = claimed.flatMap((e) => (e ? [{ id: e[0], fields: e[1] }] : []))
      if (entries.length === 0) return
      this.log.info('took over usage entries from an idle consumer', { entries: entries.length })
      this.take(entries)
    } catch (err) {
      this.log.warn('usage reclaim failed', { err })
    }
  }

  // Writes the batch: acknowledged as the store takes it; a malformed entry or a record the store
  // keeps refusing goes to the dead letters; during an outage it waits (and on stop stays pending).
  private async flush(): Promise<void> {
    const items: Item[] = []
    for (const entry of this.batch) {
      const record = decodeUsage(entry.fields)
      if (record instanceof Error) await this.deadLetter(entry, record.message)
      else items.push({ id: entry.id, record })
    }
    const byId = new Map(this.batch.map((e) => [e.id, e]))
    await this.writer.write(items, {
      stored: async (done) => {
        await this.ack(done.map((i) => i.id))
        this.stats.inserted += done.length
        this.stats.batches++
        this.stats.last_insert_at = Date.now()
      },
      dead: (item, reason) => this.deadLetter(byId.get(item.id) as Entry, reason),
      stopping: () => {
        this.stats.store_unreachable_since = this.writer.unreachableSince
        return !this.running
      },
    })
    this.stats.store_unreachable_since = this.writer.unreachableSince
    this.batch = []
    this.stats.in_hand = 0
  }

  private async ack(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.redis.xack(USAGE_STREAM, USAGE_GROUP, ...ids)
  }

  // The entry, why, and where it came from, appended to the dead-letter stream; then acknowledged
  // (in one MULTI, so it is never both gone and not set aside).
  private async deadLetter(entry: Entry, reason: string): Promise<void> {
    await this.redis
      .multi()
      .xadd(USAGE_DEAD_LETTERS, '*', 'source_id', entry.id, 'reason', reason, ...entry.fields)
      .xack(USAGE_STREAM, USAGE_GROUP, entry.id)
      .exec()
    this.stats.dead_lettered++
    this.log.error('usage entry dead-lettered', { entry_id: entry.id, reason })
  }

  private async trim(): Promise<void> {
    try {
      const bound = await safeTrimPoint(this.redis)
      if (bound) await this.redis.xtrim(USAGE_STREAM, 'MINID', bound)
    } catch (err) {
      this.log.warn('usage stream trim failed', { err })
    }
  }
}

function toEntries(reply: StreamReply): Entry[] {
  const out: Entry[] = []
  for (const [, entries] of reply ?? []) for (const [id, fields] of entries) out.push({ id, fields })
  return out
}

function pairs(list: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = list[i + 1]
  return out
}

// Stream ids are `<ms>-<seq>`: compared as numbers, not strings.
export function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt)
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt)
  return am === bm ? Number(as - bs) : am < bm ? -1 : 1
}

function isNoGroup(err: unknown): boolean {
  return String(err).includes('NOGROUP')
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
