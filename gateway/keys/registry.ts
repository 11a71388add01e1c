// The runtime keys in memory, kept current from their store: the request path looks a key up here (never one store call per request), after the config's own keys, which a runtime key cannot shadow.
import { timingSafeEqual } from 'node:crypto'
import type { ClientConfig } from '../../shared/config/schema.ts'
import type { Caller, Snapshot } from '../config-store.ts'
import { GatewayError } from '../errors.ts'
import type { EntityPlan } from '../quota/quota.ts'
import type { QuotaLine } from '../quota/types.ts'
import type { KeyStore, RuntimeKey } from './store.ts'

// What a caller holding a runtime key carries: its id and limits, for the rate and budget checks.
export interface KeyLimits {
  key_id: string
  rpm_limit: number | null
  // The key's tokens per minute and budgets, as quota lines on its entity (key:<key_id>).
  plan: EntityPlan | undefined
}

interface Entry {
  key: RuntimeKey
  // previous: the replaced secret, valid until its grace ends.
  which: 'current' | 'previous'
}

export class KeyRegistry {
  #byHash = new Map<string, Entry>()
  #byId = new Map<string, RuntimeKey>()
  // Callers by config snapshot and key (the object as loaded: a change loads a new one): the same
  // caller for every request of a key, so what is cached per caller (budget plans) stays cached.
  #callers = new WeakMap<Snapshot, WeakMap<RuntimeKey, Caller>>()
  readonly #lastUsed = new Map<string, number>()
  #stop: (() => void) | undefined

  constructor(
    readonly store: KeyStore,
    private readonly clock: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    this.#stop = this.store.watch((keys) => this.load(keys))
    this.load(await this.store.all())
  }

  stop(): void {
    this.#stop?.()
    this.store.close()
  }

  load(keys: RuntimeKey[]): void {
    const byHash = new Map<string, Entry>()
    const byId = new Map<string, RuntimeKey>()
    for (const key of keys) {
      byId.set(key.key_id, key)
      byHash.set(key.sha256, { key, which: 'current' })
      if (key.previous) byHash.set(key.previous.sha256, { key, which: 'previous' })
    }
    this.#byHash = byHash
    this.#byId = byId
  }

  // A change made here, if the stored key is still at `expected` (0: a new key): in force at once
  // in this process (others see it through the store). False when another write came first.
  async save(key: RuntimeKey, expected: number): Promise<boolean> {
    if (!(await this.store.put(key, expected))) return false
    this.load([...[...this.#byId.values()].filter((k) => k.key_id !== key.key_id), key])
    return true
  }

  get(keyId: string): RuntimeKey | undefined {
    return this.#byId.get(keyId)
  }

  // The key as stored now (another instance's change included), for a change based on it.
  fresh(keyId: string): Promise<RuntimeKey | undefined> {
    return this.store.get(keyId)
  }

  list(): RuntimeKey[] {
    return [...this.#byId.values()]
  }

  lastUsed(keyId: string): number | undefined {
    return this.#lastUsed.get(keyId)
  }

  status(key: RuntimeKey, now = this.clock()): 'active' | 'expired' | 'revoked' | 'rotating' {
    if (key.revoked_at) return 'revoked'
    if (key.expires_at && Date.parse(key.expires_at) <= now) return 'expired'
    if (key.previous && Date.parse(key.previous.until) > now) return 'rotating'
    return 'active'
  }

  // The caller a presented key's digest names, or undefined when no runtime key has it; a key
  // that exists but may not be used (revoked, expired, rotated out) is a 401 saying which.
  authenticate(hex: string, digest: Buffer, snapshot: Snapshot): Caller | undefined {
    const entry = this.#byHash.get(hex)
    if (!entry) return undefined
    const stored = Buffer.from(entry.which === 'current' ? entry.key.sha256 : (entry.key.previous?.sha256 ?? ''), 'hex')
    if (stored.length !== digest.length || !timingSafeEqual(stored, digest)) return undefined
    const key = entry.key
    const now = this.clock()
    if (key.revoked_at) throw new GatewayError('invalid_api_key', `This API key was revoked at ${key.revoked_at}.`)
    if (key.expires_at && Date.parse(key.expires_at) <= now) throw new GatewayError('invalid_api_key', `This API key expired at ${key.expires_at}.`)
    if (entry.which === 'previous' && key.previous && Date.parse(key.previous.until) <= now) {
      throw new GatewayError('invalid_api_key', `This API key was rotated; its grace period ended at ${key.previous.until}.`)
    }
    this.#lastUsed.set(key.key_id, now)
    return this.#callerOf(key, snapshot)
  }

  #callerOf(key: RuntimeKey, snapshot: Snapshot): Caller {
    let bySnapshot = this.#callers.get(snapshot)
    if (!bySnapshot) {
      bySnapshot = new WeakMap()
      this.#callers.set(snapshot, bySnapshot)
    }
    const known = bySnapshot.get(key)
    if (known) return known
    const configured = snapshot.config.file.clients.find((c) => c.client_id === key.client_id)
    const client: ClientConfig = configured ?? { client_id: key.client_id, team_id: key.team_id, keys: [] }
    // The key's models within its client's, when both name some.
    const allowed = key.models ? new Set(configured?.models ? key.models.filter((m) => configured.models?.includes(m)) : key.models) : configured?.models ? new Set(configured.models) : undefined
    const caller: Caller = { client, keyName: key.name ?? key.key_id, digest: Buffer.from(key.sha256, 'hex'), allowed, key: limitsOf(key) }
    bySnapshot.set(key, caller)
    return caller
  }
}

function limitsOf(key: RuntimeKey): KeyLimits {
  const lines: QuotaLine[] = []
  if (key.tpm_limit !== null) lines.push({ qid: 'tpm', mode: 'sliding', period: 'minute', token_limit: key.tpm_limit, micro_limit: -1 })
  key.budgets.forEach((b, i) => {
    lines.push({ qid: `budget-${i}`, mode: b.window, period: b.period, token_limit: b.token_limit ?? -1, micro_limit: b.cost_limit_usd === undefined ? -1 : Math.floor(b.cost_limit_usd * 1_000_000) })
  })
  // Frozen: the stores check a list once, and key leases by it.
  const plan = lines.length > 0 ? Object.freeze({ entity: `key:${key.key_id}`, lines: Object.freeze(lines.map((l) => Object.freeze(l))) as QuotaLine[] }) : undefined
  return { key_id: key.key_id, rpm_limit: key.rpm_limit, plan }
}
