// Virtual keys made at runtime (the admin API), where they live: Redis when configured (every instance sees a change within a second), else an embedded SQLite file in the data folder (a restart keeps them). Only a key's SHA-256 is stored, never the key.
import { Database } from 'bun:sqlite'
import { chmodSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { RedisClient } from '../../shared/redis.ts'

export interface KeyBudget {
  period: 'minute' | 'day' | 'month'
  window: 'fixed' | 'sliding'
  token_limit?: number
  cost_limit_usd?: number
}

export interface RuntimeKey {
  key_id: string
  client_id: string
  team_id: string
  name: string | null
  // The first characters of the secret, to tell keys apart in a list.
  prefix: string
  // Hex SHA-256 of the secret in use, and of the one it replaced while its grace lasts.
  sha256: string
  previous?: { sha256: string; prefix: string; until: string }
  models: string[] | null
  expires_at: string | null
  rpm_limit: number | null
  tpm_limit: number | null
  budgets: KeyBudget[]
  revoked_at: string | null
  created_at: string
  updated_at: string
  // Bumped on every change (what caches of derived state key on).
  version: number
}

export interface KeyStore {
  all(): Promise<RuntimeKey[]>
  get(keyId: string): Promise<RuntimeKey | undefined>
  // Writes the key if the stored one is still at `expected` (0: none stored yet); false when
  // another write came first (the caller reads again and decides).
  put(key: RuntimeKey, expected: number): Promise<boolean>
  // Calls back with every key whenever another instance changed one; returns a stop function.
  watch(onChange: (keys: RuntimeKey[]) => void): () => void
  close(): void
}

// Rows are read one by one: one that cannot be read is skipped and said, never the whole list.
function readRows(bodies: Iterable<string>, warn: (message: string, fields: Record<string, unknown>) => void): RuntimeKey[] {
  const keys: RuntimeKey[] = []
  for (const body of bodies) {
    try {
      const key = JSON.parse(body) as RuntimeKey
      if (typeof key?.key_id !== 'string' || typeof key.sha256 !== 'string' || typeof key.version !== 'number') throw new Error('not a key')
      keys.push(key)
    } catch (err) {
      warn('runtime key row skipped: it cannot be read', { err, bytes: body.length })
    }
  }
  return keys
}

export class SqliteKeyStore implements KeyStore {
  readonly #db: Database

  constructor(
    path: string,
    private readonly warn: (message: string, fields: Record<string, unknown>) => void = () => undefined,
  ) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    this.#db = new Database(path, { create: true })
    chmodSync(path, 0o600)
    // One process owns the file: another gateway on the same data folder would neither see this
    // one's changes nor be seen, so it is refused at start.
    this.#db.exec('PRAGMA locking_mode = EXCLUSIVE')
    try {
      this.#db.exec('PRAGMA journal_mode = WAL')
      this.#db.exec('BEGIN EXCLUSIVE')
      this.#db.exec('CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, version INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL)')
      this.#db.exec('COMMIT')
    } catch (err) {
      this.#db.close()
      throw new Error(`${path} is in use by another gateway process (GATEWAY_DATA_DIR must be one process's own; several need REDIS_URL)`, { cause: err })
    }
  }

  async all(): Promise<RuntimeKey[]> {
    return readRows((this.#db.query('SELECT body FROM keys').all() as Array<{ body: string }>).map((r) => r.body), this.warn)
  }

  async get(keyId: string): Promise<RuntimeKey | undefined> {
    const row = this.#db.query('SELECT body FROM keys WHERE key_id = ?1').get(keyId) as { body: string } | null
    return row ? readRows([row.body], this.warn)[0] : undefined
  }

  async put(key: RuntimeKey, expected: number): Promise<boolean> {
    const body = JSON.stringify(key)
    if (expected === 0) return this.#db.query('INSERT OR IGNORE INTO keys (key_id, version, body) VALUES (?1, ?2, ?3)').run(key.key_id, key.version, body).changes === 1
    return this.#db.query('UPDATE keys SET version = ?2, body = ?3 WHERE key_id = ?1 AND version = ?4').run(key.key_id, key.version, body, expected).changes === 1
  }

  watch(): () => void {
    return () => undefined
  }

  close(): void {
    this.#db.close()
  }
}

const KEYS = 'gateway:keys'
const VERSION = 'gateway:keys:version'

// Compare-and-set in one step: the stored key's version must be the one the write was based on;
// the write and the version counter other instances watch change together.
const PUT = `local current = redis.call('HGET', KEYS[1], ARGV[1])
local stored = 0
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and tonumber(decoded.version) then stored = tonumber(decoded.version) else stored = -1 end
end
if stored ~= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1`

export class RedisKeyStore implements KeyStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly warn: (message: string, fields: Record<string, unknown>) => void = () => undefined,
    // How often other instances' changes are looked for (a version counter: one GET).
    private readonly pollMs = 250,
  ) {}

  async all(): Promise<RuntimeKey[]> {
    return readRows(Object.values(await this.redis.hgetall(KEYS)), this.warn)
  }

  async get(keyId: string): Promise<RuntimeKey | undefined> {
    const body = await this.redis.hget(KEYS, keyId)
    return body === null ? undefined : readRows([body], this.warn)[0]
  }

  async put(key: RuntimeKey, expected: number): Promise<boolean> {
    // One hash slot for both keys of a Cluster would need a tag; the two live on one node as named.
    return (await this.redis.eval(PUT, 2, KEYS, VERSION, key.key_id, JSON.stringify(key), String(expected))) === 1
  }

  watch(onChange: (keys: RuntimeKey[]) => void): () => void {
    let seen: string | null | undefined
    let busy = false
    let failing = false
    const timer = setInterval(async () => {
      if (busy) return
      busy = true
      try {
        const version = await this.redis.get(VERSION)
        // The first look reloads too: a change between the first load and now is not missed.
        if (version !== seen) onChange(await this.all())
        seen = version
        if (failing) this.warn('runtime keys reachable again in Redis', {})
        failing = false
      } catch (err) {
        // Redis away: the keys known stay in force until it is back; said once.
        if (!failing) this.warn('runtime keys cannot be read from Redis; the last ones known stay in force', { err })
        failing = true
      } finally {
        busy = false
      }
    }, this.pollMs)
    timer.unref?.()
    return () => clearInterval(timer)
  }

  close(): void {}
}
