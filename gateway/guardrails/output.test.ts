import { describe, expect, it } from 'bun:test'
import type { GuardrailConfig } from '../../shared/config/schema.ts'
import { GatewayError } from '../errors.ts'
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import type { SseEvent } from '../upstream/sse.ts'
import type { Fired } from './apply.ts'
import { answerRules, guardedAdapter, MAX_HOLD, PII_HOLD, SCAN_STEP, rewriteBody, type OutputGuardrail } from './output.ts'

const enc = new TextEncoder()
const ev = (data: string, event?: string): SseEvent => ({ raw: enc.encode(`${event ? `event: ${event}\n` : ''}data: ${data}\n\n`), data, event, id: undefined })
const chunk = (content: string | undefined, finish: string | null = null) => ev(JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish }] }))

function passthrough(): StreamTranslator {
  return { usage: undefined, finished: false, contentChunks: 0, outputBytes: 0, error: undefined, onEvent: (e: SseEvent) => e.raw, end: () => undefined }
}

const pii = (over: Partial<Extract<GuardrailConfig, { kind: 'pii' }>> = {}): OutputGuardrail => ({ id: 'pii-out', kind: 'pii', action: 'redact', restore: false, types: ['email', 'phone', 'card', 'iban', 'secret'], applies_to: 'output', ...over })

function stream(restore: Map<string, string> | undefined, guards: OutputGuardrail[] = [], fired: Fired[] = []) {
  const adapter = guardedAdapter({ openStream: () => passthrough() } as unknown as ProviderAdapter, () => answerRules(restore, guards, (f) => fired.push(f)))
  const t = adapter.openStream(undefined as never, { callerWantsUsage: false })
  return { onEvent: (e: SseEvent) => text(t.onEvent(e)) }
}

const text = (out: string | Uint8Array | undefined): string | undefined => (out === undefined || typeof out === 'string' ? out : new TextDecoder().decode(out))

