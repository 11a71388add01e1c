import { describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { Secret } from '../../../shared/secret.ts'
import { Redactor } from '../../../shared/redact.ts'
import { SseParser } from '../../upstream/sse.ts'
import type { Target } from '../types.ts'
import { generatedBytes, openAiAdapter } from './adapter.ts'
import { catchGatewayError } from '../../../test/harness/catch-error.ts'

const fixture = (name: string) => readFileSync(new URL(`../../../test/fixtures/openai/${name}`, import.meta.url), 'utf8')
const dec = new TextDecoder()

const target: Target = {
  provider: {
    provider_id: 'openai',
    name: 'OpenAI',
    kind: 'openai',
    base_url: 'https://api.openai.com/v1/',
    models: [],
    enabled: true,
    timeout_ms: 1000,
    health_check: true,
  },
  model: { name: 'gpt-4o', cost_per_1k_input_tokens: 0.0025, cost_per_1k_output_tokens: 0.01 },
  upstreamModel: 'gpt-4o-2024-08-06',
  apiKey: new Secret('sk-proj-supersecretvalue'),
  redactor: new Redactor(['sk-proj-supersecretvalue']),
  price: { input_pico_per_token: 2_500_000, output_pico_per_token: 10_000_000 },
}

function relay(sse: string, callerWantsUsage: boolean) {
  const t = openAiAdapter.openStream(target, { callerWantsUsage })
  const parser = new SseParser()
  const out: string[] = []
  for (const e of parser.push(new TextEncoder().encode(sse))) {
    const o = t.onEvent(e)
    if (o !== undefined) out.push(typeof o === 'string' ? o : dec.decode(o))
  }
  return { text: out.join(''), t }
}

describe('openAiAdapter.buildRequest', () => {
  const req = { model: 'gpt-4o', messages: [{ role: 'user' as const, content: 'hi' }], temperature: 0.2, seed: 1 }

  it('sends the upstream model id, the caller parameters and the key', () => {
    const r = openAiAdapter.buildRequest(req, target, false, {})
    expect(r.url).toBe('https://api.openai.com/v1/chat/completions')
    expect(r.headers.authorization).toBe('Bearer sk-proj-supersecretvalue')
    expect(JSON.parse(r.body ?? '')).toEqual({ ...req, model: 'gpt-4o-2024-08-06' })
  })

  it('always asks a stream for its usage chunk, keeping other stream options', () => {
    const r = openAiAdapter.buildRequest({ ...req, stream: true, stream_options: { include_usage: false, extra: 1 } as never }, target, true, {})
    expect(JSON.parse(r.body ?? '').stream_options).toEqual({ include_usage: true, extra: 1 })
  })

  it('sends no authorization header to a keyless server', () => {
    expect(openAiAdapter.buildRequest(req, { ...target, apiKey: undefined }, false, {}).headers.authorization).toBeUndefined()
  })
})

describe('openAiAdapter.readCompletion', () => {
  it('passes the body through untouched and reads usage, cached and reasoning tokens', () => {
    const text = fixture('chat-completion.text.json')
    const c = openAiAdapter.readCompletion(text, target)
    expect(c.body).toBe(text)
    expect(c.usage).toEqual({ input_tokens: 16, output_tokens: 363, cached_input_tokens: 0, cache_write_input_tokens: 0, reasoning_tokens: 0, estimated: false })
  })

  it('reads usage from every recorded completion', () => {
    for (const f of ['chat-completion.n3.json', 'chat-completion.refusal.json', 'chat-completion.tool_calls.parallel.json', 'chat-completion.finish_length.json']) {
      expect(openAiAdapter.readCompletion(fixture(f), target).usage?.estimated).toBe(false)
    }
  })

  it('rejects a body that is not a completion', () => {
    expect(() => openAiAdapter.readCompletion('<html>', target)).toThrow(/not JSON/)
    expect(() => openAiAdapter.readCompletion('{"ok":true}', target)).toThrow(/without choices/)
  })

  it('keeps the parser error as the cause of a body that is not JSON (for the log, not the caller)', () => {
    expect(catchGatewayError(() => openAiAdapter.readCompletion('<html>', target)).cause).toBeInstanceOf(SyntaxError)
  })
})

describe('openAiAdapter.readError', () => {
  const h = (init: Record<string, string> = {}) => new Headers(init)

  it('maps recorded provider errors onto the taxonomy', () => {
    const cases: Array<[number, string, string, number, string]> = [
      [400, 'errors/400-context_length_exceeded.json', 'context_length_exceeded', 400, 'context_length'],
      [400, 'errors/400-unsupported_parameter.json', 'unsupported_parameter', 400, 'invalid_request'],
      [401, 'errors/401-invalid_api_key.json', 'upstream_auth_error', 502, 'server_error'],
      [429, 'errors/429-rate_limit_exceeded.tokens.json', 'rate_limit_exceeded', 429, 'rate_limit'],
      [429, 'errors/429-insufficient_quota.json', 'rate_limit_exceeded', 429, 'rate_limit'],
      [500, 'errors/500-server_error.json', 'upstream_error', 502, 'server_error'],
    ]
    for (const [status, file, code, outStatus, type] of cases) {
      const e = openAiAdapter.readError(status, fixture(file), h(), target)
      expect({ file, code: e.code as string, status: e.status, type: e.type as string }).toEqual({ file, code, status: outStatus, type })
      expect(e.message.startsWith('openai: ')).toBe(true)
    }
  })

  it('keeps the provider message and param but not key material', () => {
    const e = openAiAdapter.readError(401, fixture('errors/401-invalid_api_key.json'), h(), target)
    expect(e.message).toContain('Incorrect API key provided')
    expect(e.message).not.toContain('sk-VKMIs')
    const ctx = openAiAdapter.readError(400, fixture('errors/400-context_length_exceeded.json'), h(), target)
    expect(ctx.param).toBe('messages')
  })

  it('carries retry-after from a 429', () => {
    expect(openAiAdapter.readError(429, '{}', h({ 'retry-after': '12' }), target).retryAfterSeconds).toBe(12)
    expect(openAiAdapter.readError(429, '{}', h({ 'retry-after-ms': '1500' }), target).retryAfterSeconds).toBe(2)
    // A figure of centuries (or a date in 9999) is passed on as an hour at most.
    expect(openAiAdapter.readError(429, '{}', h({ 'retry-after': '100000000000000000000' }), target).retryAfterSeconds).toBe(3600)
    expect(openAiAdapter.readError(429, '{}', h({ 'retry-after': 'Fri, 31 Dec 9999 23:59:59 GMT' }), target).retryAfterSeconds).toBe(3600)
  })

  it("withholds a provider message or param that holds part of the gateway's key", () => {
    const e = openAiAdapter.readError(400, JSON.stringify({ error: { message: 'bad key sk-proj-supersecretvalu', param: 'supersecretval', code: null } }), h(), target)
    expect(e.message).not.toContain('supersecretval')
    expect(e.param ?? '').not.toContain('supersecretval')
  })

  it('survives a body that is not JSON', () => {
    const e = openAiAdapter.readError(502, '<html>bad gateway</html>', h(), target)
    expect(e.code).toBe('upstream_error')
    expect(e.message).not.toContain('<html>')
  })
})

describe('OpenAI stream passthrough', () => {
  it('forwards every byte unchanged when the caller asked for usage', () => {
    for (const f of ['stream.text.include_usage.sse', 'stream.tool_calls.single.include_usage.sse', 'stream.n3.include_usage.sse', 'stream.text.include_usage.obfuscation.sse']) {
      const sse = fixture(f)
      const { text, t } = relay(sse, true)
      expect(text).toBe(sse)
      expect(t.finished).toBe(true)
      expect(t.usage?.estimated).toBe(false)
    }
  })

  it('drops only the usage chunk when the caller did not ask for it, and still reads it', () => {
    const sse = fixture('stream.text.include_usage.sse')
    const { text, t } = relay(sse, false)
    const usageEvent = sse.split('\n\n').find((e) => e.includes('"choices":[]'))
    expect(usageEvent).toBeDefined()
    expect(text).toBe(sse.replace(`${usageEvent}\n\n`, ''))
    expect(t.usage).toEqual({ input_tokens: 14, output_tokens: 30, cached_input_tokens: 0, cache_write_input_tokens: 0, reasoning_tokens: 0, estimated: false })
  })

  it('is not finished without [DONE] and counts content chunks for an estimate', () => {
    const sse = fixture('stream.text.include_usage.sse')
    const cut = sse.slice(0, sse.indexOf('data: {', 2000))
    const { t } = relay(cut, true)
    expect(t.finished).toBe(false)
    expect(t.usage).toBeUndefined()
    expect(t.contentChunks).toBeGreaterThan(3)
  })
})

describe('OpenAI in-stream errors', () => {
  it('forwards the error event untouched and keeps it as the stream error', () => {
    const sse = `${fixture('stream.text.include_usage.sse').split('\n\n').slice(0, 3).join('\n\n')}\n\ndata: {"error": {"message": "Rate limit reached", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}\n\n`
    const { text, t } = relay(sse, true)
    expect(text).toBe(sse)
    expect(t.error).toMatchObject({ code: 'rate_limit_exceeded', status: 429 })
    expect(t.finished).toBe(false)
  })

  it('takes an event with choices and an error for an error, and cleans a key in any letter case out of it', () => {
    const sse = `data: {"choices":[],"error":{"message":"bad key SK-PROJ-SUPERSECRETVALUE","type":"server_error"}}\n\n`
    const { text, t } = relay(sse, true)
    expect(t.error).toBeDefined()
    expect(text.toLowerCase()).not.toContain('supersecretval')
    expect(text).toContain('"error"')
    // A chunk whose error is null is an ordinary chunk.
    const ok = `data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"error":null}\n\n`
    const plain = relay(ok, true)
    expect(plain.t.error).toBeUndefined()
    expect(plain.text).toBe(ok)
  })
})

describe('OpenAI stream passthrough, read by a suspicious gateway', () => {
  const frames = (...data: string[]) => data.map((d) => `data: ${d}\n\n`).join('')

  it('finds usage however the JSON is spaced or escaped, and hides it from a caller who did not ask', () => {
    for (const usage of ['"usage": {"prompt_tokens": 3, "completion_tokens": 4}', '"us\\u0061ge":{"prompt_tokens":3,"completion_tokens":4}']) {
      const { text, t } = relay(frames('{"choices":[{"index":0,"delta":{"content":"hi"}}]}', `{"choices": [], ${usage}}`, '[DONE]'), false)
      expect(t.usage).toMatchObject({ input_tokens: 3, output_tokens: 4 })
      expect(text).not.toContain('prompt_tokens')
    }
  })

  it('counts generated text however it is spaced, reasoning included, in UTF-8 bytes', () => {
    const { t } = relay(frames('{"choices": [{"delta": {"content": "héllo"}}]}', '{"choices":[{"delta":{"reasoning_content":"abc \\" def"}}]}', '{"choices":[{"delta":{"role":"assistant","content":""}}]}'), true)
    expect(t.contentChunks).toBe(2)
    expect(t.outputBytes).toBe(6 + 10)
  })

  it('drops a usage report that text followed, and everything after [DONE]', () => {
    const early = relay(frames('{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":0}}', '{"choices":[{"delta":{"content":"more"}}]}'), true)
    expect(early.t.usage).toBeUndefined()
    const late = relay(frames('{"choices":[{"delta":{"content":"hi"}}]}', '[DONE]', '{"choices":[{"delta":{"content":"extra"}}]}', '{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":9000}}'), true)
    expect(late.text).not.toContain('extra')
    expect(late.t.usage).toBeUndefined()
  })

  it('shows a checked replacement, or normalized counts, instead of what the provider sent', () => {
    const replaced = openAiAdapter.openStream(target, { callerWantsUsage: true, checkUsage: (u) => ({ ...u, input_tokens: 7, output_tokens: 8, anomaly: 'invalid' }) })
    const [e] = new SseParser().push(new TextEncoder().encode(frames('{"choices":[],"usage":{"prompt_tokens":-1,"completion_tokens":2}}')))
    const out = dec.decode(replaced.onEvent(e as never) as Uint8Array)
    expect(JSON.parse(out.slice(6)).usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 8, total_tokens: 15 })
    const odd = relay(frames('{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":-1e308}}'), true)
    expect(JSON.parse(odd.text.slice(6)).usage.total_tokens).toBe(3)
  })
})

