// The response cache: exact-match answers to deterministic chat requests, opt-in per route or client, scoped (team by default) so one tenant never reads another's answers. In Redis when configured (shared by instances), else an in-memory LRU bounded in bytes. An answer is kept in one form (content, tool calls, finish, usage) and served as a body or replayed as a stream, whichever the caller asked for.
import { createHash } from 'node:crypto'
import type { CacheConfig } from '../../shared/config/schema.ts'
import type { RedisClient } from '../../shared/redis.ts'
import type { Caller, RoutePlan } from '../config-store.ts'
import type { ChatRequest } from '../chat-request.ts'
import { ChunkWriter, completionBody, DONE_FRAME, type ToolCallOut } from '../providers/openai-format.ts'
import type { Usage } from '../providers/types.ts'

export interface CachedAnswer {
  id: string
  model: string
  content: string | null
  tool_calls: ToolCallOut[]
  finish_reason: string
  usage: Usage
  // Who answered it, and what it cost then: what a hit saves.
  provider_id: string
  upstream_model: string
  cost_pico: number
}

export interface CacheStore {
  get(key: string): Promise<CachedAnswer | undefined>
  put(key: string, answer: CachedAnswer, ttlMs: number): Promise<void>
}

// What a request may do with the cache (x-gateway-cache): skip the lookup, or not write its answer.
export interface CacheUse {
  config: CacheConfig
  key: string
  lookup: boolean
  store: boolean
}

// Left out of the key: how the answer is delivered, and the caller's own labels.
const NOT_KEYED = new Set(['stream', 'stream_options', 'user', 'metadata'])

// Whether and how a request uses the cache: the client's cache setting, else its route's; only a
// deterministic request (temperature 0, unless the setting takes any), one completion.
export function cacheUseOf(req: ChatRequest, caller: Caller, plan: RoutePlan | undefined, header: string | null): CacheUse | undefined {
  const config = caller.client.cache ?? plan?.cache
  if (!config) return undefined
  if ((req.n ?? 1) !== 1) return undefined
  if (config.deterministic_only && req.temperature !== 0) return undefined
  const directives = new Set((header ?? '').split(',').map((d) => d.trim().toLowerCase()))
  const scope = config.scope === 'global' ? 'global' : config.scope === 'client' ? `client:${caller.client.client_id}` : `team:${caller.client.team_id}`
  return { config, key: cacheKey(req, scope), lookup: !directives.has('no-cache'), store: !directives.has('no-store') }
}

export function cacheKey(req: ChatRequest, scope: string): string {
  const body: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(req)) if (!NOT_KEYED.has(k) && v !== undefined && v !== null) body[k] = v
  return `llmcache:${createHash('sha256').update(JSON.stringify([scope, canonical(body)])).digest('hex')}`
}

// Object keys sorted at every level: the same request is the same key whatever its key order.
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical)
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]))
  return value
}

// An OpenAI chat completion body (what every adapter answers) as the answer to keep.
export function answerOfBody(body: string, usage: Usage, who: { provider_id: string; upstream_model: string; cost_pico: number }): CachedAnswer | undefined {
  try {
    const parsed = JSON.parse(body) as { id?: unknown; model?: unknown; choices?: Array<{ message?: { content?: unknown; tool_calls?: ToolCallOut[] }; finish_reason?: unknown }> }
    const choice = parsed.choices?.[0]
    if (!choice || (parsed.choices?.length ?? 0) !== 1) return undefined
    return { id: String(parsed.id ?? ''), model: String(parsed.model ?? ''), content: typeof choice.message?.content === 'string' ? choice.message.content : null, tool_calls: choice.message?.tool_calls ?? [], finish_reason: String(choice.finish_reason ?? 'stop'), usage, ...who }
  } catch {
    return undefined
  }
}

export function replayBody(a: CachedAnswer): string {
  return completionBody(a.id, a.model, { content: a.content, tool_calls: a.tool_calls, finish_reason: a.finish_reason }, a.usage)
}

// A well-formed OpenAI stream of the answer: the role, the content, each tool call, the finish,
// the usage when asked for, [DONE].
export function replayStream(a: CachedAnswer, withUsage: boolean): string {
  const w = new ChunkWriter(a.id, a.model)
  let out = w.delta({ role: 'assistant', content: '' })
  if (a.content) out += w.delta({ content: a.content })
  a.tool_calls.forEach((call, index) => {
    out += w.delta({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] })
    out += w.delta({ tool_calls: [{ index, function: { arguments: call.function.arguments } }] })
  })
  out += w.delta({}, a.finish_reason)
  if (withUsage) out += w.usage(a.usage)
  return out + DONE_FRAME
}

const MAX_ENTRY_BYTES = 1 << 20

export class MemoryCacheStore implements CacheStore {
  readonly #entries = new Map<string, { json: string; expiresAt: number }>()
  #bytes = 0

  constructor(
    private readonly maxBytes = 64 << 20,
    private readonly clock: () => number = Date.now,
  ) {}

  async get(key: string): Promise<CachedAnswer | undefined> {
    const e = this.#entries.get(key)
    if (!e) return undefined
    if (e.expiresAt <= this.clock()) {
      this.#delete(key)
      return undefined
    }
    this.#entries.delete(key)
    this.#entries.set(key, e)
    return JSON.parse(e.json) as CachedAnswer
  }

  async put(key: string, answer: CachedAnswer, ttlMs: number): Promise<void> {
    const json = JSON.stringify(answer)
    if (json.length > MAX_ENTRY_BYTES) return
    this.#delete(key)
    this.#entries.set(key, { json, expiresAt: this.clock() + ttlMs })
    this.#bytes += json.length + key.length
    for (const [k] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break
      this.#delete(k)
    }
  }

  get bytes(): number {
    return this.#bytes
  }

  #delete(key: string): void {
    const e = this.#entries.get(key)
    if (!e) return
    this.#entries.delete(key)
    this.#bytes -= e.json.length + key.length
  }
}

// Bounded by the TTL and the size of an entry; Redis's own maxmemory policy bounds the whole.
export class RedisCacheStore implements CacheStore {
  constructor(private readonly redis: RedisClient) {}

  async get(key: string): Promise<CachedAnswer | undefined> {
    const json = await this.redis.get(key)
    if (json === null) return undefined
    try {
      return JSON.parse(json) as CachedAnswer
    } catch {
      return undefined
    }
  }

  async put(key: string, answer: CachedAnswer, ttlMs: number): Promise<void> {
    const json = JSON.stringify(answer)
    if (json.length > MAX_ENTRY_BYTES) return
    await this.redis.set(key, json, 'PX', ttlMs)
  }
}
