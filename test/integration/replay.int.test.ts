// Recorded Anthropic and Gemini payloads, replayed byte for byte by the emulator, through the real gateway to the openai SDK.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-replay-client'
const fixtures = new URL('../fixtures/', import.meta.url).pathname

interface Case {
  file: string
  // Start of the assembled text ('' when the turn is only tool calls).
  text: string
  tools: Array<[string, unknown]>
  finish: string
  prompt: number
  completion: number
}

// Expected values read off the recordings (their own text, tool calls, stop reasons and usage).
const CASES: Record<'anthropic' | 'gemini', Case[]> = {
  anthropic: [
    { file: 'message.text.json', text: "Hello! I'm doing well", tools: [], finish: 'stop', prompt: 12, completion: 29 },
    { file: 'message.text_and_parallel_tool_use.json', text: "I'll help you find out", tools: ['Alice', 'Bob', 'Charlie', 'Daisy'].map((name) => ['retrieve_entity_info', { name }]), finish: 'tool_calls', prompt: 423, completion: 202 },
    { file: 'message.tool_use.json', text: '', tools: [['json', expect.objectContaining({ elements: expect.any(Array) })]], finish: 'tool_calls', prompt: 1151, completion: 87 },
    { file: 'stream.text.ping.sse', text: "Hello! I'm doing well", tools: [], finish: 'stop', prompt: 12, completion: 30 },
    { file: 'stream.text.sdk-basic.sse', text: 'Hello there!', tools: [], finish: 'stop', prompt: 11, completion: 6 },
    { file: 'stream.text_then_tool_use.sse', text: "I'll check the current weather", tools: [['get_weather', { location: 'Paris' }]], finish: 'tool_calls', prompt: 377, completion: 65 },
    { file: 'stream.text_then_tool_no_args.sse', text: "I'll update the issue list", tools: [['updateIssueList', {}]], finish: 'tool_calls', prompt: 565, completion: 48 },
    { file: 'stream.tool_use.input_json_delta.sse', text: '', tools: [['json', { elements: [{ location: 'San Francisco', temperature: 58, condition: 'sunny' }] }]], finish: 'tool_calls', prompt: 849, completion: 47 },
    { file: 'stream.thinking_then_text.padded.sse', text: 'Here are the basic steps', tools: [], finish: 'stop', prompt: 43, completion: 282 },
  ],
  gemini: [
    { file: 'generateContent.function_call.json', text: '', tools: [['get_user_country', {}]], finish: 'tool_calls', prompt: 33, completion: 5 },
    { file: 'generateContent.function_call.gemini3.json', text: '', tools: [['weather', { location: 'San Francisco' }]], finish: 'tool_calls', prompt: 29, completion: 15 + 893 },
    { file: 'generateContent.max_tokens.json', text: 'The capital of France is', tools: [], finish: 'length', prompt: 15, completion: 5 },
    { file: 'generateContent.text.thinking.json', text: 'There are **3** r', tools: [], finish: 'stop', prompt: 9, completion: 272 },
    { file: 'stream.text.sse', text: 'The capital of France is Paris.', tools: [], finish: 'stop', prompt: 13, completion: 8 },
    { file: 'stream.function_call.sse', text: '', tools: [['get_capital', { country: 'France' }]], finish: 'tool_calls', prompt: 52, completion: 5 },
    { file: 'stream.function_call.gemini3.sse', text: '', tools: [['weather', { location: 'San Francisco' }]], finish: 'tool_calls', prompt: 29, completion: 60 },
    { file: 'stream.text_after_function_response.sse', text: 'The temperature in Paris is', tools: [], finish: 'stop', prompt: 79, completion: 12 },
    { file: 'stream.usage_with_thoughts.sse', text: '1\n2\n3\n', tools: [], finish: 'stop', prompt: 18, completion: 80 + 35 },
    { file: 'stream.text.thinking.sse', text: 'There are **3**', tools: [], finish: 'stop', prompt: 9, completion: 208 },
  ],
}

let emulator: Emulator
let gateway: GatewayProcess
let client: OpenAI

beforeAll(async () => {
  emulator = startEmulator()
  const models = (kind: string) => Object.values(CASES[kind as 'anthropic' | 'gemini']).map((c) => ({ name: `${kind}/${c.file}`, upstream_model: c.file.replace(/\W/g, '-'), cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }))
  gateway = await startGateway({
    config: {
      providers: ['anthropic', 'gemini'].map((kind) => ({ provider_id: kind, name: kind, kind, base_url: emulator.url, models: models(kind) })),
      clients: [{ client_id: 'replay', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
    },
  })
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gateway?.stop()
  await emulator?.stop()
})

for (const kind of ['anthropic', 'gemini'] as const) {
  describe(`${kind} recordings through the gateway`, () => {
    for (const c of CASES[kind]) {
      it(`${c.file}: content, tool calls, finish reason and usage reach the SDK`, async () => {
        emulator.setBehavior(c.file.replace(/\W/g, '-'), { replay: `${fixtures}${kind}/${c.file}` })
        // A prompt as long as the recorded request's (1,151 tokens at most): usage a request could
        // not have used is refused as an anomaly.
        const ask = { model: `${kind}/${c.file}`, messages: [{ role: 'user' as const, content: `replay ${'lorem ipsum '.repeat(200)}` }] }
        let text = ''
        let finish: string | null = null
        let usage: OpenAI.CompletionUsage | undefined
        const tools: Array<{ name: string; args: string }> = []
        let requestId: string | null
        if (c.file.endsWith('.sse')) {
          const { data: stream, response } = await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } }).withResponse()
          requestId = response.headers.get('x-request-id')
          for await (const chunk of stream) {
            if (chunk.usage) usage = chunk.usage
            for (const ch of chunk.choices) {
              text += ch.delta.content ?? ''
              for (const t of ch.delta.tool_calls ?? []) {
                const slot = (tools[t.index] ??= { name: '', args: '' })
                slot.name += t.function?.name ?? ''
                slot.args += t.function?.arguments ?? ''
              }
              finish = ch.finish_reason ?? finish
            }
          }
        } else {
          const { data, response } = await client.chat.completions.create(ask).withResponse()
          requestId = response.headers.get('x-request-id')
          const choice = data.choices[0]
          text = choice?.message.content ?? ''
          for (const t of choice?.message.tool_calls ?? []) if (t.type === 'function') tools.push({ name: t.function.name, args: t.function.arguments })
          finish = choice?.finish_reason ?? null
          usage = data.usage
        }
        expect(text.startsWith(c.text)).toBe(true)
        expect(tools.map((t) => [t.name, JSON.parse(t.args)])).toEqual(c.tools)
        expect(finish).toBe(c.finish)
        expect({ prompt: usage?.prompt_tokens, completion: usage?.completion_tokens }).toEqual({ prompt: c.prompt, completion: c.completion })
        const line = await gateway.waitForLog((l) => l.msg === 'request' && l.request_id === requestId)
        expect(line).toMatchObject({ status: 'success', input_tokens: c.prompt, output_tokens: c.completion, cost_pico: c.prompt * 1_000_000 + c.completion * 2_000_000 })
      })
    }
  })
}
