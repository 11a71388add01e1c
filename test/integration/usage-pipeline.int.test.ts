// The usage pipeline end to end on real servers: gateway → Redis stream → analytics worker → clickhouse-server 18.16 → rollups → API and CLI.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import Redis from 'ioredis'
import OpenAI from 'openai'
import { connectClickHouse, type ClickHouse } from '../../analytics/clickhouse.ts'
import { hashKey } from '../../gateway/auth.ts'
import { RECORD_FIELD, USAGE_DEAD_LETTERS, USAGE_GROUP, USAGE_STREAM } from '../../shared/usage-stream.ts'
import { startAnalytics, type AnalyticsProcess } from '../harness/analytics-process.ts'
import { startClickHouse, type ClickHouseServer } from '../harness/clickhouse.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

const ROOT = resolve(import.meta.dir, '../..')
const KEY = 'sk-pipeline-test'
const ADMIN = 'admin-pipeline'

let redisServer: RedisServer
let clickhouse: ClickHouseServer
let emulator: Emulator
let gateway: GatewayProcess
let worker: AnalyticsProcess
let redis: Redis
let ch: ClickHouse
let client: OpenAI

const config = (emu: Emulator) => ({
  providers: [
    {
      provider_id: 'emu',
      name: 'emu',
      kind: 'openai-compatible',
      base_url: emu.baseUrl,
      health_check: false,
      models: [
        { name: 'm-cheap', upstream_model: 'up-cheap', cost_per_1k_input_tokens: 0.00015, cost_per_1k_output_tokens: 0.0006 },
        { name: 'm-dear', upstream_model: 'up-dear', cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 },
      ],
    },
  ],
  routing: { retries: 0, health_check: { enabled: false } },
  clients: [{ client_id: 'pipeline-client', team_id: 'pipeline-team', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
  // Budgets far above the test's spend: the quota store's settled usage is checked against ClickHouse.
  // A sliding day holds the whole run's usage, also when the run crosses midnight UTC (a fixed day
  // would start afresh and hold only part of it).
  quotas: [{ quota_id: 'user-day', entity_type: 'user', period: 'day', window: 'sliding', token_limit: 1_000_000_000, cost_limit_usd: 1_000_000 }],
})

const workerEnv = () => ({ REDIS_URL: redisServer.url, CLICKHOUSE_URL: clickhouse.url, ANALYTICS_CONSUMER: 'worker-1', ANALYTICS_FLUSH_MS: '50', ANALYTICS_BATCH_SIZE: '100', ADMIN_TOKEN: ADMIN })

async function rawCounts(): Promise<{ rows: number; unique: number }> {
  // The writer's probe row (written when ClickHouse refused an insert while answering, as it can
  // just after a restart) is not a usage record.
  const [r] = await ch.query<{ rows: string; uniq: string }>("SELECT count() AS rows, uniqExact(request_id) AS uniq FROM usage_raw FINAL WHERE request_id != '__write_probe__'")
  return { rows: Number(r?.rows ?? 0), unique: Number(r?.uniq ?? 0) }
}

// Every usage record the gateway wrote to its log: the ground truth the pipeline must match.
function loggedRecords(): Array<Record<string, unknown>> {
  return gateway.lines.flatMap((l) => {
    const o = JSON.parse(l) as Record<string, unknown>
    return o.msg === 'request' ? [o] : []
  })
}

// The UTC days records were created on, first and last: a run that crosses midnight spans two.
function daysOf(records: ReadonlyArray<Record<string, unknown>>): { from: string; to: string } {
  const days = records.map((r) => String(r.created_at).slice(0, 10)).sort()
  const today = new Date().toISOString().slice(0, 10)
  return { from: days[0] ?? today, to: days.at(-1) ?? today }
}

// Usage stream entries the worker group has read and not yet acknowledged.
async function pendingEntries(): Promise<number> {
  const summary = (await redis.xpending(USAGE_STREAM, USAGE_GROUP).catch(() => [0])) as [number, ...unknown[]]
  return Number(summary[0])
}

// Records are logged off the response path: wait until the gateway has written n of them.
async function waitLogged(n: number): Promise<number> {
  const deadline = Date.now() + 10_000
  while (loggedRecords().length < n) {
    if (Date.now() > deadline) throw new Error(`the gateway logged ${loggedRecords().length} of ${n} usage records`)
    await Bun.sleep(10)
  }
  return loggedRecords().length
}

async function waitForRows(n: number, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while ((await rawCounts()).unique < n) {
    if (Date.now() > deadline) throw new Error(`only ${(await rawCounts()).unique} of ${n} records reached ClickHouse`)
    await Bun.sleep(50)
  }
}

async function send(n: number, concurrency = 16): Promise<void> {
  let next = 0
  const one = async () => {
    while (next < n) {
      const i = next++
      const stream = i % 3 === 0
      const model = i % 2 === 0 ? 'm-cheap' : 'm-dear'
      if (stream) {
        const s = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: `Request ${i}, streamed.` }] })
        for await (const _ of s) {
          // drain
        }
      } else {
        await client.chat.completions.create({ model, messages: [{ role: 'user', content: `Request ${i}.` }] })
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, one))
}

