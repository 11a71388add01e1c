// What a budgeted request reserves and what a refusal or an outage leaves behind, through real gateway processes on both quota stores: the dearest target of its chain, the estimate's margin, no reservation kept when another entity refuses, provider RPM closed while Redis is down.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import { hashKey } from '../../gateway/auth.ts'
import { buildSnapshot, type Route } from '../../gateway/config-store.ts'
import { countTextTokens } from '../../gateway/providers/tokenize.ts'
import { estimateRequest, RequestCounter, type Estimate } from '../../gateway/quota/estimate.ts'
import { parseConfig } from '../../shared/config/load.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

const ADMIN = 'adm-budget-reservations'
const CLIENTS = ['chain', 'tight', 'margin', 'team-a', 'team-b', 'free'] as const
type Client = (typeof CLIENTS)[number]
const key = (c: Client) => `sk-reservations-${c}`

// A request whose output cap dominates its cost: the two targets' estimates are far apart.
const ASK = { max_tokens: 1000, messages: [{ role: 'user' as const, content: 'Count to three, please.' }] }
const PROMPT = 'The quick brown fox jumps over the lazy dog, twice a sentence. '.repeat(150)

// The limits that depend on what a request reserves.
interface Limits {
  // Between what the chain's cheap target and its dear one reserve for ASK.
  tightMicro: number
  // One and a half of ASK's reservation on the cheap model.
  teamTokens: number
}

let emulator: Emulator
let redis: RedisServer
let limits: Limits
let estimates: { cheap: Estimate; dear: Estimate }
let cheapRoute: Route

function config(l: Limits): Record<string, unknown> {
  const model = (name: string, upstream: string, input: number, output: number) => ({ name, upstream_model: upstream, cost_per_1k_input_tokens: input, cost_per_1k_output_tokens: output })
  const provider = (id: string, models: unknown[], extra: Record<string, unknown> = {}) => ({ provider_id: id, name: id, kind: 'openai-compatible', base_url: emulator.baseUrl, health_check: false, models, ...extra })
  // Sliding days: a run across midnight UTC keeps what it booked.
  const day = { period: 'day', window: 'sliding' }
  return {
    server: { log_level: 'info' },
    providers: [
      provider('p-cheap', [model('cheap-m', 'cheap-up', 0.001, 0.002)]),
      provider('p-dear', [model('dear-m', 'dear-up', 0.01, 0.03)]),
      provider('p-rpm', [model('rpm-m', 'rpm-up', 0.001, 0.002)], { rate_limit_rpm: 1000 }),
    ],
    routing: { retries: 0, health_check: { enabled: false } },
    routes: [{ name: 'chain', targets: [{ provider: 'p-cheap', model: 'cheap-m' }, { provider: 'p-dear', model: 'dear-m' }] }],
    clients: CLIENTS.map((c) => ({ client_id: c, team_id: c.startsWith('team-') ? 'shared-team' : `team-of-${c}`, keys: [{ name: 'k', sha256: hashKey(key(c)) }] })),
    // `free` has no budget at all.
    quotas: [
      { quota_id: 'chain-usd', entity_type: 'user', entity_id: 'chain', ...day, cost_limit_usd: 100 },
      { quota_id: 'tight-usd', entity_type: 'user', entity_id: 'tight', ...day, cost_limit_usd: l.tightMicro / 1e6 },
      { quota_id: 'margin-tokens', entity_type: 'user', entity_id: 'margin', ...day, token_limit: 10_000_000 },
      { quota_id: 'team-tokens', entity_type: 'team', entity_id: 'shared-team', ...day, token_limit: l.teamTokens },
      { quota_id: 'b-own', entity_type: 'user', entity_id: 'team-b', ...day, token_limit: 10_000_000 },
    ],
  }
}

