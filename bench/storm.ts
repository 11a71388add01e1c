// Failure storm: one upstream answers 503 to half its requests; what do success rate and latency look like direct, and through the gateway with each layer of resilience on?
import { mkdirSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { hashKey } from '../gateway/auth.ts'
import { startGateway, type GatewayProcess } from '../test/harness/gateway-process.ts'
import { setUpstreamBehavior, startEmulatorProcess, type EmulatorProcess } from './processes.ts'
import { summarizeLatencies, type LatencySummary } from './stats.ts'

const KEY = 'sk-storm-bench'
const REQUESTS = Number(process.env.STORM_REQUESTS ?? 2000)
const CONCURRENCY = 8
const MAX_SECONDS = 60
// Both upstreams take a few ms, as a very fast provider would; the flaky one fails half the time.
const UPSTREAM_MS = 5
const ERROR_RATE = 0.5

interface Scenario {
  name: string
  // What the gateway does; undefined means the client calls the flaky upstream directly.
  routing?: Record<string, unknown>
  targets?: string[]
}

const SCENARIOS: Scenario[] = [
  { name: 'direct to the flaky upstream' },
  { name: 'gateway, one target, no retries', targets: ['flaky'], routing: { retries: 0, breaker: { enabled: false } } },
  { name: 'gateway, one target, 2 retries, no retry budget', targets: ['flaky'], routing: { retries: 2, breaker: { enabled: false }, retry_budget: { enabled: false } } },
  { name: 'gateway, one target, 2 retries, retry budget', targets: ['flaky'], routing: { retries: 2, breaker: { enabled: false } } },
  { name: 'gateway, 2 retries + fallback, no retry budget', targets: ['flaky', 'steady'], routing: { retries: 2, breaker: { enabled: false }, retry_budget: { enabled: false } } },
  { name: 'gateway, 2 retries + fallback + breaker, no retry budget', targets: ['flaky', 'steady'], routing: { retries: 2, retry_budget: { enabled: false } } },
  { name: 'gateway, fallback + breaker, no retries', targets: ['flaky', 'steady'], routing: { retries: 0 } },
]

interface Result {
  scenario: string
  requests: number
  success_rate: number
  latency_ms: LatencySummary
  // Upstream calls per request (x-gateway-attempts), and the share the second target served.
  mean_attempts: number | null
  served_by_fallback: number | null
}

function gatewayConfig(emulator: EmulatorProcess, s: Scenario) {
  const provider = (id: string) => ({
    provider_id: id,
    name: id,
    kind: 'openai-compatible',
    base_url: emulator.baseUrl,
    health_check: false,
    models: [{ name: 'm', upstream_model: `up-${id}`, cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }],
  })
  return {
    server: { log_level: 'warn' },
    providers: [provider('flaky'), provider('steady')],
    routes: [{ name: 'storm', targets: (s.targets ?? []).map((p) => ({ provider: p, model: 'm' })) }],
    routing: s.routing,
    clients: [{ client_id: 'storm', team_id: 'bench', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
  }
}

async function runScenario(emulator: EmulatorProcess, s: Scenario): Promise<Result> {
  let gw: GatewayProcess | undefined
  if (s.routing) gw = await startGateway({ config: gatewayConfig(emulator, s) })
  const url = gw ? `${gw.url}/v1/chat/completions` : `${emulator.baseUrl}/chat/completions`
  const body = JSON.stringify({ model: gw ? 'storm' : 'up-flaky', messages: [{ role: 'user', content: 'Say hello.' }] })
  const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }
  const latencies: number[] = []
  let ok = 0
  let sent = 0
  let attempts = 0
  let fallback = 0
  const deadline = performance.now() + MAX_SECONDS * 1000
  const worker = async () => {
    while (sent < REQUESTS && performance.now() < deadline) {
      sent++
      const start = performance.now()
      const res = await fetch(url, { method: 'POST', headers, body })
      await res.arrayBuffer()
      latencies.push(performance.now() - start)
      if (res.status === 200) ok++
      attempts += Number(res.headers.get('x-gateway-attempts') ?? 1)
      if (res.headers.get('x-gateway-provider') === 'steady') fallback++
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  await gw?.stop()
  return {
    scenario: s.name,
    requests: latencies.length,
    success_rate: ok / latencies.length,
    latency_ms: summarizeLatencies(latencies),
    mean_attempts: gw ? attempts / latencies.length : null,
    served_by_fallback: gw ? fallback / latencies.length : null,
  }
}

const emulator = await startEmulatorProcess()
try {
  await setUpstreamBehavior(emulator, 'up-flaky', { status: 503, error_rate: ERROR_RATE, latency_ms: UPSTREAM_MS })
  await setUpstreamBehavior(emulator, 'up-steady', { latency_ms: UPSTREAM_MS })
  const results: Result[] = []
  for (const s of SCENARIOS) results.push(await runScenario(emulator, s))
  const f = (x: number) => x.toFixed(1)
  const lines = [
    `failure storm: ${ERROR_RATE * 100} % of the flaky upstream's answers are 503; ${UPSTREAM_MS} ms upstream latency; ${REQUESTS} requests per scenario at concurrency ${CONCURRENCY}`,
    '',
    '| scenario | success | p50 ms | p95 ms | p99 ms | upstream calls / request | served by fallback |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (r) =>
        `| ${r.scenario} | ${(r.success_rate * 100).toFixed(1)} % | ${f(r.latency_ms.p50)} | ${f(r.latency_ms.p95)} | ${f(r.latency_ms.p99)} | ${r.mean_attempts === null ? '–' : r.mean_attempts.toFixed(2)} | ${r.served_by_fallback === null ? '–' : `${(r.served_by_fallback * 100).toFixed(1)} %`} |`,
    ),
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
  const dir = resolve(import.meta.dir, 'results')
  mkdirSync(dir, { recursive: true })
  writeFileSync(resolve(dir, 'storm.json'), `${JSON.stringify({ ran_at: new Date().toISOString(), requests: REQUESTS, concurrency: CONCURRENCY, error_rate: ERROR_RATE, results }, null, 2)}\n`)
} finally {
  await emulator.stop()
}
