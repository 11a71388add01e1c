// Virtual keys at runtime through the real gateway: the admin API's whole lifecycle (create, use, list, rotate, revoke), per-key limits, keys kept across a restart (embedded SQLite) and shared by instances on Redis.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI, { APIError } from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, testConfig, TEST_KEYS, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

const ADMIN = 'admin-token-keys-test-1'
let emulator: Emulator

beforeAll(() => {
  emulator = startEmulator()
  emulator.setBehavior('*', { reply: 'Hello there.' })
})
afterAll(async () => {
  await emulator?.stop()
})

const config = () => ({ ...testConfig({ upstreamBaseUrl: emulator.baseUrl }), clients: [...(testConfig({ upstreamBaseUrl: emulator.baseUrl }).clients as unknown[]), { client_id: 'config-client', team_id: 'team-config', keys: [{ name: 'k', sha256: hashKey('sk-config-client-key') }] }] })

async function admin(gw: GatewayProcess, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

const chat = (gw: GatewayProcess, key: string) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 }).chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] })
const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as APIError)

describe('runtime keys, embedded (SQLite in the data folder)', () => {
  let dataDir: string
  let gw: GatewayProcess
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'gw-keys-'))
    gw = await startGateway({ config: config(), env: { ADMIN_TOKEN: ADMIN, GATEWAY_DATA_DIR: dataDir } })
  })
  afterAll(async () => {
    await gw?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('runs the lifecycle: create, use, list without the secret, rotate with a grace, revoke', async () => {
    const created = await admin(gw, 'POST', '/admin/keys', { client_id: 'new-service', team_id: 'team-new', name: 'ci' })
    expect(created.status).toBe(201)
    const secret = String(created.body.key)
    expect(secret).toStartWith('sk-gw-')
    expect(created.body).toMatchObject({ client_id: 'new-service', team_id: 'team-new', name: 'ci', status: 'active', prefix: secret.slice(0, 12) })
    const answer = await chat(gw, secret)
    expect(answer.choices[0]?.message.content).toBe('Hello there.')
    const record = await gw.waitForLog((l) => l.msg === 'request' && l.client_id === 'new-service')
    expect(record.team_id).toBe('team-new')
    // The audit trail names the change and who made it, never the secret.
    expect(await gw.waitForLog((l) => l.msg === 'audit' && l.action === 'key.create' && l.key_id === created.body.key_id)).toMatchObject({ actor: expect.stringMatching(/^admin:[0-9a-f]{8}$/) })
    expect(gw.lines.join('\n')).not.toContain(secret)

    const listed = await admin(gw, 'GET', '/admin/keys?client_id=new-service')
    const list = listed.body.data as Array<Record<string, unknown>>
    expect(list).toHaveLength(1)
    expect(JSON.stringify(list)).not.toContain(secret)
    expect(JSON.stringify(list)).not.toContain(hashKey(secret))
    expect(list[0]?.last_used_at).toEqual(expect.any(String))

    const rotated = await admin(gw, 'POST', `/admin/keys/${created.body.key_id}/rotate`, { grace_seconds: 3600 })
    const fresh = String(rotated.body.key)
    expect(rotated.body.status).toBe('rotating')
    // Both work while the grace lasts.
    await chat(gw, secret)
    await chat(gw, fresh)
    const now = await admin(gw, 'POST', `/admin/keys/${created.body.key_id}/rotate`, { grace_seconds: 0 })
    const newest = String(now.body.key)
    // Without a grace the replaced secret stops at once.
    expect((await refusal(chat(gw, fresh)))?.status).toBe(401)
    await chat(gw, newest)

    const revoked = await admin(gw, 'DELETE', `/admin/keys/${created.body.key_id}`)
    expect(revoked.body.status).toBe('revoked')
    const err = await refusal(chat(gw, newest))
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError)
    expect(err?.message).toContain('revoked')
  })

  it('joins a client of the config (its team), and refuses another team for it', async () => {
    const joined = await admin(gw, 'POST', '/admin/keys', { client_id: 'config-client' })
    expect(joined.body.team_id).toBe('team-config')
    expect((await admin(gw, 'POST', '/admin/keys', { client_id: 'config-client', team_id: 'other' })).body).toMatchObject({ error: { param: 'team_id' } })
  })

  it('answers an invalid body with a 400 naming the field, and changes nothing', async () => {
    const before = ((await admin(gw, 'GET', '/admin/keys')).body.data as unknown[]).length
    for (const [body, param] of [
      [{}, 'client_id'],
      [{ client_id: 'x', team_id: 't', rpm_limit: 0 }, 'rpm_limit'],
      [{ client_id: 'x', team_id: 't', colour: 'red' }, 'colour'],
      [{ client_id: 'x', team_id: 't', expires_at: 'tomorrow' }, 'expires_at'],
      [{ client_id: 'x', team_id: 't', expires_at: '2001-01-01T00:00:00Z' }, 'expires_at'],
      [{ client_id: 'x', team_id: 't', budgets: [{ period: 'day' }] }, 'budgets[0]'],
      [{ client_id: 'x' }, 'team_id'],
    ] as const) {
      const res = await admin(gw, 'POST', '/admin/keys', body)
      expect(res.status).toBe(400)
      expect((res.body.error as { param: string }).param).toBe(param)
    }
    expect(((await admin(gw, 'GET', '/admin/keys')).body.data as unknown[]).length).toBe(before)
    // Without the admin token: nothing.
    expect((await fetch(`${gw.url}/admin/keys`, { headers: { authorization: `Bearer ${TEST_KEYS.full}` } })).status).toBe(401)
  })

  it('limits a key\'s requests per minute with a 429 and OpenAI\'s rate headers', async () => {
    const { body } = await admin(gw, 'POST', '/admin/keys', { client_id: 'rpm-client', team_id: 't', rpm_limit: 2 })
    await chat(gw, String(body.key))
    await chat(gw, String(body.key))
    const err = await refusal(chat(gw, String(body.key)))
    expect(err).toBeInstanceOf(OpenAI.RateLimitError)
    expect(err?.headers?.get('x-ratelimit-limit-requests')).toBe('2')
    expect(Number(err?.headers?.get('retry-after'))).toBeGreaterThan(0)
  })

  it('holds a key\'s tokens per minute and budgets under concurrency', async () => {
    const tpm = await admin(gw, 'POST', '/admin/keys', { client_id: 'tpm-client', team_id: 't', tpm_limit: 700 })
    emulator.setBehavior('*', { reply: 'Hello there.', latency_ms: 200 })
    try {
      const ask = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: String(tpm.body.key), maxRetries: 0 }).chat.completions.create({ model: 'test-model', max_tokens: 300, messages: [{ role: 'user', content: 'hi' }] })
      const results = await Promise.allSettled([ask(), ask(), ask()])
      // Each reserves its input and 300 tokens of output: two fit in 700, the third does not.
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2)
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      expect(refused.reason).toBeInstanceOf(OpenAI.RateLimitError)
      expect((refused.reason as APIError).message).toContain("'tpm'")
    } finally {
      emulator.setBehavior('*', { reply: 'Hello there.' })
    }
    const budget = await admin(gw, 'POST', '/admin/keys', { client_id: 'budget-client', team_id: 't', budgets: [{ period: 'day', token_limit: 100 }] })
    const err = await refusal(chat(gw, String(budget.body.key)))
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect(err?.code).toBe('request_exceeds_budget')
  })

  it('refuses a second gateway on the same data folder with one line naming it', async () => {
    const err = await startGateway({ config: config(), env: { ADMIN_TOKEN: ADMIN, GATEWAY_DATA_DIR: dataDir } }).then(
      async (second) => {
        await second.stop()
        return undefined
      },
      (e: unknown) => e as Error,
    )
    expect(String(err?.message)).toContain('in use by another gateway process')
  })

  it('never brings a revoked key back: a change to it is refused, whatever came before', async () => {
    const { body } = await admin(gw, 'POST', '/admin/keys', { client_id: 'revoke-race', team_id: 't' })
    await admin(gw, 'DELETE', `/admin/keys/${body.key_id}`)
    expect((await admin(gw, 'PATCH', `/admin/keys/${body.key_id}`, { name: 'renamed' })).status).toBe(400)
    expect((await admin(gw, 'POST', `/admin/keys/${body.key_id}/rotate`, {})).status).toBe(400)
    expect((await refusal(chat(gw, String(body.key))))?.status).toBe(401)
    // Ids that are not ids: a 404, never a 500.
    for (const id of ['%E0%A4%A', '%', 'no-such-key']) expect((await admin(gw, 'GET', `/admin/keys/${id}`)).status).toBe(404)
    // A body over the bound is refused before it is read whole.
    expect((await admin(gw, 'PATCH', `/admin/keys/${body.key_id}`, { name: 'x'.repeat(70_000) })).status).toBe(413)
  })

  it('lists the budget lines of runtime keys and of the clients they made', async () => {
    const { body } = await admin(gw, 'POST', '/admin/keys', { client_id: 'budget-lines', team_id: 't', tpm_limit: 500, budgets: [{ period: 'day', token_limit: 9000 }] })
    const quotas = (await admin(gw, 'GET', '/admin/quotas')).body.quotas as Array<{ quota_id: string; entity: string; token_limit: number }>
    expect(quotas.filter((q) => q.entity === `key:${body.key_id}`).map((q) => [q.quota_id, q.token_limit]).sort()).toEqual([['budget-0', 9000], ['tpm', 500]])
  })

  it('keeps its keys across a restart, and a revoked one stays revoked', async () => {
    const kept = await admin(gw, 'POST', '/admin/keys', { client_id: 'kept-client', team_id: 't' })
    const gone = await admin(gw, 'POST', '/admin/keys', { client_id: 'kept-client', team_id: 't' })
    await admin(gw, 'DELETE', `/admin/keys/${gone.body.key_id}`)
    await gw.stop()
    gw = await startGateway({ config: config(), env: { ADMIN_TOKEN: ADMIN, GATEWAY_DATA_DIR: dataDir } })
    await chat(gw, String(kept.body.key))
    expect((await refusal(chat(gw, String(gone.body.key))))?.status).toBe(401)
  })
})

