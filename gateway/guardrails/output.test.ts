import { describe, expect, it } from 'bun:test'
import type { GuardrailConfig } from '../../shared/config/schema.ts'
import { GatewayError } from '../errors.ts'
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import type { SseEvent } from '../upstream/sse.ts'
import type { Fired } from './apply.ts'
import { answerRules, guardedAdapter, MAX_HOLD, PII_HOLD, SCAN_STEP, rewriteBody, rewriteText, type OutputGuardrail } from './output.ts'

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
  return { onEvent: (e: SseEvent) => text(t.onEvent(e)), end: () => t.end() }
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

// Attacks found by review: every way a value split across events could slip through.
describe('output guardrails against a hostile stream', () => {
  const CARD = '4111 1111 1111 1111'
  const rawEv = (raw: string): SseEvent => ({ raw: enc.encode(raw), data: undefined, event: undefined, id: undefined })
  const delta = (d: unknown, finish: string | null = null, index = 0) => ev(JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index, delta: d, finish_reason: finish }] }))
  function feed(events: SseEvent[], guards: OutputGuardrail[] = [pii()], restore?: Map<string, string>): string {
    const t = stream(restore, guards)
    let sent = ''
    for (const e of events) sent += t.onEvent(e) ?? ''
    return sent + (t.end() ?? '')
  }

  it('keeps text held across events that end nothing: an empty delta, a signature delta, a keepalive', () => {
    expect(feed([delta({ content: 'card 4111 1111' }), delta({}), rawEv(': keepalive\n\n'), delta({ content: ' 1111 1111 ok' }), delta({}, 'stop'), ev('[DONE]')])).not.toContain('1111')
    const block = (d: unknown) => ev(JSON.stringify({ type: 'content_block_delta', index: 0, delta: d }), 'content_block_delta')
    const sent = feed([block({ type: 'text_delta', text: 'mail ann.lee' }), block({ type: 'signature_delta', signature: 'x' }), block({ type: 'text_delta', text: '@example.com' }), ev(JSON.stringify({ type: 'content_block_stop', index: 0 }), 'content_block_stop')])
    expect(sent).not.toContain('ann.lee')
    expect(sent).toContain('[EMAIL_1]')
  })

  it('checks refusals, legacy function_call arguments, the text a content block starts with, and the other strings of an event', () => {
    expect(feed([delta({ refusal: 'no: 4111 1111' }), delta({ refusal: ' 1111 1111' }), delta({ function_call: { arguments: '{"c":"4111 1111' } }), delta({ function_call: { arguments: ' 1111 1111"}' } })])).not.toContain('1111')
    expect(feed([delta({ content: 'hi', refusal: CARD })])).not.toContain(CARD)
    const start = ev(JSON.stringify({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: 'card 4111 1111' } }), 'content_block_start')
    expect(feed([start, ev(JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: ' 1111 1111' } }), 'content_block_delta')])).not.toContain('1111')
  })

  it('reads events as a client does: several data lines, CR line endings, \\u escapes in tool arguments', () => {
    expect(feed([rawEv(`data: {"choices":[{"index":0,"delta":{"content":"${CARD} "}}]}\ndata: \n\n`)])).not.toContain(CARD)
    const cr = feed([rawEv(`event: content_block_delta\rdata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: `card ${CARD}` } })}\r\r`)])
    expect(cr).not.toContain(CARD)
    expect(cr).toContain('event: content_block_delta\n')
    const args = '{"to":"ann\\u0040example.com","card":"\\u0034111 1111 1111 1111"}'
    const sent = feed([delta({ tool_calls: [{ index: 0, function: { arguments: args.slice(0, 12) } }] }), delta({ tool_calls: [{ index: 0, function: { arguments: args.slice(12) } }] }), delta({}, 'tool_calls')])
    expect(sent).not.toContain('example.com')
    expect(sent).not.toContain('1111')
    const body = JSON.stringify({ choices: [{ index: 0, message: { tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: args } }] } }] })
    const out = JSON.parse(rewriteBody(answerRules(undefined, [pii()], () => undefined), body).body)
    expect(JSON.parse(out.choices[0].message.tool_calls[0].function.arguments)).toEqual({ to: '[EMAIL_1]', card: '[CARD_1]' })
  })

  it('lets a quiet channel go while another streams on: content, then a long tool call', () => {
    const t = stream(undefined, [pii()])
    let sent = t.onEvent(delta({ role: 'assistant', content: 'Let me check.' })) ?? ''
    for (let i = 0; i < 200; i++) sent += t.onEvent(delta({ tool_calls: [{ index: 0, function: { arguments: `{"q":"w${i}"} `.slice(0, 10) } }] })) ?? ''
    expect(sent).toContain('Let me check.')
    expect(sent.length).toBeGreaterThan(1000)
  })

  it('finds a card split across interleaved choices and keeps surrogate pairs and sequence numbers whole', () => {
    const events: SseEvent[] = []
    for (const p of ['card 4111', ' 1111', ' 1111', ' 1111 end']) events.push(delta({ content: p }, null, 0), delta({ content: p }, null, 1))
    expect(feed([...events, delta({}, 'stop')])).not.toContain('1111')
    const sent = feed([delta({ content: 'a \ud83d' }), delta({ content: '\ude00 ann@example.com \ud83d' }), delta({ content: '\ude00' }), delta({}, 'stop')])
    const text = sent.split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => JSON.parse(f.slice(6)).choices[0].delta.content ?? '').join('')
    expect(text).toBe('a \ud83d\ude00 [EMAIL_1] \ud83d\ude00')
    const rd = (d: string, n: number) => ev(JSON.stringify({ type: 'response.output_text.delta', item_id: 'm', output_index: 0, content_index: 0, delta: d, sequence_number: n }), 'response.output_text.delta')
    const r = feed([rd('a 4111 11', 1), rd('11 1111 1111 b', 2), ev(JSON.stringify({ type: 'response.output_text.done', item_id: 'm', output_index: 0, content_index: 0, text: `a ${CARD} b`, sequence_number: 3 }), 'response.output_text.done')])
    expect(r).not.toContain('1111')
    expect(r.match(/sequence_number":(\d)/g)).toEqual(['sequence_number":1', 'sequence_number":2', 'sequence_number":3'])
  })

  it('walks JSON of any depth without overflowing, and leaves the caller own restored originals alone', () => {
    const nested = (depth: number) => `{"choices":${'['.repeat(depth)}"${CARD}"${']'.repeat(depth)}}`
    expect(rewriteBody(answerRules(undefined, [pii()], () => undefined), nested(2_000)).body).not.toContain(CARD)
    // Deeper than can be written back: refused, never passed on unchecked.
    const deep = rewriteBody(answerRules(undefined, [pii()], () => undefined), nested(200_000))
    expect(deep.refusal?.code).toBe('content_policy_violation')
    // restore puts back what the caller sent itself: not the model's, so not the output guardrail's.
    const r = rewriteBody(answerRules(new Map([['[CARD_1]', CARD]]), [pii({ action: 'block' })], () => undefined), '{"content":"Your card [CARD_1]"}')
    expect(r.refusal).toBeUndefined()
    expect(JSON.parse(r.body).content).toBe(`Your card ${CARD}`)
  })
})