function post(gw: GatewayProcess, client: Client, body: unknown): Promise<Response> {
  return fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key(client)}` }, body: JSON.stringify(body) })
}

async function errorOf(res: Response): Promise<{ code: string; param: string | null }> {
  return ((await res.json()) as { error: { code: string; param: string | null } }).error
}

async function budgetRow(gw: GatewayProcess, quotaId: string, entity: string): Promise<{ used_tokens: number; reserved_tokens: number }> {
  const res = await fetch(`${gw.url}/admin/quotas`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const { quotas } = (await res.json()) as { quotas: Array<{ quota_id: string; entity: string; used_tokens: number; reserved_tokens: number }> }
  const row = quotas.find((q) => q.quota_id === quotaId && q.entity === entity)
  if (!row) throw new Error(`no budget row ${quotaId} for ${entity}`)
  return row
}

// What a successful answer's x-ratelimit-* headers say the request holds: limit less what is left
// (the budget was unused before it).
function reservedTokens(res: Response): number {
  return Number(res.headers.get('x-ratelimit-limit-tokens')) - Number(res.headers.get('x-ratelimit-remaining-tokens'))
}
function reservedMicro(res: Response): number {
  return Math.round((Number(res.headers.get('x-ratelimit-limit-usd')) - Number(res.headers.get('x-ratelimit-remaining-usd'))) * 1e6)
}

// A log line written after the first `mark` lines (the harness matches past lines too).
async function waitForNewLog(gw: GatewayProcess, mark: number, msg: string): Promise<void> {
  const seen = gw.lines.slice(0, mark).filter((l) => l.includes(`"msg":"${msg}"`)).length
  let n = 0
  await gw.waitForLog((l) => l.msg === msg && ++n > seen)
}

beforeAll(async () => {
  emulator = startEmulator({ recordLimit: 10 })
  redis = await startRedis()
  // What each target reserves for ASK, computed the way the gateway computes it.
  const snapshot = buildSnapshot(parseConfig(JSON.stringify(config({ tightMicro: 1, teamTokens: 1 })), 'reservations.json'))
  const [cheap, dear] = snapshot.routes.get('chain')?.targets ?? []
  if (!cheap || !dear) throw new Error('no chain')
  cheapRoute = cheap
  const estimate = (r: Route, model: string) => estimateRequest(r, { model, ...ASK }, {}, snapshot.config.file.quota, new RequestCounter())
  estimates = { cheap: await estimate(cheap, 'chain'), dear: await estimate(dear, 'chain') }
  limits = {
    tightMicro: estimates.cheap.micro + Math.floor((estimates.dear.micro - estimates.cheap.micro) / 2),
    teamTokens: Math.floor((await estimate(cheap, 'cheap-m')).tokens * 1.5),
  }
})

afterAll(async () => {
  await emulator?.stop()
  await redis?.stop()
})

beforeEach(() => emulator.reset())

for (const store of ['memory', 'redis'] as const) {
  describe(`what a request reserves (${store} quota store)`, () => {
    let gw: GatewayProcess
    beforeAll(async () => {
      gw = await startGateway({ config: config(limits), env: { ADMIN_TOKEN: ADMIN, ...(store === 'redis' ? { REDIS_URL: redis.url } : {}) } })
    })
    afterAll(async () => {
      await gw?.stop()
    })

    it('reserves for the dearest target its fallback chain may reach, though the cheap first one answers', async () => {
      expect(estimates.dear.micro).toBeGreaterThan(estimates.cheap.micro * 5)
      const res = await post(gw, 'chain', { model: 'chain', ...ASK })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-gateway-provider')).toBe('p-cheap')
      expect(reservedMicro(res)).toBe(estimates.dear.micro)
    })

    it('refuses a request whose chain may reach a target dearer than the budget holds, though its first target fits', async () => {
      const sent = emulator.stats.requests
      const res = await post(gw, 'tight', { model: 'chain', ...ASK })
      expect(res.status).toBe(400)
      expect(await errorOf(res)).toMatchObject({ code: 'request_exceeds_budget', param: 'quota:tight-usd' })
      expect(emulator.stats.requests).toBe(sent)
      // The same request to the cheap target alone fits the budget.
      expect((await post(gw, 'tight', { model: 'cheap-m', ...ASK })).status).toBe(200)
    })

    it("reserves at least the prompt's token count plus its 25 % margin, and the output cap", async () => {
      const res = await post(gw, 'margin', { model: 'cheap-m', max_tokens: 10, messages: [{ role: 'user', content: PROMPT }] })
      expect(res.status).toBe(200)
      const counted = await countTextTokens(PROMPT, cheapRoute.adapter.encoding(cheapRoute.target))
      expect(counted).toBeGreaterThan(1000)
      expect(reservedTokens(res)).toBeGreaterThanOrEqual(Math.ceil(counted * 1.25) + 10)
    })

    it("releases what the caller's own budget reserved when its team's budget refuses: nothing of it stays taken", async () => {
      // team-a's request holds most of the team budget while the provider takes its time.
      emulator.setBehavior('cheap-up', { latency_ms: 1500 })
      const seen = emulator.stats.requests
      const holding = post(gw, 'team-a', { model: 'cheap-m', ...ASK })
      await emulator.waitFor('requests', seen + 1)
      const res = await post(gw, 'team-b', { model: 'cheap-m', ...ASK })
      expect(res.status).toBe(429)
      expect(await errorOf(res)).toMatchObject({ code: 'token_quota_exceeded', param: 'quota:team-tokens' })
      // The release runs off the response path: give it a moment, not a reservation's lifetime.
      const deadline = Date.now() + 3000
      while ((await budgetRow(gw, 'b-own', 'user:team-b')).reserved_tokens > 0 && Date.now() < deadline) await Bun.sleep(10)
      expect(await budgetRow(gw, 'b-own', 'user:team-b')).toMatchObject({ used_tokens: 0, reserved_tokens: 0 })
      expect((await holding).status).toBe(200)
    })
  })
}

describe('provider requests-per-minute admission while Redis is down', () => {
  let own: RedisServer
  let gw: GatewayProcess
  const small = (model: string) => ({ model, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] })
  beforeAll(async () => {
    own = await startRedis()
    gw = await startGateway({ config: config(limits), env: { ADMIN_TOKEN: ADMIN, REDIS_URL: own.url } })
  })
  afterAll(async () => {
    await gw?.stop()
    await own?.stop()
  })

  it('fails closed: a call to a provider with rate_limit_rpm is refused with 503 dependency_unavailable and not sent, and is served once Redis is back', async () => {
    expect((await post(gw, 'free', small('rpm-m'))).status).toBe(200)
    const down = await own.stopTemporarily()
    try {
      // The caller has no budget: a provider without a limit needs no Redis, and serves.
      expect((await post(gw, 'free', small('cheap-m'))).status).toBe(200)
      const calls = emulator.byModel.get('rpm-up') ?? 0
      const res = await post(gw, 'free', small('rpm-m'))
      expect(res.status).toBe(503)
      expect((await errorOf(res)).code).toBe('dependency_unavailable')
      expect(emulator.byModel.get('rpm-up') ?? 0).toBe(calls)
    } finally {
      const mark = gw.lines.length
      await down.resume()
      await waitForNewLog(gw, mark, 'redis ready')
    }
    expect((await post(gw, 'free', small('rpm-m'))).status).toBe(200)
  }, 20_000)
})
