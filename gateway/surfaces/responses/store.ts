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
  // Memory store only: all responses together, and one client's (its own oldest go first).
  maxBytes: number
  maxOwnerBytes?: number
}

export const DEFAULT_STORE_LIMITS: ResponseStoreLimits = { ttlMs: 6 * 3600_000, maxResponseBytes: 1 << 20, maxBytes: 64 << 20, maxOwnerBytes: 8 << 20 }

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

// Where an id lives: responses and items in names of their own, so no id of one kind can be read
// as the other; `item:<id>` asks for the response holding that item.
function slot(id: string): string {
  return id.startsWith('item:') ? `i:${id.slice(5)}` : `r:${id}`
}

function parseStored(json: string): StoredResponse | undefined {
  try {
    const value = JSON.parse(json) as StoredResponse
    return typeof value === 'object' && value !== null && Array.isArray(value.items) && Array.isArray(value.output) ? value : undefined
  } catch {
    return undefined
  }
}

export class MemoryResponseStore implements ResponseStore {
  readonly #entries = new Map<string, { owner: string; json: string; expiresAt: number }>()
  readonly #ownerBytes = new Map<string, number>()
  #bytes = 0

  constructor(
    private readonly limits: ResponseStoreLimits = DEFAULT_STORE_LIMITS,
    private readonly clock: () => number = Date.now,
  ) {}

  async get(owner: string, id: string): Promise<StoredResponse | undefined> {
    const found = this.#read(`${owner}\u0000${slot(id)}`)
    if (found === undefined) return undefined
    if (!id.startsWith('item:')) return parseStored(found)
    // An item names its response (one level: a response is never a reference).
    const response = this.#read(`${owner}\u0000r:${found}`)
    return response === undefined ? undefined : parseStored(response)
  }

  async put(owner: string, response: StoredResponse): Promise<void> {
    const json = JSON.stringify(response)
    if (json.length > this.limits.maxResponseBytes) return
    const expiresAt = this.clock() + this.limits.ttlMs
    this.#set(owner, `${owner}\u0000r:${response.id}`, json, expiresAt)
    for (const item of itemIds(response)) this.#set(owner, `${owner}\u0000i:${item}`, response.id, expiresAt)
    // A client over its share loses its own oldest first; then everyone's oldest, over the total.
    const share = this.limits.maxOwnerBytes ?? this.limits.maxBytes
    for (const [key, e] of this.#entries) {
      if ((this.#ownerBytes.get(owner) ?? 0) <= share) break
      if (e.owner === owner) this.#delete(key)
    }
    for (const [key] of this.#entries) {
      if (this.#bytes <= this.limits.maxBytes) break
      this.#delete(key)
    }
  }

  get bytes(): number {
    return this.#bytes
  }

  #read(key: string): string | undefined {
    const e = this.#entries.get(key)
    if (!e) return undefined
    if (e.expiresAt <= this.clock()) {
      this.#delete(key)
      return undefined
    }
    // Most recently used last.
    this.#entries.delete(key)
    this.#entries.set(key, e)
    return e.json
  }

  #set(owner: string, key: string, json: string, expiresAt: number): void {
    this.#delete(key)
    this.#entries.set(key, { owner, json, expiresAt })
    const size = json.length + key.length
    this.#bytes += size
    this.#ownerBytes.set(owner, (this.#ownerBytes.get(owner) ?? 0) + size)
  }

  #delete(key: string): void {
    const e = this.#entries.get(key)
    if (!e) return
    this.#entries.delete(key)
    const size = e.json.length + key.length
    this.#bytes -= size
    const left = (this.#ownerBytes.get(e.owner) ?? 0) - size
    if (left > 0) this.#ownerBytes.set(e.owner, left)
    else this.#ownerBytes.delete(e.owner)
  }
}

export class RedisResponseStore implements ResponseStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly limits: ResponseStoreLimits = DEFAULT_STORE_LIMITS,
  ) {}

  async get(owner: string, id: string): Promise<StoredResponse | undefined> {
    let key = this.#key(owner, slot(id))
    if (id.startsWith('item:')) {
      const ref = await this.redis.get(key)
      if (ref === null) return undefined
      key = this.#key(owner, `r:${ref}`)
    }
    const json = await this.redis.get(key)
    return json === null ? undefined : parseStored(json)
  }

  async put(owner: string, response: StoredResponse): Promise<void> {
    const json = JSON.stringify(response)
    if (json.length > this.limits.maxResponseBytes) return
    const px = this.limits.ttlMs
    const multi = this.redis.multi().set(this.#key(owner, `r:${response.id}`), json, 'PX', px)
    for (const item of itemIds(response)) multi.set(this.#key(owner, `i:${item}`), response.id, 'PX', px)
    await multi.exec()
  }

  // The owner's ids hashed into one slot with its responses (a Redis Cluster keeps them together);
  // the owner's name escaped, so that no client id can reach into another's names.
  #key(owner: string, name: string): string {
    return `responses:{${encodeURIComponent(owner)}}:${name}`
  }
}
