// unsupported_params: reject (default) or drop, per route, per client and per request (the request's setting wins over the client's, the client's over the route's); what is dropped is said in x-gateway-dropped-params and in the usage record.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import OpenAI, { APIError } from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const STRICT_KEY = 'sk-params-strict'
const LENIENT_KEY = 'sk-params-lenient'
const price = { cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }

let emulator: Emulator
let gateway: GatewayProcess
let strict: OpenAI
let lenient: OpenAI

beforeAll(async () => {
  emulator = startEmulator()
  gateway = await startGateway({
    config: {
      routing: { retries: 0, breaker: { enabled: false }, health_check: { enabled: false } },
      providers: [
        { provider_id: 'ge', name: 'ge', kind: 'gemini', base_url: emulator.url, models: [{ name: 'gemini', upstream_model: 'gemini-up', ...price }] },
        { provider_id: 'an', name: 'an', kind: 'anthropic', base_url: emulator.url, models: [{ name: 'claude', upstream_model: 'claude-up', ...price }] },
      ],
      routes: [{ name: 'lenient-route', unsupported_params: 'drop', targets: [{ provider: 'ge', model: 'gemini' }] }],
      clients: [
        { client_id: 'strict', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(STRICT_KEY) }] },
        { client_id: 'lenient', team_id: 'qa', unsupported_params: 'drop', keys: [{ name: 'k', sha256: hashKey(LENIENT_KEY) }] },
      ],
    },
  })
  strict = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: STRICT_KEY, maxRetries: 0 })
  lenient = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: LENIENT_KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gateway?.stop()
  await emulator?.stop()
})

beforeEach(() => emulator.reset())

const ask = { messages: [{ role: 'user' as const, content: 'hi' }], user: 'end-user-7', logprobs: true }
const drop = { headers: { 'x-gateway-options': JSON.stringify({ unsupported_params: 'drop' }) } }
const reject = { headers: { 'x-gateway-options': JSON.stringify({ unsupported_params: 'reject' }) } }

describe('unsupported_params', () => {
  it('rejects by default, naming the parameter, and sends nothing', async () => {
    const err = await strict.chat.completions.create({ model: 'gemini', ...ask }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).param).toBe('user')
    expect(emulator.requests).toHaveLength(0)
  })

  it('drops what the target refuses when the request asks, says so in a header and the record', async () => {
    const { data, response } = await strict.chat.completions.create({ model: 'gemini', ...ask }, drop).withResponse()
    expect(data.choices[0]?.message.content).toBeTruthy()
    expect(response.headers.get('x-gateway-dropped-params')).toBe('user,logprobs')
    const sent = JSON.stringify(emulator.requests.at(-1)?.body)
    expect(sent).not.toContain('end-user-7')
    const record = await gateway.waitForLog((l) => l.msg === 'request' && l.request_id === response.headers.get('x-request-id'))
    expect(record.dropped_params).toEqual(['user', 'logprobs'])
  })

  it('takes the client\'s setting, and the route\'s, with the request\'s winning over both', async () => {
    const viaClient = await lenient.chat.completions.create({ model: 'gemini', ...ask }).withResponse()
    expect(viaClient.response.headers.get('x-gateway-dropped-params')).toBe('user,logprobs')
    const viaRoute = await strict.chat.completions.create({ model: 'lenient-route', ...ask }).withResponse()
    expect(viaRoute.response.headers.get('x-gateway-dropped-params')).toBe('user,logprobs')
    const err = await lenient.chat.completions.create({ model: 'gemini', ...ask }, reject).catch((e: unknown) => e)
    expect((err as APIError).param).toBe('user')
  })

  it('never drops what the request cannot do without, nor a part of a message', async () => {
    const err = await lenient.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).param).toBe('messages[0].content[0].type')
    expect(emulator.requests).toHaveLength(0)
  })

  it('refuses an unknown setting in x-gateway-options', async () => {
    const err = await strict.chat.completions.create({ model: 'gemini', messages: ask.messages }, { headers: { 'x-gateway-options': JSON.stringify({ unsupported_params: 'ignore' }) } }).catch((e: unknown) => e)
    expect((err as APIError).param).toBe('x-gateway-options')
  })
})
