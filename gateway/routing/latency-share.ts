// Shares each instance's per-target p95 through one Redis hash, so every instance's latency policy sees all traffic.
import { randomUUID } from 'node:crypto'
import type { Logger } from '../../shared/log.ts'
import type { RedisClient } from '../../shared/redis.ts'
import type { ConfigStore } from '../config-store.ts'
import type { LatencyTracker, SharedFigure } from './latency.ts'
import { repeatEvery } from '../../shared/repeat.ts'

// One hash: field `<instance>|<target>`, value `<p95 ms> <samples> <unix ms>`. A single key
// lives on one Cluster slot, and a fixed field count per instance keeps it small.
export const LATENCY_KEY = 'routing:v1:latency'

export interface LatencyShare {
  syncNow(): Promise<void>
  stop(): void
}

export function startLatencyShare(redis: RedisClient, store: ConfigStore, tracker: LatencyTracker, log: Logger, instance = randomUUID()): LatencyShare {

  const syncNow = async () => {
    const w = store.current.config.file.routing.latency
    const now = Date.now()
    const mine = tracker.localFigures(w)
    if (mine.size > 0) {
      const fields: Record<string, string> = {}
      for (const [key, f] of mine) fields[`${instance}|${key}`] = `${f.p95} ${f.samples} ${now}`
      await redis.hset(LATENCY_KEY, fields)
      // The whole hash goes if every instance stops.
      await redis.pexpire(LATENCY_KEY, w.window_ms * 2)
    }
    const all = await redis.hgetall(LATENCY_KEY)
    const remote = new Map<string, SharedFigure[]>()
    const stale: string[] = []
    for (const [field, value] of Object.entries(all)) {
      const bar = field.indexOf('|')
      const [p95, samples, at] = value.split(' ').map(Number)
      if (bar < 0 || p95 === undefined || samples === undefined || at === undefined || ![p95, samples, at].every(Number.isFinite)) continue
      if (now - at > w.window_ms) {
        stale.push(field)
        continue
      }
      if (field.slice(0, bar) === instance) continue
      const key = field.slice(bar + 1)
      remote.set(key, [...(remote.get(key) ?? []), { p95, samples, at }])
    }
    if (stale.length > 0) await redis.hdel(LATENCY_KEY, ...stale)
    tracker.setRemote(remote)
  }

  const loop = repeatEvery(
    () => store.current.config.file.routing.latency.share_interval_ms,
    syncNow,
    (err) => log.debug('latency share failed', { err }),
  )
  return {
    syncNow,
    stop: () => loop.stop(),
  }
}
