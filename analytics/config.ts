// The analytics worker's settings, read from the environment in this one place.
import { hostname } from 'node:os'
import type { LogLevel } from '../shared/config/schema.ts'
import { redisConnectionOptions } from '../shared/redis-url.ts'

export interface WorkerConfig {
  // REDIS_URL: the usage stream to drain; absent when the worker runs inside the gateway process.
  redisUrl: string | undefined
  // CLICKHOUSE_URL: a clickhouse-server's HTTP address; absent means embedded ClickHouse (chdb).
  clickhouseUrl: string | undefined
  // ANALYTICS_DATA_DIR: where embedded ClickHouse keeps its data.
  dataDir: string
  // ANALYTICS_PORT: the query API (0 picks a free port).
  port: number
  host: string
  // ANALYTICS_CONSUMER: this worker's name in the consumer group; keep it stable across restarts.
  consumer: string
  batchSize: number
  flushMs: number
  // How often today's rollup is recomputed (and yesterday's, until a day after midnight UTC).
  rollupEveryMs: number
  // ADMIN_TOKEN: when set, the query API wants it as a bearer token.
  adminToken: string | undefined
  logLevel: LogLevel
}

type Env = Record<string, string | undefined>

export function loadWorkerConfig(env: Env): WorkerConfig {
  const int = (name: string, fallback: number, min = 0): number => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    const n = Number(raw)
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer of at least ${min}, got "${raw}"`)
    return n
  }
  const level = env.LOG_LEVEL ?? 'info'
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(level)) throw new Error(`LOG_LEVEL: unknown level "${level}"`)
  // The message never holds the URL: it may hold a password.
  if (env.REDIS_URL) {
    try {
      redisConnectionOptions(env.REDIS_URL)
    } catch (err) {
      throw new Error(`REDIS_URL: ${(err as Error).message}`)
    }
  }
  return {
    redisUrl: env.REDIS_URL || undefined,
    clickhouseUrl: env.CLICKHOUSE_URL || undefined,
    dataDir: env.ANALYTICS_DATA_DIR || 'data/clickhouse',
    port: int('ANALYTICS_PORT', 8081),
    host: env.ANALYTICS_HOST || '127.0.0.1',
    consumer: env.ANALYTICS_CONSUMER || hostname(),
    batchSize: int('ANALYTICS_BATCH_SIZE', 1000, 1),
    flushMs: int('ANALYTICS_FLUSH_MS', 1000, 1),
    rollupEveryMs: int('ANALYTICS_ROLLUP_MS', 300_000, 100),
    adminToken: env.ADMIN_TOKEN || undefined,
    logLevel: level as LogLevel,
  }
}
