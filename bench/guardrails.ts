// What the guardrails cost a request, in process: the default set (pii redact with restore, prompt_injection, one regex) on a typical prompt and on 10, 50 and 100 KB prompts, to show the cost grows with the text and nothing else.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { ChatRequest } from '../gateway/chat-request.ts'
import { applyGuardrails } from '../gateway/guardrails/apply.ts'
import type { GuardrailConfig } from '../shared/config/schema.ts'
import { answerRules, guardedAdapter, type OutputGuardrail } from '../gateway/guardrails/output.ts'
import type { ProviderAdapter } from '../gateway/providers/types.ts'
import type { SseEvent } from '../gateway/upstream/sse.ts'

const SET: GuardrailConfig[] = [
  { id: 'pii', kind: 'pii', action: 'redact', restore: true, types: ['email', 'phone', 'card', 'iban', 'secret'], applies_to: 'input' },
  { id: 'no-injection', kind: 'prompt_injection', action: 'block' },
  { id: 'words', kind: 'regex', action: 'block', patterns: ['project\\s+zeta'], applies_to: 'input', max_match_chars: 256 },
]
const prose = readFileSync(join(import.meta.dir, '..', 'docs', 'budgets.md'), 'utf8').replace(/ignore|disregard|forget|override|bypass|system\s*:/gi, 'x')
const text = (n: number) => prose.repeat(Math.ceil(n / prose.length)).slice(0, n)
const req = (content: string): ChatRequest => ({ model: 'm', messages: [{ role: 'system', content: 'You are helpful.' }, { role: 'user', content }] })

const cases: Array<[string, ChatRequest]> = [
  ['typical (200 B, one email)', req('Please summarise the attached notes and send them to ann@example.com by Friday, thanks.')],
  ['10 KB', req(text(10_000))],
  ['50 KB', req(text(50_000))],
  ['100 KB', req(text(100_000))],
]

const rows: Array<{ case: string; bytes: number; us_per_request: number; us_per_kb: number }> = []
for (const [name, r] of cases) {
  for (let i = 0; i < 20; i++) await applyGuardrails(r, SET, () => undefined)
  const n = name.startsWith('typical') ? 20_000 : 200
  const start = performance.now()
  for (let i = 0; i < n; i++) await applyGuardrails(r, SET, () => undefined)
  const us = ((performance.now() - start) * 1000) / n
  const bytes = JSON.stringify(r.messages).length
  rows.push({ case: name, bytes, us_per_request: Math.round(us * 10) / 10, us_per_kb: Math.round((us / (bytes / 1024)) * 10) / 10 })
}
// A prompt at the body limit: read in slices, the event loop let go between them; the longest time
// it was held is what every other request on the process waits at most.
const huge = req(text(4 * 1024 * 1024))
let lastTick = performance.now()
let longestBlockMs = 0
const ticker = setInterval(() => {
  const now = performance.now()
  longestBlockMs = Math.max(longestBlockMs, now - lastTick)
  lastTick = now
}, 0)
const hugeStart = performance.now()
lastTick = hugeStart
await applyGuardrails(huge, SET, () => undefined)
const hugeMs = performance.now() - hugeStart
clearInterval(ticker)
const blocking = { case: '4 MiB prompt', ms: Math.round(hugeMs), longest_event_loop_block_ms: Math.round(longestBlockMs * 10) / 10 }

console.log(`guardrails bench — bun ${Bun.version}; the default set: pii (redact, restore), prompt_injection, one regex`)
for (const r of rows) console.log(`${r.case.padEnd(28)}${String(r.bytes).padStart(8)} B  ${String(r.us_per_request).padStart(9)} µs  ${String(r.us_per_kb).padStart(7)} µs/KB`)

// Output guardrails on a streamed answer: every event's text joins a window of at most 256
// characters that is scanned again, so the cost grows with the answer's length and the window.
const OUTPUT: OutputGuardrail[] = [{ id: 'pii-out', kind: 'pii', action: 'redact', restore: false, types: ['email', 'phone', 'card', 'iban', 'secret'], applies_to: 'output' }]
const enc = new TextEncoder()
const streamRows: Array<{ case: string; chars: number; events: number; us_per_stream: number; us_per_event: number }> = []
for (const [name, chars, per] of [
  ['answer of 1 KB, 4-char events', 1_000, 4],
  ['answer of 10 KB, 4-char events', 10_000, 4],
  ['answer of 10 KB, 40-char events', 10_000, 40],
] as const) {
  const answer = text(chars)
  const events: SseEvent[] = []
  for (let at = 0; at < answer.length; at += per) {
    const data = JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: answer.slice(at, at + per) }, finish_reason: null }] })
    events.push({ raw: enc.encode(`data: ${data}\n\n`), data, event: undefined, id: undefined })
  }
  const adapter = guardedAdapter({ openStream: () => ({ usage: undefined, finished: false, contentChunks: 0, outputBytes: 0, error: undefined, onEvent: (e: SseEvent) => e.raw, end: () => undefined }) } as unknown as ProviderAdapter, () => answerRules(undefined, OUTPUT, () => undefined))
  const once = () => {
    const t = adapter.openStream(undefined as never, { callerWantsUsage: false })
    for (const e of events) t.onEvent(e)
    t.end()
  }
  for (let i = 0; i < 5; i++) once()
  const n = chars > 1000 ? 20 : 200
  const start = performance.now()
  for (let i = 0; i < n; i++) once()
  const us = ((performance.now() - start) * 1000) / n
  streamRows.push({ case: name, chars, events: events.length, us_per_stream: Math.round(us), us_per_event: Math.round((us / events.length) * 10) / 10 })
}
console.log(`${blocking.case}: ${blocking.ms} ms in all, the event loop held ${blocking.longest_event_loop_block_ms} ms at most`)
console.log('output pii guardrail on a streamed answer (in process, the relay excluded)')
for (const r of streamRows) console.log(`${r.case.padEnd(34)}${String(r.events).padStart(6)} events  ${String(r.us_per_stream).padStart(8)} µs  ${String(r.us_per_event).padStart(7)} µs/event`)
const path = resolve(import.meta.dir, 'results/guardrails.json')
mkdirSync(resolve(path, '..'), { recursive: true })
writeFileSync(path, `${JSON.stringify({ timestamp: new Date().toISOString(), rows, blocking, stream: streamRows }, null, 2)}\n`)