describe('output guardrails against a hostile stream, second pass', () => {
  const rawEv = (raw: string): SseEvent => ({ raw: enc.encode(raw), data: undefined, event: undefined, id: undefined })
  const delta = (d: unknown, finish: string | null = null, index = 0) => ev(JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index, delta: d, finish_reason: finish }] }))
  function feed(events: SseEvent[], guards: OutputGuardrail[] = [pii()]): string {
    const t = stream(undefined, guards)
    let sent = ''
    for (const e of events) sent += t.onEvent(e) ?? ''
    return sent + (t.end() ?? '')
  }

  it('reads tool arguments through every JSON escape, and keeps them valid JSON when it redacts', () => {
    const rules = answerRules(undefined, [pii()], () => undefined)
    for (const [value, hidden] of [
      ['Card:\n4111111111111111', '4111'],
      ['x\nann.lee@example.com', 'ann.lee'],
      ['a\tDE89370400440532013000', 'DE89'],
      ['say \u00224111 1111 1111 1111\u0022', '4111'],
    ] as const) {
      const out = rewriteText(rules, JSON.stringify({ v: value }), true)
      expect(out).not.toContain(hidden)
      expect(() => JSON.parse(out)).not.toThrow()
    }
    const args = JSON.stringify({ to: 'x\nann.lee@example.com' })
    const sent = feed([delta({ tool_calls: [{ index: 0, function: { arguments: args.slice(0, 9) } }] }), delta({ tool_calls: [{ index: 0, function: { arguments: args.slice(9) } }] }), delta({}, 'tool_calls')])
    const joined = sent.split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => JSON.parse(f.slice(6)).choices[0].delta.tool_calls?.[0]?.function.arguments ?? '').join('')
    expect(JSON.parse(joined)).toEqual({ to: 'x\n[EMAIL_1]' })
  })

  it('joins the text an item or a message starts with to the deltas that continue it', () => {
    const start = ev(JSON.stringify({ type: 'message_start', message: { id: 'm', type: 'message', role: 'assistant', content: [{ type: 'text', text: 'mail ann.lee@exa' }] } }), 'message_start')
    const more = ev(JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'mple.com now' } }), 'content_block_delta')
    expect(feed([start, more, ev(JSON.stringify({ type: 'content_block_stop', index: 0 }), 'content_block_stop')])).not.toContain('ann.lee')
    const added = ev(JSON.stringify({ type: 'response.output_item.added', output_index: 0, item: { id: 'msg_1', type: 'message', content: [{ type: 'output_text', text: 'mail ann.lee@exa' }] } }), 'response.output_item.added')
    const part = ev(JSON.stringify({ type: 'response.content_part.added', item_id: 'msg_1', output_index: 0, content_index: 0, part: { type: 'output_text', text: 'mple.com' } }), 'response.content_part.added')
    const d = ev(JSON.stringify({ type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: ' now' }), 'response.output_text.delta')
    expect(feed([added, part, d, ev(JSON.stringify({ type: 'response.output_text.done', item_id: 'msg_1', output_index: 0, content_index: 0, text: 'x' }))])).not.toContain('ann.lee')
  })

  it('sees a match whose start was already sent, and waits for a key that keeps growing', () => {
    const key = `sk-proj-${'A'.repeat(25)}`
    const sent = feed([delta({ content: `key ${key}` }), ev(JSON.stringify({ choices: [] })), delta({ content: 'B'.repeat(37) }), delta({}, 'stop')])
    expect(sent).not.toContain('BBBB')
    const long = `sk-proj-${'x9'.repeat(200)}`
    const parts = long.match(/.{1,10}/g)!.map((p) => delta({ content: p }))
    const out = feed([delta({ content: 'key: ' }), ...parts, delta({ content: ' done' }), delta({}, 'stop')])
    expect(out).not.toContain('x9x9')
  })

  it('takes a new channel in every event (3,000 tool calls), each written once', () => {
    const events = Array.from({ length: 3000 }, (_, i) => delta({ tool_calls: [{ index: i, id: `c${i}`, function: { name: 'f', arguments: '{}' } }] }))
    const t = stream(undefined, [pii()])
    let sent = ''
    for (const e of events) sent += t.onEvent(e) ?? ''
    sent += t.onEvent(delta({}, 'tool_calls')) ?? ''
    expect(sent.match(/"arguments":"\{\}"/g)?.length).toBe(3000)
  })
})
