// Runs the analytics side: ClickHouse (server or embedded) migrated, the stream drain or the in-process sink, scheduled rollups, the query API.
import { EventLoopLag, sampleEventLoopLag } from '../shared/event-loop-lag.ts'
import type { Logger } from '../shared/log.ts'
import { ProcessMetrics } from '../shared/process-metrics.ts'
import { connectWorkerRedis, type RedisClient } from '../shared/redis.ts'
import { repeatEvery } from '../shared/repeat.ts'
import { USAGE_GROUP, USAGE_STREAM } from '../shared/usage-stream.ts'
import { analyticsApi } from './api.ts'
import { connectClickHouse, openEmbeddedClickHouse, type ClickHouse } from './clickhouse.ts'
import type { WorkerConfig } from './config.ts'
import { StreamDrain } from './drain.ts'
import { migrate } from './migrate.ts'
import { rollupDay, staleDays } from './rollup.ts'
import { clickHouseStore, InProcessUsageSink, trackDays } from './store.ts'
import { checkPortFree, lockDataDir, StartupError } from './startup.ts'

export interface Worker {
  ch: ClickHouse
  // The query API's port.
  port: number
  // Only when running inside the gateway process (no Redis): where the gateway hands records.
  sink: InProcessUsageSink | undefined
  // Recomputes the rollup of every day that received records since the last run.
  rollupRecent(): Promise<void>
  // Writes what is in hand (for at most ms), then stops everything.
  stop(ms?: number): Promise<void>
}

const SHUTDOWN_FLUSH_MS = 10_000
const RECONCILE_EVERY_MS = 3_600_000
// How far back the reconciliation looks: older days are rebuilt on request (POST /v1/rollups).
const RECONCILE_DAYS = 62

export async function startWorker(config: WorkerConfig, log: Logger, mode: 'stream' | 'in-process', onFatal: (err: unknown) => void = () => {}): Promise<Worker> {
  // What would fail later with a trace fails here with one line: the port, the data folder.
  checkPortFree(config.host, config.port)
  const unlock = config.clickhouseUrl ? undefined : lockDataDir(config.dataDir)
  let ch: ClickHouse
  try {
    ch = config.clickhouseUrl ? connectClickHouse(config.clickhouseUrl) : await openEmbeddedClickHouse(config.dataDir)
  } catch (err) {
    unlock?.()
    if (err instanceof StartupError) throw err
    throw new StartupError(`analytics: embedded ClickHouse cannot open ${config.dataDir} (${(err as Error).message.split('\n')[0]}); set ANALYTICS_DATA_DIR to another folder`)
  }
  const applied = await migrate(ch)
  if (applied.length > 0) log.info('analytics migrations applied', { versions: applied })
  const tracked = trackDays(clickHouseStore(ch))
  const store = tracked.store

  let redis: RedisClient | undefined
  let drain: StreamDrain | undefined
  let sink: InProcessUsageSink | undefined
  if (mode === 'stream') {
    if (!config.redisUrl) throw new Error('the analytics worker reads the usage stream: set REDIS_URL (without Redis, npm start runs it inside the gateway)')
    redis = connectWorkerRedis(config.redisUrl)
    redis.on('error', (err: Error) => log.debug('redis error', { err }))
    drain = new StreamDrain(redis, store, log, {
      consumer: config.consumer,
      batchSize: config.batchSize,
      flushMs: config.flushMs,
      claimIdleMs: 30_000,
      maxDeliveries: 5,
      retryMs: 200,
      maxRetryMs: 5_000,
      trimEveryMs: 10_000,
    }, onFatal)
    drain.start()
  } else {
    sink = new InProcessUsageSink(store, log, { batchSize: config.batchSize, flushMs: config.flushMs, maxBuffered: 100_000, retryMs: 200, maxRetryMs: 5_000, maxTries: 5 })
  }

  // Yesterday is finalized by the same rule: records of yesterday stored after its last rollup
  // make it stale again. What this process did not see (a previous process that stopped before
  // its run, another worker's records) is found by comparing counts, at the first run and hourly.
  let lastReconcile = 0
  const rollupRecent = async () => {
    const marked = new Set(tracked.takeStaleDays())
    if (Date.now() - lastReconcile >= RECONCILE_EVERY_MS) {
      const since = new Date(Date.now() - RECONCILE_DAYS * 86_400_000).toISOString().slice(0, 10)
      try {
        for (const d of await staleDays(ch, since)) marked.add(d)
        lastReconcile = Date.now()
      } catch (err) {
        // The days taken stay marked for the next run.
        for (const d of marked) tracked.markStale(d)
        throw err
      }
    }
    const days = [...marked].sort()
    try {
      for (const [i, day] of days.entries()) {
        try {
          await rollupDay(ch, day)
        } catch (err) {
          // Left for the next run, with the days after it.
          for (const d of days.slice(i)) tracked.markStale(d)
          throw err
        }
      }
    } finally {
      if (days.length > 0) log.debug('rollups recomputed', { days })
    }
  }
  const rollups = repeatEvery(() => config.rollupEveryMs, rollupRecent, (err) => log.warn('scheduled rollup failed', { err }))

  // A worker process of its own reports its process figures; one inside the gateway process leaves
  // them to the gateway's /metrics (the same process: scraped twice, they would count twice).
  const lag = mode === 'stream' ? new EventLoopLag() : undefined
  const lagSampler = lag ? sampleEventLoopLag(lag) : undefined
  const runtime = lag ? new ProcessMetrics(lag) : undefined
  const server = Bun.serve({
    port: config.port,
    hostname: config.host,
    fetch: analyticsApi({ ch, log, adminToken: config.adminToken, flush: sink ? () => sink!.flush(2000) : undefined, metrics: async () => [...(await metricsLines(drain, sink, redis)), ...((await runtime?.lines()) ?? [])] }),
  })

  return {
    ch,
    port: server.port ?? config.port,
    sink,
    rollupRecent,
    async stop(ms = SHUTDOWN_FLUSH_MS) {
      rollups.stop()
      if (drain && !(await drain.stop(ms))) log.warn('usage drain did not finish in time; its entries stay pending in the stream', { in_hand: drain.stats.in_hand })
      if (sink) {
        const left = await sink.drain(ms)
        if (left > 0) log.error('usage records lost at shutdown: the store did not take them in time', { lost: left })
      }
      await server.stop()
      lagSampler?.stop()
      redis?.disconnect()
      await ch.close()
      unlock?.()
    },
  }
}

