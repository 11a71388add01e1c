// Redis connections: the request path's (fail fast, never queue, every call under a deadline) and a background worker's (blocking reads, patient reconnects).
import Redis, { Cluster, type RedisOptions } from 'ioredis'

export type RedisClient = Redis | Cluster

// REDIS_URL is one redis:// URL, or several comma-separated seed nodes of a Redis Cluster.
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
  const urls = splitUrls(url)
  if (urls.length === 1) return new Redis(urls[0] ?? url, { ...options, enableAutoPipelining: true })
  return new Cluster(clusterNodes(urls), {
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    clusterRetryStrategy: (times) => Math.min(times * 100, 2000),
    redisOptions: options,
  })
}

// For a background consumer: blocking reads (XREADGROUP BLOCK) need no command deadline, and a
// command issued during a reconnect waits for it instead of failing the loop.
export function connectWorkerRedis(url: string): RedisClient {
  const options: RedisOptions = {
    maxRetriesPerRequest: null,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  }
  const urls = splitUrls(url)
  if (urls.length === 1) return new Redis(urls[0] ?? url, options)
  return new Cluster(clusterNodes(urls), { clusterRetryStrategy: (times) => Math.min(times * 100, 2000), redisOptions: options })
}

function splitUrls(url: string): string[] {
  return url
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean)
}

function clusterNodes(urls: readonly string[]) {
  return urls.map((u) => {
    const parsed = new URL(u)
    return { host: parsed.hostname, port: Number(parsed.port || 6379) }
  })
}
