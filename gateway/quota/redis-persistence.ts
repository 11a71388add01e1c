// Whether the Redis holding the budgets persists them (AOF, RDB): checked at start and after every reconnect, logged when it changes.
import { Cluster } from 'ioredis'
import type Redis from 'ioredis'
import type { Logger } from '../../shared/log.ts'
import type { RedisClient } from '../../shared/redis.ts'

export type RedisPersistence = 'aof' | 'rdb' | 'aof+rdb' | 'none' | 'unknown'

// Weakest first: a Cluster is as safe as its least safe master.
const STRENGTH: readonly RedisPersistence[] = ['none', 'unknown', 'rdb', 'aof', 'aof+rdb']

const RISK = "a Redis restart empties the budgets (used and reserved tokens and cost), so callers can spend a whole period's budget again"
const FIX = 'configure Redis with `appendonly yes` and `appendfsync everysec`'

// info: the INFO persistence text; save: the CONFIG GET save reply. undefined: the command failed
// (managed Redis often disables or renames CONFIG).
export function readPersistence(info: string | undefined, save: unknown): RedisPersistence {
  const aof = info === undefined ? undefined : readAofEnabled(info)
  const rdb = save === undefined ? undefined : readSaveRules(save)
  if (aof === true) return rdb === true ? 'aof+rdb' : 'aof'
  if (rdb === true) return 'rdb'
  return aof === false && rdb === false ? 'none' : 'unknown'
}

function readAofEnabled(info: string): boolean | undefined {
  const m = /^aof_enabled:(\d)\s*$/m.exec(info)
  return m ? m[1] === '1' : undefined
}

// RESP2 answers ['save', '3600 1 300 100'], RESP3 a map; an empty reply means the parameter is hidden.
function readSaveRules(reply: unknown): boolean | undefined {
  let value: unknown
  if (Array.isArray(reply)) {
    const i = reply.indexOf('save')
    value = i >= 0 && i % 2 === 0 ? reply[i + 1] : undefined
  } else if (typeof reply === 'object' && reply !== null) {
    value = (reply as Record<string, unknown>).save
  }
  return typeof value === 'string' ? value.trim() !== '' : undefined
}

export function weakestPersistence(kinds: readonly RedisPersistence[]): RedisPersistence {
  if (kinds.length === 0) return 'unknown'
  return kinds.reduce((a, b) => (STRENGTH.indexOf(b) < STRENGTH.indexOf(a) ? b : a))
}

// The one sentence the log and /readyz carry when budgets may not survive a restart.
export function persistenceWarning(kind: RedisPersistence): string | undefined {
  if (kind === 'none') return `Redis persists nothing (neither AOF nor RDB): ${RISK}; ${FIX}.`
  if (kind === 'unknown') return `Could not verify that Redis persists data (INFO or CONFIG GET refused or not answered): if it does not, ${RISK}; ${FIX}.`
  return undefined
}

export interface PersistenceDetail {
  redis_persistence: RedisPersistence
  warnings?: string[]
}

export interface PersistenceWatch {
  // The last check's result, for /readyz (which must not query Redis each time).
  detail(): PersistenceDetail
  // Checks now; concurrent calls share one run (plus one more if asked meanwhile).
  check(): Promise<void>
}

export interface PersistenceWatchOptions {
  log: Logger
  // Whether budgets are configured now (a reload may add or remove them): only then is there a risk to warn about.
  budgets: () => boolean
}

interface NodeResult {
  node: string
  kind: RedisPersistence
  reason?: string
}

// Checks once (when Redis is up), then again on every 'ready': a restarted Redis may come back
// with other settings. For a Cluster every master counts, including ones that join later.
export async function watchRedisPersistence(redis: RedisClient, opts: PersistenceWatchOptions): Promise<PersistenceWatch> {
  let current: RedisPersistence = 'unknown'
  let logged: RedisPersistence | undefined
  let running: Promise<void> | undefined
  let again = false

  const runOnce = async () => {
    const results = await Promise.all(masters(redis).map(checkNode))
    current = weakestPersistence(results.map((r) => r.kind))
    if (!opts.budgets() || current === logged) return
    logged = current
    const warning = persistenceWarning(current)
    const reason = results.find((r) => r.reason !== undefined)?.reason
    const fields = {
      redis_persistence: current,
      ...(warning ? { warning } : {}),
      ...(reason ? { reason } : {}),
      ...(redis instanceof Cluster ? { nodes: Object.fromEntries(results.map((r) => [r.node, r.kind])) } : {}),
    }
    if (warning) opts.log.warn('redis persistence', fields)
    else opts.log.info('redis persistence', fields)
  }
  const check = (): Promise<void> => {
    if (running) {
      again = true
      return running
    }
    running = (async () => {
      do {
        again = false
        await runOnce()
      } while (again)
    })().finally(() => {
      running = undefined
    })
    return running
  }
  const recheck = () => void check().catch((err: unknown) => opts.log.debug('redis persistence check failed', { err }))

  redis.on('ready', recheck)
  if (redis instanceof Cluster) {
    // A lost master is dropped from the pool and a new connection added when it is back.
    const watched = new WeakSet<Redis>()
    const watchNode = (node: Redis) => {
      if (watched.has(node)) return
      watched.add(node)
      node.on('ready', recheck)
    }
    for (const node of redis.nodes('all')) watchNode(node)
    redis.on('+node', (node: Redis) => {
      watchNode(node)
      recheck()
    })
  }
  // A Redis still down at start is checked on its first 'ready'.
  if (redis.status === 'ready') await check()
  return {
    detail() {
      const warning = opts.budgets() ? persistenceWarning(current) : undefined
      return { redis_persistence: current, ...(warning ? { warnings: [warning] } : {}) }
    },
    check,
  }
}

function masters(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis]
}

async function checkNode(node: Redis): Promise<NodeResult> {
  let reason: string | undefined
  const refused = (err: unknown) => {
    reason ??= err instanceof Error ? err.message : String(err)
    return undefined
  }
  const [info, save] = await Promise.all([node.info('persistence').catch(refused), node.config('GET', 'save').catch(refused)])
  const kind = readPersistence(info, save)
  return { node: `${node.options.host}:${node.options.port}`, kind, ...(kind === 'unknown' && reason ? { reason } : {}) }
}
