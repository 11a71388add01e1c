import { afterAll, describe, expect, it } from 'bun:test'
import { Secret } from '../../shared/secret.ts'
import { startEmulator } from '../../test/harness/emulator.ts'
import { openAiAdapter } from '../providers/openai/adapter.ts'
import { checkProviderHealth, failureDetail } from './health.ts'

const emulator = startEmulator({ apiKey: 'sk-health-key' })
afterAll(() => emulator.stop())

const provider = (base_url: string) => ({
  provider_id: 'emu',
  name: 'Emulator',
  kind: 'openai-compatible' as const,
  base_url,
  models: [{ name: 'm', cost_per_1k_input_tokens: 0, cost_per_1k_output_tokens: 0 }],
  enabled: true,
  timeout_ms: 1000,
  health_check: true,
})

describe('checkProviderHealth', () => {
  it('is healthy when the provider lists its models with our key', async () => {
    const r = await checkProviderHealth(openAiAdapter, provider(emulator.baseUrl), new Secret('sk-health-key'), 1000)
    expect(r).toMatchObject({ healthy: true, detail: undefined })
    expect(emulator.requests.length).toBe(0) // GET /models is not a chat request
  })

  it('is unhealthy, with the status only, when the provider refuses the key', async () => {
    const r = await checkProviderHealth(openAiAdapter, provider(emulator.baseUrl), new Secret('sk-wrong'), 1000)
    expect(r).toMatchObject({ healthy: false, detail: `status 401 from 127.0.0.1:${new URL(emulator.baseUrl).port}` })
  })

  it('is unhealthy when nothing listens', async () => {
    const closed = Bun.serve({ port: 0, fetch: () => new Response('') })
    const url = `http://127.0.0.1:${closed.port}/v1`
    await closed.stop(true)
    const r = await checkProviderHealth(openAiAdapter, provider(url), undefined, 1000)
    expect(r.healthy).toBe(false)
    // What happened and where, with the network error's code (not the name of its class, "TypeError"); the error itself for the log.
    expect(r.detail).toBe(`connection refused by ${new URL(url).host} (ECONNREFUSED): nothing listens there`)
    expect(r.error).toMatchObject({ code: 'ECONNREFUSED' })
  })
})

describe('failureDetail', () => {
  it('names the host and what failed for DNS, TLS, resets and timeouts', () => {
    const err = (code: string) => Object.assign(new Error('x'), { code })
    expect(failureDetail(err('ENOTFOUND'), 'https://api.example.invalid/v1', 1000)).toBe('DNS: cannot resolve api.example.invalid (ENOTFOUND)')
    expect(failureDetail(err('CERT_HAS_EXPIRED'), 'https://api.example.invalid/v1', 1000)).toBe('TLS with api.example.invalid:443 failed (CERT_HAS_EXPIRED)')
    expect(failureDetail(err('ECONNRESET'), 'http://10.0.0.1:8000', 1000)).toBe('connection to 10.0.0.1:8000 broken (ECONNRESET)')
    expect(failureDetail(Object.assign(new Error('t'), { name: 'TimeoutError' }), 'http://h:1', 250)).toBe('no answer from h:1 within 250 ms')
  })
})
