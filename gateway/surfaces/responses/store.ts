// The responses the gateway served on /v1/responses with `store` (OpenAI's default), kept per client so that a later request's previous_response_id and item_reference items resolve: in Redis when configured (every instance sees them), else in memory. Bounded by TTL, by the size of one response, and in memory by total bytes (least recently used go first).
import type { RedisClient } from '../../../shared/redis.ts'

type Json = Record<string, unknown>

export interface StoredResponse {
  id: string
  // The conversation the response answered (earlier turns resolved), and what it answered.
  items: Json[]
  output: Json[]
  // Served by OpenAI itself, which keeps it too: an OpenAI target continues it there.
  native?: boolean
}

export interface ResponseStoreLimits {
  ttlMs: number
  // A response larger than this (as JSON) is not kept: continuing it is a 400 naming it.
  maxResponseBytes: number
  // Memory store only: all responses together.
  maxBytes: number
}

export const DEFAULT_STORE_LIMITS: ResponseStoreLimits = { ttlMs: 6 * 3600_000, maxResponseBytes: 1 << 20, maxBytes: 64 << 20 }

export interface ResponseStore {
  // A response by id, or by `item:<item id>` the response holding that item; only the owner's.
  get(owner: string, id: string): Promise<StoredResponse | undefined>
  put(owner: string, response: StoredResponse): Promise<void>
}

// Item ids a response can be found by: its output's, and its input's that carry one.
function itemIds(r: StoredResponse): string[] {
  const ids: string[] = []
  for (const item of [...r.items, ...r.output]) if (typeof item.id === 'string') ids.push(item.id)
  return ids
}

export class MemoryResponseStore implements ResponseStore {
  readonly #entries = new Map<string, { json: string; expiresAt: number }>()
  #bytes = 0

  constructor(
    private readonly limits: ResponseStoreLimits = DEFAULT_STORE_LIMITS,
    private readonly clock: () => number = Date.now,
  ) {}

  async get(owner: string, id: string): Promise<StoredResponse | undefined> {
    const key = `${owner}\u0000${id}`
    const e = this.#entries.get(key)
    if (!e) return undefined
    if (e.expiresAt <= this.clock()) {
      this.#delete(key)
      return undefined
    }
    // Most recently used last.
    this.#entries.delete(key)
    this.#entries.set(key, e)
    const value = JSON.parse(e.json) as StoredResponse | { ref: string }
    return 'ref' in value ? this.get(owner, value.ref) : value
  }

  async put(owner: string, response: StoredResponse): Promise<void> {
    const json = JSON.stringify(response)
    if (json.length > this.limits.maxResponseBytes) return
    const expiresAt = this.clock() + this.limits.ttlMs
    this.#set(`${owner}\u0000${response.id}`, json, expiresAt)
    for (const item of itemIds(response)) this.#set(`${owner}\u0000item:${item}`, JSON.stringify({ ref: response.id }), expiresAt)
    for (const [key] of this.#entries) {
      if (this.#bytes <= this.limits.maxBytes) break
      this.#delete(key)
    }
  }

  get bytes(): number {
    return this.#bytes
  }

  #set(key: string, json: string, expiresAt: number): void {
    this.#delete(key)
    this.#entries.set(key, { json, expiresAt })
    this.#bytes += json.length + key.length
  }

  #delete(key: string): void {
    const e = this.#entries.get(key)
    if (!e) return
    this.#entries.delete(key)
    this.#bytes -= e.json.length + key.length
  }
}

export class RedisResponseStore implements ResponseStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly limits: ResponseStoreLimits = DEFAULT_STORE_LIMITS,
  ) {}

  async get(owner: string, id: string): Promise<StoredResponse | undefined> {
    let key = this.#key(owner, id)
    if (id.startsWith('item:')) {
      const ref = await this.redis.get(key)
      if (ref === null) return undefined
      key = this.#key(owner, ref)
    }
    const json = await this.redis.get(key)
    return json === null ? undefined : (JSON.parse(json) as StoredResponse)
  }

  async put(owner: string, response: StoredResponse): Promise<void> {
    const json = JSON.stringify(response)
    if (json.length > this.limits.maxResponseBytes) return
    const px = this.limits.ttlMs
    const multi = this.redis.multi().set(this.#key(owner, response.id), json, 'PX', px)
    for (const item of itemIds(response)) multi.set(this.#key(owner, `item:${item}`), response.id, 'PX', px)
    await multi.exec()
  }

  // The owner's ids hashed into one slot with its responses (a Redis Cluster keeps them together).
  #key(owner: string, id: string): string {
    return `responses:{${owner}}:${id}`
  }
}