async function metricsLines(drain: StreamDrain | undefined, sink: InProcessUsageSink | undefined, redis: RedisClient | undefined): Promise<string[]> {
  const out: string[] = []
  const counter = (name: string, help: string, value: number) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${value}`)
  const gauge = (name: string, help: string, value: number) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`)
  if (drain) {
    counter('analytics_records_inserted_total', 'Usage records written to ClickHouse.', drain.stats.inserted)
    counter('analytics_records_dead_lettered_total', 'Stream entries set aside in the dead-letter stream.', drain.stats.dead_lettered)
    gauge('analytics_store_unreachable', '1 while ClickHouse does not answer.', drain.stats.store_unreachable_since === undefined ? 0 : 1)
  }
  if (sink) {
    counter('analytics_records_inserted_total', 'Usage records written to ClickHouse.', sink.stats.inserted)
    counter('analytics_records_dropped_total', 'Usage records dropped because the in-process buffer was full.', sink.stats.dropped)
    counter('analytics_records_dead_lettered_total', 'Usage records set aside (logged whole) because the store kept refusing them.', sink.stats.dead_lettered)
    gauge('analytics_records_buffered', 'Usage records waiting in memory.', sink.buffered)
  }
  if (redis) {
    // Lag: entries not yet delivered to the group plus those delivered and not yet stored.
    const groups = (await redis.xinfo('GROUPS', USAGE_STREAM).catch(() => [])) as unknown[][]
    for (const g of groups) {
      const info: Record<string, unknown> = {}
      for (let i = 0; i + 1 < g.length; i += 2) info[String(g[i])] = g[i + 1]
      if (info.name !== USAGE_GROUP) continue
      // Redis reports no lag when it cannot tell (after deletions): NaN, not a reassuring 0.
      gauge('analytics_stream_lag', 'Usage stream entries not yet read by the worker group.', info.lag === null || info.lag === undefined ? Number.NaN : Number(info.lag))
      gauge('analytics_stream_pending', 'Usage stream entries read but not yet acknowledged.', Number(info.pending ?? 0))
    }
  }
  return out
}