describe('generatedBytes', () => {
  it('counts the UTF-8 bytes of every generated string as the JSON carries it, however spaced or escaped', () => {
    const pieces = ['plain', 'é世🙂', 'quote " inside', 'slash \\ and \\"', '"content": "not a key"', '', '\n\t']
    let seed = 7
    const pick = () => pieces[(seed = (seed * 1103515245 + 12345) % 2147483648) % pieces.length]!
    for (let round = 0; round < 200; round++) {
      const delta: Record<string, unknown> = { role: 'assistant', content: pick() + pick() }
      if (round % 3 === 0) delta.tool_calls = [{ index: 0, function: { name: 'f', arguments: pick() } }]
      if (round % 4 === 0) delta.reasoning_content = pick()
      const value = { choices: [{ index: 0, delta }] }
      const text = round % 2 ? JSON.stringify(value) : JSON.stringify(value, null, 2)
      const strings = [delta.content, (delta.tool_calls as Array<{ function: { arguments: string } }> | undefined)?.[0]?.function.arguments, delta.reasoning_content]
      const expected = strings.reduce<number>((n, v) => n + (typeof v === 'string' ? Buffer.byteLength(JSON.stringify(v).slice(1, -1)) : 0), 0)
      expect(generatedBytes(text)).toBe(expected)
    }
    // A string that never ends counts nothing rather than running past the event.
    expect(generatedBytes('{"content":"abc')).toBe(0)
  })
})