describe('runtime keys on Redis, shared by instances', () => {
  let redis: RedisServer
  let a: GatewayProcess
  let b: GatewayProcess
  beforeAll(async () => {
    redis = await startRedis()
    a = await startGateway({ config: config(), env: { ADMIN_TOKEN: ADMIN, REDIS_URL: redis.url } })
    b = await startGateway({ config: config(), env: { ADMIN_TOKEN: ADMIN, REDIS_URL: redis.url } })
  })
  afterAll(async () => {
    await a?.stop()
    await b?.stop()
    await redis?.stop()
  })

  // The other instance's answer, asked again until it changes or a second has passed.
  async function within1s(check: () => Promise<boolean>): Promise<number> {
    const start = performance.now()
    while (performance.now() - start < 1000) if (await check()) return performance.now() - start
    throw new Error('not within 1 s')
  }

  it('serves a key made on one instance from the other, and refuses it there within a second of its revocation', async () => {
    const { body } = await admin(a, 'POST', '/admin/keys', { client_id: 'shared-client', team_id: 't' })
    const key = String(body.key)
    await within1s(async () => (await refusal(chat(b, key))) === undefined)
    await admin(a, 'DELETE', `/admin/keys/${body.key_id}`)
    // Refused at once where it was revoked, and on the other instance within a second.
    expect((await refusal(chat(a, key)))?.status).toBe(401)
    const took = await within1s(async () => (await refusal(chat(b, key)))?.status === 401)
    expect(took).toBeLessThan(1000)
  })

  it('refuses a change made on the other instance right after a revocation, instead of undoing it', async () => {
    const { body } = await admin(a, 'POST', '/admin/keys', { client_id: 'race-client', team_id: 't' })
    await within1s(async () => (await refusal(chat(b, String(body.key)))) === undefined)
    await admin(a, 'DELETE', `/admin/keys/${body.key_id}`)
    // B may not have seen the revocation yet; its change is applied to the key as stored.
    expect((await admin(b, 'PATCH', `/admin/keys/${body.key_id}`, { rpm_limit: 100 })).status).toBe(400)
    expect((await admin(b, 'GET', `/admin/keys/${body.key_id}`)).body.status).toBe('revoked')
    await within1s(async () => (await refusal(chat(b, String(body.key))))?.status === 401)
    expect((await refusal(chat(a, String(body.key))))?.status).toBe(401)
  })

  it('skips a row it cannot read, and keeps every other key current', async () => {
    const { body } = await admin(a, 'POST', '/admin/keys', { client_id: 'bad-row-client', team_id: 't' })
    await within1s(async () => (await refusal(chat(b, String(body.key)))) === undefined)
    const { connectRedis } = await import('../../shared/redis.ts')
    const raw = connectRedis(redis.url, 2000)
    await new Promise((r) => (raw.status === 'ready' ? r(undefined) : raw.once('ready', r)))
    await raw.hset('gateway:keys', 'bad', '{oops')
    raw.disconnect()
    await admin(a, 'DELETE', `/admin/keys/${body.key_id}`)
    await within1s(async () => (await refusal(chat(b, String(body.key))))?.status === 401)
    await b.waitForLog((l) => l.msg === 'runtime key row skipped: it cannot be read')
  })
})
