// The Redis connection for the request path: fail fast, never queue, every call under a deadline.
import Redis from 'ioredis'

// ioredis' defaults took 10.5 s to fail against a dead Redis and queue commands while offline;
// on the request path a quick error is better (the caller's policy decides what it means).
export function connectRedis(url: string, timeoutMs: number): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: timeoutMs,
    connectTimeout: Math.max(1000, timeoutMs * 4),
    enableAutoPipelining: true,
    // Keep trying to come back; requests fail fast meanwhile.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  })
}
