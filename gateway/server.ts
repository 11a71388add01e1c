// Runs the gateway: load config, listen; health checks, latency sharing and config reload in the background; usage to the stream; drain on SIGTERM.
import { ConfigError, loadConfig } from '../shared/config/load.ts'
import { breakerSettingsOf } from '../shared/config/schema.ts'
import { createLogger, flushLogs, type Logger } from '../shared/log.ts'
import { PendingWork } from './pending-work.ts'
import { EXIT_PORT_IN_USE, portInUse, upstreamRequestsOf, UPSTREAM_HEADROOM, watchSupervisor } from './supervisor.ts'
import { RequestGate } from './request-gate.ts'
import { defaultRequestCap } from './connection.ts'
import { readFileSync } from 'node:fs'
import { LiveRequests } from './live-requests.ts'
import { GatewayError } from './errors.ts'
import { createApp } from './app.ts'
import { buildSnapshot, ConfigStore } from './config-store.ts'
import { logUsageSink, teeSinks, type UsageSink } from './usage.ts'
import { RedisStreamSink } from './usage-stream-sink.ts'
import { startOtlpTracing } from './tracing.ts'
import { connectRedis, type RedisClient } from '../shared/redis.ts'
import { MemoryQuotaStore } from './quota/memory-store.ts'
import { QuotaService } from './quota/quota.ts'
import { loadEncoding, type Encoding } from './providers/tokenize.ts'
import type { Snapshot } from './config-store.ts'
import { RedisQuotaStore } from './quota/redis-store.ts'
import { MemoryResponseStore, RedisResponseStore } from './surfaces/responses/store.ts'
import { KeyRegistry } from './keys/registry.ts'
import { AuditSink } from './keys/audit.ts'
import { MemoryCacheStore, RedisCacheStore } from './cache/cache.ts'
import { RedisKeyStore, SqliteKeyStore } from './keys/store.ts'
import { join } from 'node:path'
import { LeasedQuotaStore } from './quota/leased-store.ts'
import { createRoutingState } from './routing/state.ts'
import { startHealthMonitor } from './routing/health-monitor.ts'
import { startLatencyShare } from './routing/latency-share.ts'
import { startConfigReload } from './config-reload.ts'
import { watchRedisPersistence } from './quota/redis-persistence.ts'
import { EventLoopLag, sampleEventLoopLag } from '../shared/event-loop-lag.ts'
import { ProcessMetrics } from '../shared/process-metrics.ts'

// After the drain window: how long stopped requests get to send their answers, then how long the
// records and settles in hand get to be written.
const STOPPED_ANSWER_MS = 2_000
const RECORDS_MS = 5_000
const LOG_FLUSH_MS = 3_000
const REDIS_STARTUP_WAIT_MS = 5_000

