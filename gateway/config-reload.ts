// Hot reload: on file change, on a poll, on SIGHUP and from an optional Redis key; a new config is built (may fail) then swapped (cannot).
import { watch, readFileSync, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import { createHash } from 'node:crypto'
import { ConfigError, parseConfig, type Env } from '../shared/config/load.ts'
import type { Logger } from '../shared/log.ts'
import type { RedisClient } from '../shared/redis.ts'
import { buildSnapshot, type ConfigStore, type Snapshot } from './config-store.ts'
import { repeatEvery } from '../shared/repeat.ts'

export interface ConfigReloader {
  // Reads the config again and swaps it in if it changed and is valid; true when swapped.
  reload(reason: string): Promise<boolean>
  stop(): void
}

export interface ReloadOptions {
  filePath: string
  env: Env
  store: ConfigStore
  log: Logger
  // With GATEWAY_CONFIG_REDIS_KEY: the key's value, when it exists, is the config.
  redis?: RedisClient
  redisKey?: string
  // After each swap: state outside snapshots (breaker settings, tokenizer tables) follows the new
  // config. Awaited; when it fails the new config serves anyway, the failure is logged, and the
  // next reload tries it again even if the text did not change.
  onSwap?(next: Snapshot): void | Promise<void>
}

// Editors write a file in several steps (truncate, write, rename): wait for them to settle.
const SETTLE_MS = 50

export function startConfigReload(opts: ReloadOptions): ConfigReloader {
  const { store, log } = opts
  let applied = digest(readFileSync(opts.filePath, 'utf8'))
  let queue: Promise<boolean> = Promise.resolve(false)
  let settle: ReturnType<typeof setTimeout> | undefined
  // The snapshot swapped in whose onSwap failed, until one succeeds.
  let unfollowed: Snapshot | undefined

  const readSource = async (): Promise<{ text: string; source: string }> => {
    if (opts.redis && opts.redisKey) {
      const text = await opts.redis.get(opts.redisKey)
      if (text !== null) return { text, source: `redis:${opts.redisKey}` }
    }
    return { text: readFileSync(opts.filePath, 'utf8'), source: opts.filePath }
  }

  const reloadOnce = async (reason: string): Promise<boolean> => {
    let text: string
    let source: string
    try {
      ;({ text, source } = await readSource())
    } catch (err) {
      log.warn('config reload failed: cannot read the config', { reason, err })
      return false
    }
    const d = digest(text)
    if (d === applied) {
      if (unfollowed !== undefined && unfollowed === store.current && (await follow(unfollowed, { source, reason, config_sha256: d }))) {
        log.info('config swap completed: the state that follows it caught up', { source, reason, config_sha256: d })
      }
      return false
    }
    let next: Snapshot
    try {
      next = buildSnapshot(parseConfig(text, source, opts.env))
    } catch (err) {
      // Only the same text fixed (or replaced) is tried again.
      applied = d
      // Anything but a ConfigError is a bug in building the snapshot: its stack goes with it.
      const problems = err instanceof ConfigError ? err.problems : [String(err)]
      log.warn('config rejected; the previous config keeps serving', { source, reason, config_sha256: d, problems, ...(err instanceof ConfigError ? {} : { err }) })
      return false
    }
    const before = store.current.config.file.server
    store.swap(next)
    applied = d
    const followed = await follow(next, { source, reason, config_sha256: d })
    const after = next.config.file.server
    const restartNeeded = (['port', 'host'] as const).filter((k) => before[k] !== after[k]).map((k) => `server.${k}`)
    log.info('config reloaded', {
      source,
      reason,
      config_sha256: d,
      routes: next.routes.size,
      targets: next.targets.size,
      ...(restartNeeded.length ? { restart_needed_for: restartNeeded } : {}),
      ...(followed ? {} : { incomplete: true }),
    })
    return true
  }

  // The swap is done whatever happens here; a failure says so, and is tried again by the next reload.
  const follow = async (next: Snapshot, fields: Record<string, unknown>): Promise<boolean> => {
    try {
      await opts.onSwap?.(next)
      unfollowed = undefined
      return true
    } catch (err) {
      unfollowed = next
      log.error('config swapped in, but the state that follows it (breakers, tokenizer tables) failed to update; retried at the next reload', { ...fields, err })
      return false
    }
  }

  // One reload at a time, in order; anything unexpected is logged here, so reload() never rejects.
  const reload = (reason: string) => {
    queue = queue
      .then(() => reloadOnce(reason))
      .catch((err: unknown) => {
        log.error('config reload failed', { reason, err })
        return false
      })
    return queue
  }

  let watcher: FSWatcher | undefined
  try {
    // The folder, not the file: an editor that renames a new file over it would end a file watch.
    watcher = watch(dirname(opts.filePath), (_event, name) => {
      // Kubernetes swaps a ConfigMap's files through a `..data` symlink: that counts as a change too.
      if (name !== null && name !== basename(opts.filePath) && !name.startsWith('..')) return
      clearTimeout(settle)
      settle = setTimeout(() => void reload('file changed'), SETTLE_MS)
    })
    // A folder removed or unmounted: the poll still reads the file (or reports that it cannot).
    watcher.on('error', (err) => log.warn('config file watch stopped; relying on the poll', { err }))
  } catch (err) {
    log.warn('cannot watch the config file; relying on the poll', { err })
  }

  // reload() never rejects: its failures are logged where they happen, or in reload().
  const poll = repeatEvery(() => store.current.config.file.routing.reload_poll_ms, () => reload('poll'), () => {})

  return {
    reload,
    stop() {
      watcher?.close()
      clearTimeout(settle)
      poll.stop()
    },
  }
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}
