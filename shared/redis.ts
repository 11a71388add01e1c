// Redis connections: the request path's (fail fast, never queue, every call under a deadline) and a background worker's (blocking reads, patient reconnects).
import Redis, { Cluster, type RedisOptions } from 'ioredis'
import { redisConnectionOptions } from './redis-url.ts'

export type RedisClient = Redis | Cluster

// REDIS_URL is one redis:// or rediss:// URL, or several comma-separated seed nodes of a Redis
// Cluster (see redis-url.ts); a URL that cannot be used throws RedisUrlError.
export function connectRedis(url: string, timeoutMs: number): RedisClient {
  // ioredis' defaults took 10.5 s to fail against a dead Redis and queue commands while offline;
  // on the request path a quick error is better (the caller's policy decides what it means).
  const options: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: timeoutMs,
    connectTimeout: Math.max(1000, timeoutMs * 4),
    // Keep trying to come back; requests fail fast meanwhile.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  }
  const target = redisConnectionOptions(url)
  if (target.kind === 'single') return new Redis({ ...target.options, ...options, enableAutoPipelining: true })
  return withNodeReasons(
    new Cluster(target.seeds, {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      clusterRetryStrategy: (times) => Math.min(times * 100, 2000),
      redisOptions: { ...target.nodeOptions, ...options },
    }),
  )
}

// For a background consumer: blocking reads (XREADGROUP BLOCK) need no command deadline, and a
// command issued during a reconnect waits for it instead of failing the loop.
export function connectWorkerRedis(url: string): RedisClient {
  const options: RedisOptions = {
    maxRetriesPerRequest: null,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  }
  const target = redisConnectionOptions(url)
  if (target.kind === 'single') return new Redis({ ...target.options, ...options })
  return withNodeReasons(new Cluster(target.seeds, { clusterRetryStrategy: (times) => Math.min(times * 100, 2000), redisOptions: { ...target.nodeOptions, ...options } }))
}

// ioredis reports a Cluster it could not reach through any node as "Failed to refresh slots
// cache.", whatever the reason; the last node's own error (WRONGPASS, a refused certificate) is
// what tells an operator what to fix, so it joins the message every later listener sees.
function withNodeReasons(cluster: Cluster): Cluster {
  cluster.on('error', (err: Error & { lastNodeError?: unknown }) => {
    const reason = err.lastNodeError
    if (reason instanceof Error && !err.message.includes(reason.message)) err.message = `${err.message} Last node error: ${reason.message}`
  })
  return cluster
}
