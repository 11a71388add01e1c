// Circuit breakers, background health checks and config hot reload in the real gateway process.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-resilience-test'
const ADMIN = 'admin-resilience'
const price = { cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }
const clients = [{ client_id: 'resilience', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }]
const ask = (model: string) => ({ model, messages: [{ role: 'user' as const, content: 'Say hello.' }] })
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

interface TargetStatus {
  target: string
  breaker: { state: string; window: { total: number; failures: number } }
}

async function targetStatus(gw: GatewayProcess, target: string): Promise<TargetStatus | undefined> {
  const res = await fetch(`${gw.url}/admin/routing`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const body = (await res.json()) as { targets: TargetStatus[] }
  return body.targets.find((t) => t.target === target)
}

describe('circuit breaker and health checks', () => {
  let emulator: Emulator
  let failing: Emulator
  let gw: GatewayProcess
  let client: OpenAI

  beforeAll(async () => {
    emulator = startEmulator({ recordLimit: 10 })
    // A provider of its own, so its health checks can fail while the others pass.
    failing = startEmulator({ recordLimit: 10 })
    const openaiLike = (id: string, emu: Emulator, healthCheck: boolean) => ({
      provider_id: id,
      name: id,
      kind: 'openai-compatible',
      base_url: emu.baseUrl,
      health_check: healthCheck,
      models: [{ name: 'm', upstream_model: `up-${id}`, ...price }],
    })
    gw = await startGateway({
      config: {
        providers: [openaiLike('p1', emulator, false), openaiLike('p2', emulator, false), openaiLike('ph', failing, true)],
        routes: [
          { name: 'guarded', targets: [{ provider: 'p1', model: 'm' }, { provider: 'p2', model: 'm' }] },
          { name: 'watched', targets: [{ provider: 'ph', model: 'm' }, { provider: 'p2', model: 'm' }] },
        ],
        routing: {
          retries: 0,
          breaker: { failure_rate: 0.5, min_requests: 4, window_ms: 10_000, cooldown_ms: 400, half_open_probes: 1 },
          health_check: { interval_ms: 100, timeout_ms: 1000 },
        },
        clients,
      },
      env: { ADMIN_TOKEN: ADMIN },
    })
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
  })

  afterAll(async () => {
    await gw?.stop()
    await Promise.all([emulator?.stop(), failing?.stop()])
  })

  it('opens on failures, skips the target while open, probes after the cooldown and closes on success', async () => {
    emulator.setBehavior('up-p1', { status: 503 })
    for (let i = 0; i < 4; i++) {
      const { response } = await client.chat.completions.create(ask('guarded')).withResponse()
      expect(response.headers.get('x-gateway-provider')).toBe('p2')
    }
    await gw.waitForLog((l) => l.msg === 'circuit breaker' && l.target === 'p1/m' && l.to === 'open')
    expect((await targetStatus(gw, 'p1/m'))?.breaker.state).toBe('open')
    const metrics = await (await fetch(`${gw.url}/metrics`)).text()
    expect(metrics).toContain('gateway_breaker_state{target="p1/m",provider="p1"} 2')

    // Open: p1 is not even tried.
    for (let i = 0; i < 5; i++) {
      const { response } = await client.chat.completions.create(ask('guarded')).withResponse()
      expect(response.headers.get('x-gateway-provider')).toBe('p2')
      expect(response.headers.get('x-gateway-attempts')).toBe('1')
    }
    expect(emulator.byModel.get('up-p1')).toBe(4)

    // The provider recovers; after the cooldown the breaker is half-open (read lazily, so poll the
    // admin endpoint until it says so), and the next request is the probe that closes it.
    emulator.setBehavior('up-p1', {})
    const deadline = Date.now() + 5000
    while ((await targetStatus(gw, 'p1/m'))?.breaker.state !== 'half-open') {
      if (Date.now() > deadline) throw new Error('breaker did not half-open')
      await Bun.sleep(50)
    }
    const { response } = await client.chat.completions.create(ask('guarded')).withResponse()
    expect(response.headers.get('x-gateway-provider')).toBe('p1')
    await gw.waitForLog((l) => l.msg === 'circuit breaker' && l.target === 'p1/m' && l.to === 'closed')
    const after = await (await fetch(`${gw.url}/metrics`)).text()
    expect(after).toContain('gateway_breaker_state{target="p1/m",provider="p1"} 0')
    for (const to of ['open', 'half-open', 'closed']) expect(after).toContain(`gateway_breaker_transitions_total{target="p1/m",to="${to}"} 1`)
  })

  it('opens the breaker of a provider whose health checks fail, and routes around it', async () => {
    failing.setBehavior('*', { health_status: 503 })
    await gw.waitForLog((l) => l.msg === 'provider health' && l.provider === 'ph' && l.healthy === false)
    await gw.waitForLog((l) => l.msg === 'circuit breaker' && l.target === 'ph/m' && l.to === 'open')
    const { response } = await client.chat.completions.create(ask('watched')).withResponse()
    expect(response.headers.get('x-gateway-provider')).toBe('p2')
    expect(failing.byModel.size).toBe(0)
    expect(failing.stats.health_checks).toBeGreaterThanOrEqual(4)
    // Providers with health_check: false are never called for it.
    expect(emulator.stats.health_checks).toBe(0)
  })
})

describe('config hot reload', () => {
  let emulator: Emulator
  let gw: GatewayProcess
  let client: OpenAI
  const provider = (emu: Emulator) => ({ provider_id: 'p', name: 'p', kind: 'openai-compatible', base_url: emu.baseUrl, models: [{ name: 'm', ...price }] })
  const config = (emu: Emulator, routes: Array<{ name: string }>) =>
    JSON.stringify({
      providers: [provider(emu)],
      routes: routes.map((r) => ({ ...r, targets: [{ provider: 'p', model: 'm' }] })),
      routing: { health_check: { enabled: false } },
      clients,
    })
  // Writes a config and waits for the gateway to say what it made of exactly that text.
  const write = async (text: string, msg: string) => {
    writeFileSync(gw.configPath, text)
    return gw.waitForLog((l) => l.msg === msg && l.config_sha256 === sha256(text))
  }

  beforeAll(async () => {
    emulator = startEmulator({ recordLimit: 10 })
    gw = await startGateway({ config: JSON.parse(config(emulator, [])) as Record<string, unknown> })
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
  })

  afterAll(async () => {
    await gw?.stop()
    await emulator?.stop()
  })

  it('rejects an invalid config with a log line and keeps serving the old one', async () => {
    const rejected = await write(JSON.stringify({ providers: 'none' }), 'config rejected; the previous config keeps serving')
    expect(JSON.stringify(rejected.problems)).toContain('/providers')
    await write('{ "not": json', 'config rejected; the previous config keeps serving')
    expect((await client.chat.completions.create(ask('m'))).choices.length).toBe(1)
  })

  it('serves a new route once a valid config is written', async () => {
    const err = await client.chat.completions.create(ask('added')).catch((e: unknown) => e)
    expect((err as { status?: number }).status).toBe(404)
    await write(config(emulator, [{ name: 'added' }]), 'config reloaded')
    expect((await client.chat.completions.create(ask('added'))).choices.length).toBe(1)
  })

  it('drops no request while the config is swapped under load', async () => {
    emulator.setBehavior('*', { latency_ms: 5 })
    let stop = false
    const statuses: number[] = []
    // Resolves once `n` more requests have completed: each swap lands among requests in flight.
    let waiter: { n: number; resolve: () => void } | undefined
    const completed = (more: number) => new Promise<void>((resolve) => (waiter = { n: statuses.length + more, resolve }))
    const worker = async () => {
      // Bounded: at most 150 requests per worker.
      for (let i = 0; i < 150 && !stop; i++) {
        const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body: JSON.stringify(ask('m')) })
        await res.arrayBuffer()
        statuses.push(res.status)
        if (waiter && statuses.length >= waiter.n) waiter.resolve()
      }
    }
    const load = Promise.all(Array.from({ length: 8 }, worker))
    for (let i = 0; i < 10; i++) {
      await completed(8)
      await write(config(emulator, [{ name: `v${i}` }]), 'config reloaded')
    }
    stop = true
    await load
    emulator.reset()
    expect(statuses.length).toBeGreaterThanOrEqual(80)
    expect(statuses.filter((s) => s !== 200)).toEqual([])
    expect((await client.chat.completions.create(ask('v9'))).choices.length).toBe(1)
  })
})
