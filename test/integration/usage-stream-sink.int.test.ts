// The gateway's side of the usage stream on a real redis-server: records survive a Redis outage in memory, and a full buffer drops visibly.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import Redis from 'ioredis'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { decodeUsage, USAGE_STREAM } from '../../shared/usage-stream.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

const KEY = 'sk-stream-sink'
let redisServer: RedisServer
let emulator: Emulator

const config = (emu: Emulator, maxBuffered: number) => ({
  providers: [{ provider_id: 'emu', name: 'emu', kind: 'openai-compatible', base_url: emu.baseUrl, health_check: false, models: [{ name: 'm', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }] }],
  usage: { max_buffered_records: maxBuffered },
  clients: [{ client_id: 'sink', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
})

async function streamIds(redis: Redis): Promise<string[]> {
  const entries = (await redis.xrange(USAGE_STREAM, '-', '+')) as Array<[string, string[]]>
  return entries.map(([, fields]) => {
    const r = decodeUsage(fields)
    if (r instanceof Error) throw r
    return r.request_id
  })
}

async function metric(gw: GatewayProcess, name: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return Number(line?.split(' ')[1] ?? Number.NaN)
}

beforeAll(async () => {
  redisServer = await startRedis()
  emulator = startEmulator({ recordLimit: 10 })
})

afterAll(async () => {
  await emulator?.stop()
  await redisServer?.stop()
})

describe('usage stream sink', () => {
  it('keeps records in memory while Redis is down and appends them all, in order, once it is back', async () => {
    const gw = await startGateway({ config: config(emulator, 1000), env: { REDIS_URL: redisServer.url } })
    const redis = new Redis(redisServer.url)
    // The outage below is on purpose: this client's reconnect errors are expected, not news.
    redis.on('error', () => undefined)
    try {
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
      const ids: string[] = []
      const ask = async () => {
        const { response } = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }).withResponse()
        ids.push(response.headers.get('x-request-id') ?? '')
      }
      await ask()
      const outage = await redisServer.stopTemporarily()
      // Requests need no Redis here (no budgets): they are served, their records wait.
      for (let i = 0; i < 5; i++) await ask()
      await gw.waitForLog((l) => l.msg === 'usage stream unavailable; records kept in memory')
      expect(await metric(gw, 'gateway_usage_records_buffered')).toBeGreaterThan(0)
      await outage.resume()
      const deadline = Date.now() + 15_000
      // The restarted Redis starts empty (the test server keeps no data): the five records of the
      // outage are what must arrive.
      while ((await streamIds(redis).catch(() => [])).length < 5) {
        if (Date.now() > deadline) throw new Error('records did not reach the stream after Redis came back')
        await Bun.sleep(50)
      }
      // The first record too when its XADD was cut by the kill and retried: at least once, in order
      // (ClickHouse keeps one copy per request_id).
      const arrived = await streamIds(redis)
      expect(arrived.slice(-5)).toEqual(ids.slice(1))
      expect(arrived.every((id) => ids.includes(id))).toBe(true)
      expect(await metric(gw, 'gateway_usage_records_dropped_total')).toBe(0)
    } finally {
      redis.disconnect()
      await gw.stop()
    }
  }, 40_000)

  it('drops past its bound with an error line and a counter, never silently', async () => {
    const gw = await startGateway({ config: config(emulator, 2), env: { REDIS_URL: redisServer.url } })
    try {
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
      const outage = await redisServer.stopTemporarily()
      for (let i = 0; i < 6; i++) await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })
      const dropped = await gw.waitForLog((l) => l.msg === 'usage record dropped: the stream buffer is full')
      expect(dropped.level).toBe('error')
      expect(await metric(gw, 'gateway_usage_records_dropped_total')).toBeGreaterThanOrEqual(1)
      expect(await metric(gw, 'gateway_usage_records_buffered')).toBeLessThanOrEqual(2)
      await outage.resume()
    } finally {
      await gw.stop()
    }
  }, 40_000)
})
