// The retry budget in the real gateway process: a burst during a brownout, with the budget and (after a hot reload) without it.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-retry-budget-test'
const ADMIN = 'admin-retry-budget'
const BURST = 40

describe('retry budget', () => {
  let emulator: Emulator
  let gw: GatewayProcess
  const config = (retryBudget: Record<string, unknown>) => ({
    providers: [
      {
        provider_id: 'p1',
        name: 'p1',
        kind: 'openai-compatible',
        base_url: emulator.baseUrl,
        health_check: false,
        models: [{ name: 'm', upstream_model: 'up-p1', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }],
      },
    ],
    routes: [{ name: 'browned', targets: [{ provider: 'p1', model: 'm' }] }],
    // Breakers off: the budget alone stands between the brownout and the retries.
    routing: { retries: 2, backoff_base_ms: 1, backoff_max_ms: 5, breaker: { enabled: false }, health_check: { enabled: false }, retry_budget: retryBudget },
    clients: [{ client_id: 'budgeted', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
  })

  // BURST requests at once while every call fails with 503; the upstream calls they made.
  async function burst(): Promise<number> {
    emulator.reset()
    emulator.setBehavior('*', { status: 503 })
    const statuses = await Promise.all(
      Array.from({ length: BURST }, async () => {
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'browned', messages: [{ role: 'user', content: 'Say hello.' }] }),
        })
        await res.arrayBuffer()
        return res.status
      }),
    )
    expect(statuses).toEqual(Array(BURST).fill(503))
    return emulator.byModel.get('up-p1') ?? 0
  }

  beforeAll(async () => {
    emulator = startEmulator({ recordLimit: 10 })
    // The defaults: 20 % of the window's requests, at least 3 retries per 10 s.
    gw = await startGateway({ config: config({}), env: { ADMIN_TOKEN: ADMIN } })
  })

  afterAll(async () => {
    await gw?.stop()
    await emulator?.stop()
  })

  it('makes a burst during a brownout cost far fewer upstream calls than retries without a budget', async () => {
    const budgeted = await burst()
    // 40 first calls, and at most 20 % of 40 = 8 retries, where two retries each would make 120.
    expect(budgeted).toBeGreaterThanOrEqual(BURST)
    expect(budgeted).toBeLessThanOrEqual(BURST + 8)

    const admin = (await (await fetch(`${gw.url}/admin/routing`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as {
      targets: Array<{ target: string; retry_budget: { requests: number; retries: number; allowed: number; refused: number } }>
    }
    const status = admin.targets.find((t) => t.target === 'p1/m')?.retry_budget
    expect(status).toMatchObject({ requests: BURST, retries: budgeted - BURST, allowed: 8 })
    expect(status?.refused).toBeGreaterThan(BURST / 2)
    const metrics = await (await fetch(`${gw.url}/metrics`)).text()
    expect(metrics).toContain(`gateway_retries_refused_total{target="p1/m",provider="p1"} ${status?.refused}`)
    expect(metrics).toContain('gateway_upstream_attempts_total{provider="p1",target="p1/m",outcome="skipped:retry_budget_exhausted"}')

    // The same burst with the budget switched off by a hot reload: every request makes its three calls.
    const text = JSON.stringify(config({ enabled: false }))
    writeFileSync(gw.configPath, text)
    await gw.waitForLog((l) => l.msg === 'config reloaded' && l.config_sha256 === createHash('sha256').update(text).digest('hex'))
    const unbudgeted = await burst()
    expect(unbudgeted).toBe(3 * BURST)
    expect(budgeted).toBeLessThan(unbudgeted / 2)
  })
})