// Each event's output as it goes, the chunks' contents, and the error a refusal threw.
function run(parts: Array<string | undefined>, restore?: Map<string, string>, guards: OutputGuardrail[] = []) {
  const t = stream(restore, guards)
  const outs: string[] = []
  let error: unknown
  try {
    for (const p of parts) outs.push(t.onEvent(chunk(p)) ?? '')
    outs.push(t.onEvent(chunk(undefined, 'stop')) ?? '')
    outs.push(t.onEvent(ev('[DONE]')) ?? '')
  } catch (err) {
    error = err
  }
  const contents = (s: string) => s.split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => (JSON.parse(f.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content ?? '')
  const chunks = outs.flatMap(contents)
  return { text: chunks.join(''), chunks, outs, error, sent: outs.join('') }
}

describe('restoring redacted text in a stream', () => {
  const map = new Map([['[EMAIL_1]', 'ann@example.com'], ['[CARD_1]', '4111 1111 1111 1111']])

  it('puts back a placeholder split across chunks, holding back only its start', () => {
    const r = run(['Mail [EM', 'AIL_1] or use [CA', 'RD_1] now'], map)
    expect(r.text).toBe('Mail ann@example.com or use 4111 1111 1111 1111 now')
    // An event waits for the next of its channel, not for the whole placeholder.
    expect(r.outs[0]).toBe('')
    expect(r.outs[1]).toContain('Mail ann@example.com')
  })

  it('gives back what it held at the end, and never holds more than the bound', () => {
    expect(run(['trailing [EMA'], map).text).toBe('trailing [EMA')
    const long = `[${'A'.repeat(MAX_HOLD + 10)}`
    const r = run([long, ' tail'], map)
    expect(r.text).toBe(`${long} tail`)
    expect(r.chunks[0]).toBe(long)
  })

  it('passes a stream with nothing to change through unchanged, event by event', () => {
    const t = stream(map)
    const e = chunk('plain words')
    expect(t.onEvent(e)).toBe(new TextDecoder().decode(e.raw))
  })
})

describe('output guardrails on a stream', () => {
  const card = '4111 1111 1111 1111'
  const secret = `sk-proj-${'a1B2'.repeat(10)}`

  it('redacts a card number split across chunks: no chunk carries any of it', () => {
    const r = run(['Your card is 4111', ' 1111 11', '11 1111', ', keep it safe.'], undefined, [pii()])
    expect(r.text).toBe('Your card is [CARD_1], keep it safe.')
    expect(r.sent).not.toContain('1111')
  })

  it('stops the answer before a secret split across chunks leaves, with a content_policy_violation naming the guardrail', () => {
    const fired: Fired[] = []
    const t = stream(undefined, [pii({ action: 'block' })], fired)
    let sent = ''
    let error: unknown
    try {
      for (const p of ['Here is the key: ', secret.slice(0, 10), secret.slice(10, 30), secret.slice(30), ' done.']) sent += t.onEvent(chunk(p)) ?? ''
      sent += t.onEvent(chunk(undefined, 'stop')) ?? ''
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(GatewayError)
    expect((error as GatewayError).code).toBe('content_policy_violation')
    expect((error as GatewayError).message).toContain("'pii-out'")
    expect((error as GatewayError).message).not.toContain(secret)
    expect(sent).not.toContain('sk-')
    expect(fired).toEqual([{ id: 'pii-out', kind: 'pii', action: 'block', stage: 'output' }])
  })

  it('holds back no more than the longest pattern needs, and the text goes on streaming', () => {
    const parts = Array.from({ length: 200 }, (_, i) => `word${i} `)
    const t = stream(undefined, [pii()])
    let received = 0
    let released = 0
    for (const p of parts) {
      received += p.length
      const out = t.onEvent(chunk(p))
      if (out) for (const f of out.split('\n\n')) if (f.startsWith('data: {')) released += (JSON.parse(f.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content?.length ?? 0
      // What is held: the pattern's bound and the newest event, never the whole answer.
      expect(received - released).toBeLessThanOrEqual(PII_HOLD + SCAN_STEP + p.length)
    }
    expect(released).toBeGreaterThan(received - PII_HOLD - SCAN_STEP - 20)
  })

  it('redacts an email split across Anthropic content_block_delta events and a Responses text delta', () => {
    const t = stream(undefined, [pii()])
    const delta = (text: string) => ev(JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }), 'content_block_delta')
    let out = ''
    for (const p of ['write to ann.l', 'ee@exam', 'ple.com please']) out += t.onEvent(delta(p)) ?? ''
    out += t.onEvent(ev(JSON.stringify({ type: 'content_block_stop', index: 0 }), 'content_block_stop')) ?? ''
    expect(out).not.toContain('ann.l')
    const texts = out.split('\n\n').filter((f) => f.startsWith('event: content_block_delta')).map((f) => JSON.parse(f.split('\n')[1]!.slice(6)).delta.text)
    expect(texts.join('')).toBe('write to [EMAIL_1] please')
    // Every event keeps its event line, in order; none added, none lost.
    expect(out.match(/event: content_block_delta/g)?.length).toBe(3)
    expect(out.trimEnd().endsWith('"type":"content_block_stop","index":0}')).toBe(true)

    const r = stream(undefined, [pii()])
    const rd = (d: string) => ev(JSON.stringify({ type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: d, sequence_number: 3 }), 'response.output_text.delta')
    let rout = (r.onEvent(rd('call +44 20 79')) ?? '') + (r.onEvent(rd('46 0958 now')) ?? '')
    rout += r.onEvent(ev(JSON.stringify({ type: 'response.output_text.done', item_id: 'msg_1', output_index: 0, content_index: 0, text: 'call +44 20 7946 0958 now', sequence_number: 5 }), 'response.output_text.done')) ?? ''
    expect(rout).not.toContain('7946')
    expect(rout).toContain('"text":"call [PHONE_1] now"')
  })

  it('applies an operator regex to answers, holding back its max_match_chars', () => {
    const g: OutputGuardrail = { id: 'codename', kind: 'regex', action: 'redact', patterns: ['project\\s+zeta'], applies_to: 'output', max_match_chars: 32 }
    const r = run(['We call it proj', 'ect Ze', 'ta internally.'], undefined, [g])
    expect(r.text).toBe('We call it [REDACTED_CODENAME_1] internally.')
  })
})

describe('output guardrails on a whole answer', () => {
  it('redacts the content and keeps tool arguments valid JSON when an original goes back in', () => {
    const body = JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'Card 4111 1111 1111 1111 noted for [NAME_1].', tool_calls: [{ id: 't', type: 'function', function: { name: 'save', arguments: '{"who":"[NAME_1]"}' } }] }, finish_reason: 'stop' }] })
    const rules = answerRules(new Map([['[NAME_1]', 'Ann "the" Lee']]), [pii()], () => undefined)
    const out = JSON.parse(rewriteBody(rules, body).body)
    expect(out.choices[0].message.content).toBe('Card [CARD_1] noted for Ann "the" Lee.')
    expect(JSON.parse(out.choices[0].message.tool_calls[0].function.arguments)).toEqual({ who: 'Ann "the" Lee' })
  })

  it('returns the body unchanged when nothing matches, and the refusal when a guardrail blocks', () => {
    const body = '{"choices":[{"message":{"content":"nothing to see"}}],"usage":{"prompt_tokens":1.0}}'
    expect(rewriteBody(answerRules(undefined, [pii({ action: 'block' })], () => undefined), body).body).toBe(body)
    const r = rewriteBody(answerRules(undefined, [pii({ action: 'block' })], () => undefined), '{"content":[{"type":"text","text":"mail ann@example.com"}]}')
    expect(r.refusal?.code).toBe('content_policy_violation')
  })
})