beforeAll(async () => {
  ;[redisServer, clickhouse] = await Promise.all([startRedis(), startClickHouse()])
  emulator = startEmulator({ recordLimit: 10 })
  gateway = await startGateway({ config: config(emulator), env: { REDIS_URL: redisServer.url, ADMIN_TOKEN: ADMIN } })
  worker = await startAnalytics(workerEnv())
  redis = new Redis(redisServer.url)
  ch = connectClickHouse(clickhouse.url)
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 })
}, 60_000)

afterAll(async () => {
  await gateway?.stop()
  await worker?.stop()
  redis?.disconnect()
  await ch?.close()
  await emulator?.stop()
  await Promise.all([redisServer?.stop(), clickhouse?.stop()])
})

describe('usage pipeline', () => {
  it('records every request exactly once, streamed, failed and client-closed ones included', async () => {
    await send(150)
    emulator.setBehavior('up-dear', { status: 500 })
    await client.chat.completions.create({ model: 'm-dear', messages: [{ role: 'user', content: 'fails' }] }).catch(() => undefined)
    emulator.setBehavior('up-dear', {})
    // A caller that leaves mid-stream: its usage so far is recorded too.
    emulator.setBehavior('up-cheap', { chunk_interval_ms: 30 })
    const ac = new AbortController()
    const s = await client.chat.completions.create({ model: 'm-cheap', stream: true, messages: [{ role: 'user', content: 'leave early' }] }, { signal: ac.signal })
    for await (const _ of s) {
      ac.abort()
      break
    }
    emulator.setBehavior('up-cheap', {})
    const total = await waitLogged(152)
    expect(total).toBe(152)
    await waitForRows(total)
    expect(await rawCounts()).toEqual({ rows: total, unique: total })
    const byStatus = await ch.query<{ status: string; closed: number; n: string }>("SELECT status, client_closed AS closed, count() AS n FROM usage_raw FINAL WHERE request_id != '__write_probe__' GROUP BY status, closed")
    expect(byStatus.map((r) => [r.status, Number(r.closed), Number(r.n)]).sort()).toEqual([
      ['error', 0, 1],
      ['success', 0, 150],
      ['success', 1, 1],
    ])
  }, 60_000)

  it('loses nothing and counts nothing twice when the worker is killed under load and restarted', async () => {
    const before = loggedRecords().length
    const load = send(200, 8)
    // Killed mid-stream of work, once it holds entries it read and has not acknowledged: batches
    // inserted but not acknowledged are delivered again.
    const deadline = Date.now() + 10_000
    while ((await pendingEntries()) === 0) {
      if (Date.now() > deadline) throw new Error('the worker read none of the load within 10 s')
      await Bun.sleep(5)
    }
    await worker.stop('SIGKILL')
    await load
    worker = await startAnalytics(workerEnv())
    const total = await waitLogged(before + 200)
    expect(total).toBe(before + 200)
    await waitForRows(total)
    expect(await rawCounts()).toEqual({ rows: total, unique: total })
  }, 60_000)

  it('lands every record after ClickHouse was down under load', async () => {
    const down = await clickhouse.stopTemporarily()
    await send(100, 8)
    await worker.waitForLog((l) => l.msg === 'usage store unreachable or refusing writes; the batch waits')
    await down.resume()
    const total = loggedRecords().length
    await waitForRows(total, 40_000)
    expect(await rawCounts()).toEqual({ rows: total, unique: total })
  }, 90_000)

  it('sets a malformed stream entry aside in the dead-letter stream', async () => {
    await redis.xadd(USAGE_STREAM, '*', RECORD_FIELD, '{"request_id": 42}')
    await worker.waitForLog((l) => l.msg === 'usage entry dead-lettered')
    const dead = (await redis.xrange(USAGE_DEAD_LETTERS, '-', '+')) as Array<[string, string[]]>
    expect(dead.some(([, f]) => f.includes('{"request_id": 42}'))).toBe(true)
  })

  it('rolls up to the exact sum of the raw records and of the quota store, and answers through the API and the CLI', async () => {
    const logged = loggedRecords()
    await waitForRows(logged.length)
    const { from, to } = daysOf(logged)
    const refreshed = await fetch(`${worker.url}/v1/rollups?from=${from}&to=${to}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } })
    expect(refreshed.status).toBe(200)

    const res = await fetch(`${worker.url}/v1/costs?from=${from}&to=${to}&by=model`, { headers: { authorization: `Bearer ${ADMIN}` } })
    const { rows } = (await res.json()) as { rows: Array<{ model: string; requests: number; input_tokens: number; output_tokens: number; cost_pico: string }> }
    for (const model of ['m-cheap', 'm-dear']) {
      const mine = logged.filter((r) => r.model === model)
      const row = rows.find((r) => r.model === model)
      expect(row?.requests).toBe(mine.length)
      expect(row?.input_tokens).toBe(mine.reduce((s, r) => s + Number(r.input_tokens), 0))
      expect(row?.output_tokens).toBe(mine.reduce((s, r) => s + Number(r.output_tokens), 0))
      expect(BigInt(row?.cost_pico ?? '-1')).toBe(mine.reduce((s, r) => s + BigInt(Number(r.cost_pico)), 0n))
    }

    // The budget booked the same usage: tokens exactly, dollars per request rounded up to the micro.
    // A stream its caller left books its whole reservation instead (the provider may have billed
    // more than was relayed): at least what its record says, at most its input and the 4,096 cap.
    const quotas = (await (await fetch(`${gateway.url}/admin/quotas`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as {
      quotas: Array<{ used_tokens: number; used_usd: number }>
    }
    const booked = quotas.quotas[0]
    const tokens = (rs: typeof logged) => rs.reduce((s, r) => s + Number(r.input_tokens) + Number(r.output_tokens), 0)
    const micro = (rs: typeof logged) => rs.reduce((s, r) => s + Math.ceil(Number(r.cost_pico) / 1e6), 0)
    const left = logged.filter((r) => r.client_closed === true)
    const kept = logged.filter((r) => r.client_closed !== true)
    expect(left.length).toBe(1)
    const leftBooked = (booked?.used_tokens ?? 0) - tokens(kept)
    expect(leftBooked).toBeGreaterThan(tokens(left))
    expect(leftBooked).toBeLessThanOrEqual(4096 + 200)
    const leftMicro = Math.round((booked?.used_usd ?? 0) * 1e6) - micro(kept)
    expect(leftMicro).toBeGreaterThanOrEqual(micro(left))

    // What did the team spend on m-dear today: the CLI answers with the same figure.
    const cli = Bun.spawnSync([process.execPath, join(ROOT, 'analytics/costs-cli.ts'), '--team', 'pipeline-team', '--model', 'm-dear', '--from', from, '--to', to, '--by', 'model', '--json', '--url', worker.url], {
      env: { PATH: process.env.PATH ?? '', ADMIN_TOKEN: ADMIN },
    })
    expect(cli.exitCode).toBe(0)
    const cliRows = JSON.parse(cli.stdout.toString()) as Array<{ model: string; cost_pico: string }>
    expect(cliRows).toEqual([expect.objectContaining({ model: 'm-dear', cost_pico: rows.find((r) => r.model === 'm-dear')?.cost_pico })])
  }, 60_000)

  it('refuses cost queries without the admin token and with bad dates', async () => {
    const today = new Date().toISOString().slice(0, 10)
    expect((await fetch(`${worker.url}/v1/costs?from=${today}&to=${today}`)).status).toBe(401)
    const bad = await fetch(`${worker.url}/v1/costs?from=yesterday&to=${today}`, { headers: { authorization: `Bearer ${ADMIN}` } })
    expect(bad.status).toBe(400)
  })

  it("serves the worker process's own figures next to the pipeline's on its /metrics", async () => {
    const text = await (await fetch(`${worker.url}/metrics`)).text()
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1])
    expect(value('analytics_records_inserted_total')).toBeGreaterThan(0)
    expect(value('process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(value('process_open_sockets')).toBeGreaterThanOrEqual(2)
    expect(value('process_event_loop_lag_seconds_count')).toBeGreaterThan(0)
  })
})

describe('embedded pipeline (npm start without Redis or ClickHouse)', () => {
  it('records usage in embedded ClickHouse inside the gateway process and answers cost queries', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'embedded-analytics-'))
    const emu = startEmulator({ recordLimit: 10 })
    // Rollups every 100 ms: the scheduled job, not a request, brings today's figures up to date.
    const gw = await startGateway({ config: config(emu), entry: 'start', env: { ANALYTICS_DATA_DIR: dir, ANALYTICS_PORT: '0', ANALYTICS_FLUSH_MS: '20', ANALYTICS_ROLLUP_MS: '100' } })
    try {
      const analytics = await gw.waitForLog((l) => l.msg === 'analytics listening')
      const url = `http://127.0.0.1:${analytics.port}`
      const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
      for (let i = 0; i < 5; i++) await c.chat.completions.create({ model: 'm-cheap', messages: [{ role: 'user', content: `hello ${i}` }] })
      const requestLines = () => gw.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request')
      while (requestLines().length < 5) await Bun.sleep(10)
      const logged = requestLines()
      const expected = logged.reduce((s, r) => s + BigInt(Number(r.cost_pico)), 0n)
      const { from, to } = daysOf(logged)
      const deadline = Date.now() + 10_000
      let cost = ''
      while (cost !== String(expected)) {
        if (Date.now() > deadline) throw new Error(`embedded rollup shows ${cost}, expected ${expected}`)
        const { rows } = (await (await fetch(`${url}/v1/costs?from=${from}&to=${to}`)).json()) as { rows: Array<{ cost_pico: string; requests: number }> }
        cost = rows[0]?.cost_pico ?? ''
        if (cost !== String(expected)) await Bun.sleep(50)
      }
      expect(cost).toBe(String(expected))
      // The worker shares the gateway's process: its process figures are on the gateway's /metrics only.
      expect(await (await fetch(`${url}/metrics`)).text()).not.toContain('process_resident_memory_bytes')
      expect(await (await fetch(`${gw.url}/metrics`)).text()).toContain('process_resident_memory_bytes')
    } finally {
      await gw.stop()
      await emu.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
