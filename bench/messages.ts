// POST /v1/messages, Anthropic's surface: what the gateway adds to an Anthropic call it passes through (body as it came, answer byte for byte), next to the same call direct, the same target through /v1/chat/completions (translated), and /v1/messages to an OpenAI-format target (translated both ways). Rotating slices of each, at c=1 and c=16; medians of rounds; gateway CPU per request read around each slice.
import { mkdirSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { TEST_KEYS } from '../test/harness/gateway-process.ts'
import { startGateway, type GatewayProcess } from '../test/harness/gateway-process.ts'
import { hashKey } from '../gateway/auth.ts'
import { computeMicrosPerRequest, createCpuMeter, readClockTicksPerSecond } from './cpu.ts'
import { createSendCompletion, runClosedLoop, type Target } from './load.ts'
import { startEmulatorProcess, type EmulatorProcess } from './processes.ts'
import { summarizeLatencies } from './stats.ts'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7)
const SLICE_SECONDS = Number(process.env.BENCH_SLICE_SECONDS ?? 1)
const CONCURRENCIES = [1, 16]
const RESULT_PATH = resolve(import.meta.dir, 'results/messages.json')
const PROMPT = [{ role: 'user', content: 'Say hello in one short sentence.' }]
const price = { cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }

interface Row {
  target: string
  concurrency: number
  requests: number
  errors: number
  p50_ms: number
  p99_ms: number
  added_p50_ms: number | null
  gateway_cpu_us_per_request: number | null
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? Number.NaN
}

async function main(): Promise<number> {
  const ticks = readClockTicksPerSecond()
  let emulator: EmulatorProcess | undefined
  let gateway: GatewayProcess | undefined
  try {
    emulator = await startEmulatorProcess()
    gateway = await startGateway({
      config: {
        server: { log_level: 'warn' },
        providers: [
          { provider_id: 'an', name: 'an', kind: 'anthropic', base_url: emulator.url, models: [{ name: 'claude', upstream_model: 'claude-up', ...price }] },
          { provider_id: 'oa', name: 'oa', kind: 'openai-compatible', base_url: emulator.baseUrl, models: [{ name: 'gpt', upstream_model: 'gpt-up', ...price }] },
        ],
        clients: [{ client_id: 'bench', team_id: 'bench', keys: [{ name: 'k', sha256: hashKey(TEST_KEYS.full) }] }],
      },
    })
    const anthropicBody = (model: string) => JSON.stringify({ model, max_tokens: 256, messages: PROMPT })
    const anthropicHeaders = { 'content-type': 'application/json', 'x-api-key': TEST_KEYS.full, 'anthropic-version': '2023-06-01' }
    const targets: Array<{ target: Target; gateway: boolean }> = [
      { target: { name: 'direct: Anthropic API (emulator)', url: `${emulator.url}/v1/messages`, model: 'claude-up', headers: anthropicHeaders, body: anthropicBody('claude-up') }, gateway: false },
      { target: { name: '/v1/messages → Anthropic (passthrough)', url: `${gateway.url}/v1/messages`, model: 'claude', headers: anthropicHeaders, body: anthropicBody('claude') }, gateway: true },
      { target: { name: '/v1/chat/completions → Anthropic (translated)', url: `${gateway.url}/v1/chat/completions`, model: 'claude', headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_KEYS.full}` } }, gateway: true },
      { target: { name: '/v1/messages → OpenAI-format (translated both ways)', url: `${gateway.url}/v1/messages`, model: 'gpt', headers: anthropicHeaders, body: anthropicBody('gpt') }, gateway: true },
    ]
    const send = createSendCompletion()
    for (const t of targets) await runClosedLoop(t.target, send, 4, { maxRequests: 500, maxSeconds: 3 })
    const rows: Row[] = []
    for (const c of CONCURRENCIES) {
      const samples = new Map<string, { latencies: number[]; cpu: number[]; requests: number; errors: number; firstError?: string }>()
      for (let round = 0; round < ROUNDS; round++) {
        for (let k = 0; k < targets.length; k++) {
          const t = targets[(round + k) % targets.length]!
          const meter = t.gateway ? createCpuMeter(gateway.pid) : undefined
          const r = await runClosedLoop(t.target, send, c, { maxRequests: 100_000, maxSeconds: SLICE_SECONDS })
          const n = r.samples.ok.length + r.samples.errors
          const into = samples.get(t.target.name) ?? { latencies: [], cpu: [], requests: 0, errors: 0 }
          into.latencies.push(...r.samples.ok.map((s) => s.totalMs))
          if (meter) into.cpu.push(computeMicrosPerRequest(meter.readTicks(), n, ticks))
          into.requests += n
          into.errors += r.samples.errors
          into.firstError ??= r.samples.firstError
          samples.set(t.target.name, into)
        }
      }
      const direct = summarizeLatencies(samples.get(targets[0]!.target.name)?.latencies ?? [])
      for (const t of targets) {
        const s = samples.get(t.target.name)!
        const lat = summarizeLatencies(s.latencies)
        rows.push({ target: t.target.name, concurrency: c, requests: s.requests, errors: s.errors, p50_ms: lat.p50, p99_ms: lat.p99, added_p50_ms: t.gateway ? lat.p50 - direct.p50 : null, gateway_cpu_us_per_request: t.gateway ? median(s.cpu) : null })
        if (s.errors > 0) process.stderr.write(`${t.target.name}: ${s.errors} errors, first: ${s.firstError}\n`)
      }
    }
    const pad = (x: string, n: number) => x.padEnd(n)
    console.log(`/v1/messages bench — ${new Date().toISOString()}, bun ${Bun.version}, ${ROUNDS} rounds of ${SLICE_SECONDS} s slices per target and concurrency`)
    console.log(`${pad('target', 56)}${pad('c', 4)}${pad('requests', 10)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('added p50', 11)}gateway CPU µs/req (median of rounds)`)
    for (const r of rows) {
      console.log(`${pad(r.target, 56)}${pad(String(r.concurrency), 4)}${pad(String(r.requests), 10)}${pad(r.p50_ms.toFixed(3), 9)}${pad(r.p99_ms.toFixed(3), 9)}${pad(r.added_p50_ms === null ? '-' : `+${r.added_p50_ms.toFixed(3)}`, 11)}${r.gateway_cpu_us_per_request === null ? '-' : r.gateway_cpu_us_per_request.toFixed(0)}`)
    }
    mkdirSync(resolve(RESULT_PATH, '..'), { recursive: true })
    writeFileSync(RESULT_PATH, `${JSON.stringify({ timestamp: new Date().toISOString(), rounds: ROUNDS, slice_seconds: SLICE_SECONDS, rows }, null, 2)}\n`)
    const errors = rows.reduce((n, r) => n + r.errors, 0)
    if (errors > 0) process.stderr.write(`bench FAILED: ${errors} requests failed\n`)
    return errors > 0 ? 1 : 0
  } finally {
    await gateway?.stop()
    await emulator?.stop()
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
