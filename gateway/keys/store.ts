// Virtual keys made at runtime (the admin API), where they live: Redis when configured (every instance sees a change within a second), else an embedded SQLite file in the data folder (a restart keeps them). Only a key's SHA-256 is stored, never the key.
import { Database } from 'bun:sqlite'
import { mkdirSync } from 'node:fs'
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
  put(key: RuntimeKey): Promise<void>
  // Calls back with every key whenever another instance changed one; returns a stop function.
  watch(onChange: (keys: RuntimeKey[]) => void): () => void
  close(): void
}

export class SqliteKeyStore implements KeyStore {
  readonly #db: Database

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true })
    this.#db = new Database(path, { create: true })
    this.#db.exec('PRAGMA journal_mode = WAL')
    this.#db.exec('CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, body TEXT NOT NULL)')
  }

  async all(): Promise<RuntimeKey[]> {
    return (this.#db.query('SELECT body FROM keys').all() as Array<{ body: string }>).map((r) => JSON.parse(r.body) as RuntimeKey)
  }

  async put(key: RuntimeKey): Promise<void> {
    this.#db.query('INSERT INTO keys (key_id, body) VALUES (?1, ?2) ON CONFLICT(key_id) DO UPDATE SET body = excluded.body').run(key.key_id, JSON.stringify(key))
  }

  // One process owns the file (several workers need Redis): nobody else changes it.
  watch(): () => void {
    return () => undefined
  }

  close(): void {
    this.#db.close()
  }
}

const KEYS = 'gateway:keys'
const VERSION = 'gateway:keys:version'

export class RedisKeyStore implements KeyStore {
  constructor(
    private readonly redis: RedisClient,
    // How often other instances' changes are looked for (a version counter: one GET).
    private readonly pollMs = 250,
  ) {}

  async all(): Promise<RuntimeKey[]> {
    const rows = await this.redis.hgetall(KEYS)
    return Object.values(rows).map((body) => JSON.parse(body) as RuntimeKey)
  }

  async put(key: RuntimeKey): Promise<void> {
    await this.redis.hset(KEYS, key.key_id, JSON.stringify(key))
    await this.redis.incr(VERSION)
  }

  watch(onChange: (keys: RuntimeKey[]) => void): () => void {
    let seen: string | null | undefined
    let busy = false
    const timer = setInterval(async () => {
      if (busy) return
      busy = true
      try {
        const version = await this.redis.get(VERSION)
        // The first look reloads too: a change between the first load and now is not missed.
        if (version !== seen) onChange(await this.all())
        seen = version
      } catch {
        // Redis away: the keys known stay in force until it is back.
      } finally {
        busy = false
      }
    }, this.pollMs)
    timer.unref?.()
    return () => clearInterval(timer)
  }

  close(): void {}
}
