// OTLP export from the real gateway process: with OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach a collector (a local stand-in).
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, TEST_KEYS, testConfig } from '../harness/gateway-process.ts'

let emulator: Emulator
const received: Array<{ path: string; type: string | null; body: string }> = []
let collector: ReturnType<typeof Bun.serve>

beforeAll(() => {
  emulator = startEmulator({ recordLimit: 10 })
  collector = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      received.push({ path: new URL(req.url).pathname, type: req.headers.get('content-type'), body: await req.text() })
      return Response.json({})
    },
  })
})

afterAll(async () => {
  await emulator?.stop()
  collector?.stop(true)
})

describe('OTLP tracing', () => {
  it('exports the request span and its steps, flushed when the gateway stops', async () => {
    const gw = await startGateway({
      config: testConfig({ upstreamBaseUrl: emulator.baseUrl }),
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}`, OTEL_SERVICE_NAME: 'gateway-under-test' },
    })
    const listening = await gw.waitForLog((l) => l.msg === 'listening')
    expect(listening.tracing).toBe('otlp')
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEYS.full}`, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'The secret prompt text.' }] }),
    })
    expect(res.status).toBe(200)
    await gw.stop()
    const traces = received.filter((r) => r.path === '/v1/traces')
    expect(traces.length).toBeGreaterThan(0)
    const body = traces.map((t) => t.body).join('\n')
    for (const name of ['POST /v1/chat/completions', 'auth', 'route', 'provider.attempt', 'response.forward']) expect(body).toContain(name)
    expect(body).toContain('gateway-under-test')
    // Neither the prompt nor a key ever goes into a span.
    expect(body).not.toContain('secret prompt')
    expect(body).not.toContain(TEST_KEYS.full)
  })
})
