import { afterAll, beforeEach, describe, expect, it } from 'bun:test'
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace'
import { parseConfig } from '../shared/config/load.ts'
import { createLogger } from '../shared/log.ts'
import { startEmulator } from '../test/harness/emulator.ts'
import { TEST_KEYS, testConfig } from '../test/harness/gateway-process.ts'
import { createApp } from './app.ts'
import { buildSnapshot, ConfigStore } from './config-store.ts'
import { MemoryQuotaStore } from './quota/memory-store.ts'
import { QuotaService } from './quota/quota.ts'
import { createRoutingState } from './routing/state.ts'
import { samplerOf } from './tracing.ts'
import { MemoryUsageSink } from './usage.ts'

const emulator = startEmulator()
afterAll(() => emulator.stop())
beforeEach(() => emulator.reset())

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const CALLER_SPAN = '00f067aa0ba902b7'

function tracedApp() {
  const exporter = new InMemorySpanExporter()
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] })
  const config = parseConfig(
    JSON.stringify({
      ...testConfig({ upstreamBaseUrl: emulator.baseUrl, routing: { retries: 0 } }),
      providers: [
        ...(testConfig({ upstreamBaseUrl: emulator.baseUrl }).providers as unknown[]),
        { provider_id: 'backup', name: 'backup', kind: 'openai-compatible', base_url: emulator.baseUrl, models: [{ name: 'test-model', upstream_model: 'backup-upstream', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }] },
      ],
      quotas: [{ quota_id: 'day', entity_type: 'global', period: 'day', token_limit: 1_000_000 }],
    }),
    'trace.json',
  )
  const log = createLogger('silent')
  const quotaStore = new MemoryQuotaStore()
  const usage = new MemoryUsageSink()
  const app = createApp({
    store: new ConfigStore(buildSnapshot(config)),
    log,
    usage,
    quota: new QuotaService(quotaStore, config.file.quota, log),
    quotaStore,
    routing: createRoutingState(config.file.routing.breaker),
    tracer: provider.getTracer('test'),
  })
  return { app, exporter, usage }
}

const chat = (body: Record<string, unknown>) =>
  new Request('http://localhost/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_KEYS.full}`, traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` },
    body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'Say hello' }], ...body }),
  })

// The finished spans as a tree: each span's name under its parent's.
function tree(spans: ReadableSpan[]) {
  const root = spans.find((s) => s.name === 'POST /v1/chat/completions')
  const children = spans.filter((s) => s.parentSpanContext?.spanId === root?.spanContext().spanId).map((s) => s.name)
  return { root, children }
}

describe('request tracing', () => {
  it("continues the caller's trace with a span per step and carries it to the provider", async () => {
    const { app, exporter, usage } = tracedApp()
    const res = await app.handle(chat({}))
    expect(res.status).toBe(200)
    await usage.waitFor(1)
    const spans = exporter.getFinishedSpans()
    const { root, children } = tree(spans)
    expect(root?.spanContext().traceId).toBe(CALLER_TRACE)
    expect(root?.parentSpanContext?.spanId).toBe(CALLER_SPAN)
    expect(root?.kind).toBe(SpanKind.SERVER)
    expect(children.sort()).toEqual(['auth', 'provider.attempt', 'quota.reserve', 'quota.settle', 'response.forward', 'route'])
    expect(root?.attributes).toMatchObject({ 'gateway.status': 'success', 'gateway.client_id': 'full-client', 'gen_ai.request.model': 'test-model' })
    expect(spans.find((s) => s.name === 'route')?.attributes).toMatchObject({ 'gateway.policy': 'explicit', 'gateway.chain': 'emu/test-model,backup/test-model' })
    // The provider got a traceparent naming the attempt's span, in the caller's trace.
    const attemptSpan = spans.find((s) => s.name === 'provider.attempt')
    expect(attemptSpan?.kind).toBe(SpanKind.CLIENT)
    expect(emulator.requests[0]?.headers.traceparent).toBe(`00-${CALLER_TRACE}-${attemptSpan?.spanContext().spanId}-01`)
  })

  it('records each attempt of a fallback, the failed one as an error', async () => {
    const { app, exporter, usage } = tracedApp()
    emulator.setBehavior('emu-upstream', { status: 503 })
    expect((await app.handle(chat({}))).status).toBe(200)
    await usage.waitFor(1)
    const attempts = exporter.getFinishedSpans().filter((s) => s.name === 'provider.attempt')
    expect(attempts.map((s) => [s.attributes['gateway.target'], s.status.code])).toEqual([
      ['emu/test-model', SpanStatusCode.ERROR],
      ['backup/test-model', SpanStatusCode.UNSET],
    ])
    expect(tree(exporter.getFinishedSpans()).root?.attributes['gateway.status']).toBe('fallback')
  })

  it("keeps a stream's forwarding span and the request span open until the stream ends", async () => {
    const { app, exporter, usage } = tracedApp()
    const res = await app.handle(chat({ stream: true }))
    expect(exporter.getFinishedSpans().map((s) => s.name)).not.toContain('response.forward')
    await res.text()
    await usage.waitFor(1)
    const { root, children } = tree(exporter.getFinishedSpans())
    expect(children).toContain('response.forward')
    expect(root?.attributes['gateway.stream']).toBe(true)
  })

  it('ends the request span as an error when the caller is refused', async () => {
    const { app, exporter } = tracedApp()
    const res = await app.handle(new Request('http://localhost/v1/chat/completions', { method: 'POST', headers: { authorization: 'Bearer sk-wrong' }, body: '{}' }))
    expect(res.status).toBe(401)
    const { root, children } = tree(exporter.getFinishedSpans())
    expect(root?.status.code).toBe(SpanStatusCode.ERROR)
    expect(root?.attributes['error.type']).toBe('invalid_api_key')
    expect(children).toEqual(['auth'])
  })

  it('samples as OTEL_TRACES_SAMPLER says', async () => {
    const exporter = new InMemorySpanExporter()
    const provider = new TracerProvider({ sampler: samplerOf('traceidratio', 0), spanProcessors: [new SimpleSpanProcessor({ exporter })] })
    provider.getTracer('t').startSpan('x').end()
    expect(exporter.getFinishedSpans()).toEqual([])
    const all = new InMemorySpanExporter()
    const on = new TracerProvider({ sampler: samplerOf('parentbased_traceidratio', 1), spanProcessors: [new SimpleSpanProcessor({ exporter: all })] })
    on.getTracer('t').startSpan('y').end()
    expect(all.getFinishedSpans().map((s) => s.name)).toEqual(['y'])
  })
})
