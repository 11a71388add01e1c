// Budgets through a real gateway on a Redis that wants a password and TLS: a password-protected Cluster, a wrong password (refused, never logged), a rediss:// node and a rediss:// Cluster.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import OpenAI, { APIError } from 'openai'
import { buildSnapshot } from '../../gateway/config-store.ts'
import { estimateRequest, RequestCounter } from '../../gateway/quota/estimate.ts'
import { quotaKeys, RedisQuotaStore } from '../../gateway/quota/redis-store.ts'
import { parseConfig } from '../../shared/config/load.ts'
import { secretForms } from '../../shared/redact.ts'
import { connectRedis } from '../../shared/redis.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, testConfig, TEST_KEYS, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, startRedisCluster, type RedisCluster, type RedisServer } from '../harness/redis.ts'
import { makeTestCertificate, type TestCertificate } from '../harness/tls-cert.ts'

// Characters a URL must percent-encode, so the URL the harness hands out tests the decoding too.
const PASSWORD = 'gw/p@ss:w#rd%?1'
const WRONG_PASSWORD = 'not/the@right:one#9'
const ask = { model: 'test-model', max_tokens: 10, messages: [{ role: 'user' as const, content: 'Count to three, please.' }] }

let emulator: Emulator
// The tokens one request reserves: the budget holds exactly one.
let perRequest: number
const cleanup: Array<() => Promise<unknown> | void> = []

function config(tokenLimit: number) {
  return {
    ...testConfig({ upstreamBaseUrl: emulator.baseUrl, server: { log_level: 'debug' }, routing: { health_check: { enabled: false } } }),
    quotas: [{ quota_id: 'user-day', entity_type: 'user', period: 'day', token_limit: tokenLimit }],
  }
}

beforeAll(async () => {
  emulator = startEmulator({ recordLimit: 10 })
  emulator.setBehavior('*', { reply: 'One, two, three.' })
  const snapshot = buildSnapshot(parseConfig(JSON.stringify(config(1)), 'q.json'))
  const route = snapshot.routes.get('test-model')?.targets[0]
  if (!route) throw new Error('no route')
  perRequest = (await estimateRequest(route, ask, {}, snapshot.config.file.quota, new RequestCounter())).tokens
})

afterAll(async () => {
  // Gateways before the Redis they use, so their shutdown is not a reconnect storm.
  for (const stop of cleanup.reverse()) await stop()
  await emulator?.stop()
}, 60_000)

async function gateway(redisUrl: string, env: Record<string, string> = {}): Promise<GatewayProcess> {
  const gw = await startGateway({ config: config(perRequest), env: { REDIS_URL: redisUrl, ...env } })
  cleanup.push(() => gw.stop())
  return gw
}

