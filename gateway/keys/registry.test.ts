import { describe, expect, it } from 'bun:test'
import { createHash } from 'node:crypto'
import { buildSnapshot } from '../config-store.ts'
import { GatewayError } from '../errors.ts'
import { KeyRegistry } from './registry.ts'
import type { KeyStore, RuntimeKey } from './store.ts'

const T0 = Date.UTC(2026, 10, 30, 12)
const digestOf = (s: string) => createHash('sha256').update(s).digest()

function memoryStore(): KeyStore {
  const keys = new Map<string, RuntimeKey>()
  return {
    all: async () => [...keys.values()],
    get: async (id) => keys.get(id),
    put: async (k, expected) => {
      if ((keys.get(k.key_id)?.version ?? 0) !== expected) return false
      keys.set(k.key_id, k)
      return true
    },
    watch: () => () => undefined,
    close: () => undefined,
  }
}

const key = (over: Partial<RuntimeKey> = {}): RuntimeKey => ({
  key_id: 'key_1', client_id: 'c', team_id: 't', name: null, prefix: 'sk-gw-abc', sha256: digestOf('secret-now').toString('hex'), models: null, expires_at: null,
  rpm_limit: null, tpm_limit: 1000, budgets: [{ period: 'day', window: 'fixed', token_limit: 5000 }], revoked_at: null, created_at: new Date(T0).toISOString(), updated_at: new Date(T0).toISOString(), version: 1, ...over,
})

const snapshot = buildSnapshot({ file: { clients: [], providers: [], routes: [], quotas: [], server: {}, routing: {} }, secrets: new Map(), unavailable: [] } as never)

function refusal(fn: () => unknown): GatewayError {
  try {
    fn()
  } catch (e) {
    if (e instanceof GatewayError) return e
    throw e
  }
  throw new Error('accepted')
}

describe('KeyRegistry', () => {
  it('lets a replaced secret in until its grace ends, then says why it is refused', async () => {
    let now = T0
    const reg = new KeyRegistry(memoryStore(), () => now)
    await reg.save(key({ previous: { sha256: digestOf('secret-old').toString('hex'), prefix: 'sk-gw-old', until: new Date(T0 + 60_000).toISOString() } }), 0)
    const use = (s: string) => reg.authenticate(digestOf(s).toString('hex'), digestOf(s), snapshot)
    expect(use('secret-old')?.client.client_id).toBe('c')
    expect(reg.status(reg.get('key_1')!, now)).toBe('rotating')
    now = T0 + 60_000
    expect(refusal(() => use('secret-old')).message).toContain('grace period ended')
    expect(use('secret-now')?.client.team_id).toBe('t')
    expect(use('not-a-key')).toBeUndefined()
  })

  it('refuses an expired key saying so, and carries the key\'s limits as its own budget lines', async () => {
    let now = T0
    const reg = new KeyRegistry(memoryStore(), () => now)
    await reg.save(key({ expires_at: new Date(T0 + 1000).toISOString() }), 0)
    const caller = reg.authenticate(digestOf('secret-now').toString('hex'), digestOf('secret-now'), snapshot)
    expect(caller?.key?.plan).toEqual({ entity: 'key:key_1', lines: [
      { qid: 'tpm', mode: 'sliding', period: 'minute', token_limit: 1000, micro_limit: -1 },
      { qid: 'budget-0', mode: 'fixed', period: 'day', token_limit: 5000, micro_limit: -1 },
    ] })
    // The same caller object for the same key version: plans cached per caller stay cached.
    expect(reg.authenticate(digestOf('secret-now').toString('hex'), digestOf('secret-now'), snapshot)).toBe(caller!)
    now = T0 + 1000
    expect(refusal(() => reg.authenticate(digestOf('secret-now').toString('hex'), digestOf('secret-now'), snapshot)).message).toContain('expired')
  })
})
