// Structured output on every provider kind, as the clients ask for it by default: the openai SDK's chat.completions.parse with a Zod schema, and LangChain's withStructuredOutput (json_schema). On Claude the gateway turns the schema into a forced tool call and answers its input as the content.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import OpenAI from 'openai'
import { zodResponseFormat } from 'openai/helpers/zod'
import { ChatOpenAI } from '@langchain/openai'
import { z } from 'zod'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-structured-client'
const price = { cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }
const TARGETS = [
  { kind: 'openai-compatible', model: 'oa-model', provider: 'oa' },
  { kind: 'anthropic', model: 'claude', provider: 'an' },
  { kind: 'gemini', model: 'gemini', provider: 'ge' },
] as const

const City = z.object({ name: z.string(), population: z.number() })
const ANSWER = { name: 'Oslo', population: 717710 }

let emulator: Emulator
let gateway: GatewayProcess
let client: OpenAI

beforeAll(async () => {
  emulator = startEmulator()
  gateway = await startGateway({
    config: {
      routing: { retries: 0, breaker: { enabled: false }, health_check: { enabled: false } },
      providers: TARGETS.map((t) => ({ provider_id: t.provider, name: t.provider, kind: t.kind, base_url: t.kind === 'openai-compatible' ? emulator.baseUrl : emulator.url, models: [{ name: t.model, upstream_model: `${t.model}-up`, ...price }] })),
      clients: [{ client_id: 'structured', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
    },
  })
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gateway?.stop()
  await emulator?.stop()
})

// Each provider answers the way it does structured output: OpenAI-format and Gemini with the JSON
// as text, Claude with a call of the tool it was forced to use.
beforeEach(() => {
  emulator.reset()
  emulator.setBehavior('oa-model-up', { reply: JSON.stringify(ANSWER) })
  emulator.setBehavior('gemini-up', { reply: JSON.stringify(ANSWER) })
  emulator.setBehavior('claude-up', { tool_calls: [{ name: 'gateway_json_response', arguments: ANSWER }] })
})

describe.each(TARGETS)('structured output to a $kind target', (t) => {
  it('chat.completions.parse with a Zod schema gives the parsed object', async () => {
    const completion = await client.chat.completions.parse({ model: t.model, messages: [{ role: 'user', content: 'The largest city of Norway?' }], response_format: zodResponseFormat(City, 'city') })
    const message = completion.choices[0]?.message
    expect(message?.parsed).toEqual(ANSWER)
    expect(message?.tool_calls ?? []).toEqual([])
    expect(completion.choices[0]?.finish_reason).toBe('stop')
    const sent = emulator.requests.at(-1)?.body as Record<string, unknown>
    if (t.kind === 'anthropic') expect(sent.tool_choice).toEqual({ type: 'tool', name: 'gateway_json_response' })
  })

  it('LangChain withStructuredOutput gives the parsed object', async () => {
    const chat = new ChatOpenAI({ model: t.model, apiKey: KEY, configuration: { baseURL: `${gateway.url}/v1` }, maxRetries: 0 })
    expect(await chat.withStructuredOutput(City, { method: 'jsonSchema' }).invoke('The largest city of Norway?')).toEqual(ANSWER)
    // Its default way, whichever it is for an unknown model name.
    expect(await chat.withStructuredOutput(City).invoke('The largest city of Norway?')).toEqual(ANSWER)
  })
})