async function readyz(gw: GatewayProcess): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}/readyz`)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

function openai(gw: GatewayProcess): OpenAI {
  return new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: TEST_KEYS.full, maxRetries: 0 })
}

// The tokens booked to the caller's daily budget, read from the Redis the gateway used.
async function usedTokens(redisUrl: string): Promise<number> {
  const client = connectRedis(redisUrl, 2000)
  await new Promise((resolve) => client.once('ready', resolve))
  try {
    const [s] = await new RedisQuotaStore(client).status('user:full-client', [{ qid: 'user-day', mode: 'fixed', period: 'day', token_limit: -1, micro_limit: -1 }])
    return s?.tokens ?? -1
  } finally {
    client.disconnect()
  }
}

// Ready, one request admitted and booked, the next refused by the budget. bookedOn: a Redis this
// process can reach (not TLS: it does not trust the test certificate) to read the booking back from.
async function expectBudgetEnforced(gw: GatewayProcess, bookedOn?: string): Promise<void> {
  expect(await readyz(gw)).toMatchObject({ status: 200, body: { status: 'ready', quota_store: 'redis' } })
  const client = openai(gw)
  const first = await client.chat.completions.create(ask).withResponse()
  expect(first.data.choices[0]?.message.content).toBe('One, two, three.')
  const requestId = first.response.headers.get('x-request-id')
  await gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === requestId)
  const err = (await client.chat.completions.create(ask).catch((e: unknown) => e)) as APIError
  expect(err).toBeInstanceOf(APIError)
  expect(err.status).toBe(429)
  expect(err.code).toBe('token_quota_exceeded')
  if (bookedOn) expect(await usedTokens(bookedOn)).toBe(first.data.usage?.total_tokens ?? -1)
}

// Seeds for a gateway: every master but the one holding the caller's budget, which the gateway
// then only meets through CLUSTER SLOTS, with the options it gives every node (not a seed's own).
async function seedsAvoidingBudget(cluster: RedisCluster): Promise<string> {
  const owner = await cluster.nodeFor(quotaKeys('user:full-client')[0])
  const seeds = cluster.url.split(',').filter((u) => !u.endsWith(`:${owner.port}`))
  expect(seeds).toHaveLength(2)
  return seeds.join(',')
}

function expectNotLogged(gw: GatewayProcess, ...secrets: string[]): void {
  const log = gw.lines.join('\n')
  for (const s of secrets) for (const form of secretForms(s)) expect(log).not.toContain(form)
}

describe('a password-protected Redis Cluster', () => {
  let cluster: RedisCluster

  beforeAll(async () => {
    cluster = await startRedisCluster({ password: PASSWORD })
    cleanup.push(() => cluster.stop())
    // Three nodes to start, meet and agree on a busy machine: seconds, past bun's 5 s default.
  }, 60_000)

  it('keeps budgets there: every node, seeds and discovered ones, gets the password', async () => {
    expect(cluster.url).toContain(`:${encodeURIComponent(PASSWORD)}@`)
    const gw = await gateway(await seedsAvoidingBudget(cluster))
    await expectBudgetEnforced(gw, cluster.url)
    expectNotLogged(gw, PASSWORD)
  }, 30_000)

  it('is not ready with a wrong password, answers 503, and never logs either password', async () => {
    const wrong = cluster.url.replaceAll(encodeURIComponent(PASSWORD), encodeURIComponent(WRONG_PASSWORD))
    const gw = await gateway(wrong)
    expect(await readyz(gw)).toMatchObject({ status: 503, body: { status: 'dependency_unavailable', quota_store: 'redis' } })
    const before = emulator.stats.requests
    const err = (await openai(gw).chat.completions.create(ask).catch((e: unknown) => e)) as APIError
    expect(err.status).toBe(503)
    expect(err.code).toBe('dependency_unavailable')
    expect(emulator.stats.requests).toBe(before)
    // Debug logging shows every Redis error: the refusal is there, the password is not.
    expect(gw.lines.some((l) => l.includes('"msg":"redis error"') && l.includes('WRONGPASS'))).toBe(true)
    expectNotLogged(gw, PASSWORD, WRONG_PASSWORD)
    // The refused request's usage record would wait out the drain for a Redis that never takes it.
    await gw.stop('SIGKILL')
  }, 30_000)
})

describe('Redis over TLS (rediss://)', () => {
  let cert: TestCertificate
  let server: RedisServer
  let cluster: RedisCluster

  beforeAll(async () => {
    // Valid for the name localhost only: a client connecting to 127.0.0.1 must still ask for that name.
    cert = await makeTestCertificate(['DNS:localhost'])
    cleanup.push(() => cert.remove())
    const tls = { certFile: cert.certFile, keyFile: cert.keyFile }
    server = await startRedis({ password: PASSWORD, tls })
    cleanup.push(() => server.stop())
    // Nodes announced by name, as managed TLS clusters do, so their certificate can name them.
    cluster = await startRedisCluster({ password: PASSWORD, tls, announceHostname: 'localhost' })
    cleanup.push(() => cluster.stop())
  }, 60_000)

  it('keeps budgets on a single node, trusting its certificate through NODE_EXTRA_CA_CERTS', async () => {
    expect(server.url.startsWith('rediss://')).toBe(true)
    // By name: the certificate is checked against "localhost".
    const url = server.url.replace('@127.0.0.1:', '@localhost:')
    const gw = await gateway(url, { NODE_EXTRA_CA_CERTS: cert.certFile })
    await expectBudgetEnforced(gw)
    expectNotLogged(gw, PASSWORD)
  }, 30_000)

  it('is not ready when the certificate is not trusted', async () => {
    const gw = await gateway(server.url)
    expect((await readyz(gw)).status).toBe(503)
    expect(gw.lines.some((l) => l.includes('"msg":"redis error"') && /certificate/i.test(l))).toBe(true)
    expectNotLogged(gw, PASSWORD)
  }, 30_000)

  it('keeps budgets on a Cluster: nodes found through CLUSTER SLOTS get TLS and the password too', async () => {
    // Seeds by name: ioredis resolves them to 127.0.0.1 and connects there, so only the servername
    // taken from the URL lets their certificate check pass. The budget's node is met by the name
    // the Cluster announces.
    const url = (await seedsAvoidingBudget(cluster)).replaceAll('@127.0.0.1:', '@localhost:')
    const gw = await gateway(url, { NODE_EXTRA_CA_CERTS: cert.certFile })
    await expectBudgetEnforced(gw)
    expectNotLogged(gw, PASSWORD)
  }, 30_000)
})