function waitReady(redis: RedisClient, ms: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    redis.once('ready', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

// Where usage records go besides the log when there is no Redis stream (the in-process analytics
// worker), and how to stop it after the server drained.
export interface LocalUsage {
  sink: UsageSink
  // Writes what is in hand for at most ms.
  stop(ms: number): Promise<void>
}

export interface GatewayExtras {
  // Called with the logger once the config is loaded; only used without REDIS_URL.
  localUsage?: (log: Logger) => Promise<LocalUsage | undefined>
}

export async function runGateway(extras: GatewayExtras = {}): Promise<void> {
  let store: ConfigStore
  let config
  try {
    config = loadConfig(process.env)
    store = new ConfigStore(buildSnapshot(config))
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`${err.message}\n`)
    process.exit(78)
  }
  // Error lines are cleaned of the keys of the config serving now, reloads included.
  // Several workers log to one stream: each line says which.
  const worker = process.env.GATEWAY_REUSE_PORT === '1' ? { worker: Number(process.env.GATEWAY_WORKER_ID) } : undefined
  const log = createLogger(config.logLevel, undefined, (text) => store.current.redactor.text(text), worker)
  for (const [provider, reason] of config.unavailable) log.warn('provider unavailable', { provider, reason })

  const redis = config.redisUrl ? connectRedis(config.redisUrl, config.file.quota.redis_timeout_ms) : undefined
  // Reconnect noise stays out of the request log; what matters is surfaced by each request.
  redis?.on('error', (err: Error) => log.debug('redis error', { err }))
  redis?.on('ready', () => log.info('redis ready'))
  // Give Redis a moment before taking traffic, so the first requests do not fail closed; a Redis
  // that stays down does not stop the gateway starting (readyz says so, requests get 503).
  if (redis) await waitReady(redis, REDIS_STARTUP_WAIT_MS)
  // On Redis, budgets are leased in blocks per process (see leased-store.ts) unless turned off.
  const { lease_requests: leaseRequests, lease_max_age_ms: leaseMaxAgeMs } = config.file.quota
  const leased = redis && leaseRequests > 0 ? new LeasedQuotaStore(new RedisQuotaStore(redis), { requests: leaseRequests, maxAgeMs: leaseMaxAgeMs }) : undefined
  const quotaStore = leased ?? (redis ? new RedisQuotaStore(redis) : new MemoryQuotaStore())
  // A broken connection may mean a Redis that comes back without the leases: draw from none again.
  redis?.on('close', () => {
    const dropped = leased?.invalidate() ?? 0
    if (dropped > 0) log.warn('budget leases dropped: the connection to Redis closed', { leases: dropped })
  })
  const routing = createRoutingState(breakerSettingsOf(config.file), {
    retryBudget: config.file.routing.retry_budget,
    onTransition: (t) => log.warn('circuit breaker', { target: t.key, from: t.from, to: t.to }),
  })
  const reloader = startConfigReload({
    filePath: config.source,
    env: process.env,
    store,
    log,
    redis,
    redisKey: config.configRedisKey,
    // Awaited, and a failure logged, by the reloader. The routing state first: a tokenizer table
    // that will not load must not leave it on the old settings.
    onSwap: async (next) => {
      routing.breakers.configure(breakerSettingsOf(next.config.file))
      routing.retryBudgets.configure(next.config.file.routing.retry_budget)
      const keys = new Set(next.targets.keys())
      routing.breakers.retain(keys)
      routing.retryBudgets.retain(keys)
      routing.latency.retain(keys)
      await loadEncodings(next)
    },
  })
  // Keys made at runtime: in Redis beside the budgets, else in an embedded SQLite file in the data
  // folder; held in memory, kept current from there.
  const warnKeys = (message: string, fields: Record<string, unknown>) => log.warn(message, fields)
  let keyStore
  try {
    keyStore = redis ? new RedisKeyStore(redis, warnKeys) : new SqliteKeyStore(join(process.env.GATEWAY_DATA_DIR || 'data', 'keys.sqlite'), warnKeys)
  } catch (err) {
    // One line that names the setting: another gateway holds this data folder.
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
    await flushLogs()
    process.exit(78)
  }
  const keys = new KeyRegistry(keyStore)
  try {
    await keys.start()
  } catch (err) {
    log.error('runtime keys could not be loaded; keys made with the admin API will not work until they can be', { err })
  }
  store.attachKeys(keys)
  const audit = new AuditSink(log, () => (process.env.ANALYTICS_URL ? { url: process.env.ANALYTICS_URL, token: store.current.config.adminToken?.reveal() } : undefined))
  // A config kept in Redis replaces the file as soon as Redis answers.
  if (redis && config.configRedisKey) await reloader.reload('startup')
  if (!redis && config.configRedisKey) log.warn('GATEWAY_CONFIG_REDIS_KEY is set without REDIS_URL; the config file is used')
  // A Redis that persists nothing forgets every budget when it restarts: warn (log, /readyz), once per change.
  const persistence = redis ? await watchRedisPersistence(redis, { log, budgets: () => store.current.config.file.quotas.length > 0 }) : undefined
  // What the process binds to comes from the config it starts with (the Redis key's, if any).
  const live = store.current.config
  const settings = live.file.server
  process.on('SIGHUP', () => void reloader.reload('SIGHUP'))
  const health = startHealthMonitor(store, routing, log)
  const share = redis ? startLatencyShare(redis, store, routing.latency, log) : undefined
  // Usage: every record is its request's log line, and goes on to the stream (with Redis) or to
  // the in-process analytics worker (without).
  const streamSink = redis ? new RedisStreamSink(redis, log, { maxBuffered: live.file.usage.max_buffered_records, batch: 100, retryMs: 1000 }) : undefined
  const local = redis ? undefined : await extras.localUsage?.(log)
  const usage = teeSinks(...[logUsageSink(log), streamSink ?? local?.sink].filter((s): s is UsageSink => s !== undefined))
  const tracing = live.tracing.enabled ? startOtlpTracing(live.tracing.serviceName, live.tracing.sampler, live.tracing.samplerArg) : undefined
  // Budgets count every request's tokens, and a stream without usage is counted after it ends:
  // load the tables the configured models need now (parsing one blocks for a moment), not on a request.
  await loadEncodings(store.current)
  const pending = new PendingWork()
  const requests = new LiveRequests()
  let draining = false
  const lag = new EventLoopLag()
  const lagSampler = sampleEventLoopLag(lag)
  // Every request admitted gets its provider call at once: never more than Bun's fetch runs
  // concurrently (less room for health checks), whatever a reload sets.
  const fdCap = defaultRequestCap(() => readFileSync('/proc/self/limits', 'utf8'))
  const upstreamCap = Math.max(16, upstreamRequestsOf(process.env) - UPSTREAM_HEADROOM)
  const gate = new RequestGate(() => Math.min(store.current.config.file.server.max_concurrent_requests ?? fdCap, upstreamCap))
  const app = createApp({
    gate,
    pending,
    live: requests,
    draining: () => draining,
    runtime: new ProcessMetrics(lag),
    store,
    log,
    usage,
    tracer: tracing?.tracer,
    usageStats: streamSink ? () => ({ ...streamSink.stats, buffered: streamSink.buffered }) : undefined,
    quota: new QuotaService(quotaStore, () => store.current.config.file.quota, log),
    quotaStore,
    leases: leased ? () => leased.stats : undefined,
    routing,
    ready: async () => (redis ? (await redis.ping()) === 'PONG' : true),
    responses: redis ? new RedisResponseStore(redis) : new MemoryResponseStore(),
    keys,
    audit,
    cache: redis ? new RedisCacheStore(redis) : new MemoryCacheStore(),
    readiness: () => (persistence ? { quota_store: 'redis', ...persistence.detail() } : { quota_store: 'memory' }),
  })
  try {
    app.listen({
      port: settings.port,
      hostname: settings.host,
      // Our own check answers every 413, in OpenAI's shape with a request id, before reading a body
      // it refuses (Bun's own 413 is a bare one); the socket is then closed, so nothing larger is read.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      // Sockets with no request in progress; an accepted request lifts it (see connection.ts).
      idleTimeout: settings.idle_timeout_s,
      // Never Bun's development error page (source lines, paths) to a caller, whatever NODE_ENV says.
      development: false,
      // Only workers share a port (their supervisor checked it was free); alone, a busy port is an error.
      reusePort: process.env.GATEWAY_REUSE_PORT === '1',
    })
  } catch (err) {
    if ((err as { code?: string }).code !== 'EADDRINUSE') throw err
    process.stderr.write(`${portInUse(settings.host, settings.port)}\n`)
    process.exit(EXIT_PORT_IN_USE)
  }
  const server = app.server
  if (!server) throw new Error('server did not start')
  log.lifecycle('listening', { port: server.port, host: settings.host, config: live.source, quota_store: redis ? 'redis' : 'memory', tracing: live.tracing.enabled ? 'otlp' : 'off', pid: process.pid, upstream_requests: upstreamRequestsOf(process.env) })
  watchSupervisor(() => shutdown('supervisor gone'))

  // Shutdown: new connections are refused at once; requests under way get shutdown_drain_ms to
  // end on their own; those still running are then stopped through their ledgers (a 503 or an
  // error frame, a record, a settle); then the records and settles in hand are written.
  let stopping = false
  const shutdown = (signal: string) => {
    if (stopping) return
    stopping = true
    draining = true
    const drainMs = store.current.config.file.server.shutdown_drain_ms
    const unreadyMs = store.current.config.file.server.shutdown_unready_ms
    log.lifecycle('draining', { signal, pending_requests: server.pendingRequests, unready_ms: unreadyMs, drain_ms: drainMs })
    reloader.stop()
    health.stop()
    share?.stop()
    lagSampler.stop()
    let cut = 0
    const force = setTimeout(() => {
      log.error('forced exit: shutdown did not finish in time', { requests_stopped: cut, settles: pending.count('settle'), records: pending.count('record') })
      void settledWithin(flushLogs(), 500).then(() => process.exit(1))
    }, unreadyMs + drainMs + STOPPED_ANSWER_MS + RECORDS_MS + LOG_FLUSH_MS + 1_000)
    void (async () => {
      // Readiness fails first (draining was set above), while the listener still takes
      // connections: a load balancer that polls /readyz stops sending before it closes.
      if (unreadyMs > 0) await Bun.sleep(unreadyMs)
      // stop(false) resolves once every request under way has ended.
      const served = server.stop(false)
      if (!(await settledWithin(served, drainMs))) {
        cut = requests.stopAll(new GatewayError('gateway_shutting_down', 'The gateway is shutting down and stopped this request before it ended; retry it.', { retryAfterSeconds: 1 }))
        log.warn('requests stopped at shutdown', { requests: cut, drain_ms: drainMs })
        // Their answers and error frames go out; a caller that does not read them is cut off.
        if (!(await settledWithin(served, STOPPED_ANSWER_MS))) await server.stop(true)
      }
      // Settles and records requests left running (a count for a stream without usage) come first:
      // the records they write go to the sinks drained next.
      const deadline = Date.now() + RECORDS_MS
      const left = () => Math.max(100, deadline - Date.now())
      if (!(await pending.drain(left()))) log.error('work lost at shutdown: settles or records did not finish in time', { settles: pending.count('settle'), records: pending.count('record') })
      // Every request has settled: the leases book what their requests used.
      if (!(await audit.close(Math.min(1000, left())))) log.error('audit events not stored in ClickHouse at shutdown: the analytics worker did not take them in time (they are in the log)', { events: audit.queued })
      if (leased && !(await settledWithin(leased.close(), left()))) log.error('budget leases not booked at shutdown: Redis did not answer in time; they are booked whole when they expire')
      if (streamSink && !(await streamSink.drain(left()))) log.error('usage records lost at shutdown: Redis did not take them in time', { lost: streamSink.buffered })
      await local?.stop(left())
      await tracing?.shutdown().catch(() => undefined)
    })()
      .catch((err: unknown) => log.error('shutdown failed', { err }))
      .finally(async () => {
        // Records are log lines too (the only ones without Redis): stdout must take them all, a
        // pipe to a slow reader included, before the process goes.
        await settledWithin(flushLogs(), LOG_FLUSH_MS)
        clearTimeout(force)
        process.exit(0)
      })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
}

// Whether p settles within ms.
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  try {
    return await Promise.race([p.then(() => true, () => true), timedOut])
  } finally {
    clearTimeout(timer)
  }
}

// The tokenizer tables the snapshot's targets use, and only those (each costs memory).
function loadEncodings(snapshot: Snapshot): Promise<unknown> {
  const needed = new Set<Encoding>()
  for (const route of snapshot.targets.values()) needed.add(route.adapter.encoding(route.target))
  return Promise.all([...needed].map((e) => loadEncoding(e)))
}
