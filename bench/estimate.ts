// Benchmarks the budget estimate: its accuracy against provider-reported usage on the recorded fixtures, and its cost per request.
// Run: npx bun bench/estimate.ts
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ProviderKind, QuotaSettings } from '../shared/config/schema.ts'
import type { ChatRequest } from '../gateway/chat-request.ts'
import { estimateRequest, RequestCounter } from '../gateway/quota/estimate.ts'
import { loadEncoding } from '../gateway/providers/tokenize.ts'
import { estimatePairs } from '../test/harness/estimate-fixtures.ts'
import { pngDataUrl } from '../test/harness/images.ts'
import { testRoute } from '../test/harness/targets.ts'

const settings: QuotaSettings = { fail_open: false, reservation_ttl_ms: 300_000, default_max_output_tokens: 4096, redis_timeout_ms: 250, lease_requests: 64, lease_max_age_ms: 1000 }
// Each timed case runs for about this long, at most MAX_CALLS calls.
const CASE_MS = 400
const MAX_CALLS = 20_000

const route = (kind: ProviderKind, upstreamModel: string) => testRoute(kind, upstreamModel)

const pad = (s: string | number, n: number) => String(s).padEnd(n)

await Promise.all([loadEncoding('o200k_base'), loadEncoding('cl100k_base')])
console.log(`bun ${Bun.version}\n\n## accuracy: input tokens, estimate vs what the provider reported`)
console.log(`${pad('fixture', 52)}${pad('reported', 10)}${pad('guess', 8)}${pad('guess/rep', 11)}${pad('reserved', 10)}reserved/rep`)
const ratios: Record<string, number[]> = {}
for (const pair of estimatePairs()) {
  const est = await estimateRequest(route(pair.kind, pair.upstreamModel), pair.request, {}, settings, new RequestCounter())
  const g = est.inputGuess / pair.reported
  const r = est.input / pair.reported
  ;(ratios[pair.kind] ??= []).push(g)
  console.log(`${pad(pair.name, 52)}${pad(pair.reported, 10)}${pad(est.inputGuess, 8)}${pad(g.toFixed(2), 11)}${pad(est.input, 10)}${r.toFixed(2)}`)
}
for (const [kind, rs] of Object.entries(ratios)) console.log(`${kind}: guess/reported from ${Math.min(...rs).toFixed(2)} to ${Math.max(...rs).toFixed(2)} over ${rs.length} requests`)

const prose = readFileSync(join(import.meta.dir, '..', 'docs', 'budgets.md'), 'utf8')
const text = (n: number) => prose.repeat(Math.ceil(n / prose.length)).slice(0, n)
const tool = (i: number) => ({ type: 'function', function: { name: `tool_${i}`, description: text(300), parameters: { type: 'object', properties: { q: { type: 'string' } } } } })
const cases: Array<[string, ChatRequest]> = [
  ['hello (1 message)', { model: 'm', messages: [{ role: 'user', content: 'Hello there!' }] }],
  ['2 KB chat, 4 messages', { model: 'm', messages: [0, 1, 2, 3].map((i) => ({ role: i % 2 ? 'assistant' : 'user', content: text(500) })) as ChatRequest['messages'] }],
  ['20 KB prompt', { model: 'm', messages: [{ role: 'user', content: text(20_000) }] }],
  ['5 tools + 1 KB', { model: 'm', messages: [{ role: 'user', content: text(1000) }], tools: [0, 1, 2, 3, 4].map(tool) } as unknown as ChatRequest],
  ['4 inline images', { model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'what?' }, ...[0, 1, 2, 3].map(() => ({ type: 'image_url', image_url: { url: pngDataUrl(1024, 768, 200_000) } }))] }] } as unknown as ChatRequest],
  ['200 KB prompt', { model: 'm', messages: [{ role: 'user', content: text(200_000) }] }],
]
console.log('\n## cost per estimate (one target, a fresh count each call; median of 5 batches)')
for (const kind of ['openai', 'anthropic'] as const) {
  const r = route(kind, kind === 'openai' ? 'gpt-4o' : 'claude-sonnet-4-5')
  for (const [name, req] of cases) {
    const batches: number[] = []
    for (let b = 0; b < 5; b++) {
      const started = performance.now()
      let calls = 0
      while (calls < MAX_CALLS / 5 && performance.now() - started < CASE_MS / 5) {
        await estimateRequest(r, req, {}, settings, new RequestCounter())
        calls++
      }
      batches.push(((performance.now() - started) * 1000) / calls)
    }
    batches.sort((a, b) => a - b)
    console.log(`${pad(kind, 10)}${pad(name, 26)}${(batches[2] as number).toFixed(1)} µs`)
  }
}

console.log('\n## a pathological prompt: total time, and the longest the event loop waited meanwhile')
for (const [name, content] of [['1 MB of "a"', 'a'.repeat(1 << 20)], ['1 MB of spaces', ' '.repeat(1 << 20)], ['1 MB of one CJK run', '語'.repeat(350_000)]] as const) {
  let longest = 0
  let last = performance.now()
  let ticking = true
  const tick = () => {
    const now = performance.now()
    longest = Math.max(longest, now - last)
    last = now
    if (ticking) setImmediate(tick)
  }
  setImmediate(tick)
  const started = performance.now()
  const est = await estimateRequest(route('openai', 'gpt-4o'), { model: 'm', messages: [{ role: 'user', content }] }, {}, settings, new RequestCounter())
  const total = performance.now() - started
  ticking = false
  console.log(`${pad(name, 24)}${pad(`${total.toFixed(0)} ms`, 10)} longest block ${longest.toFixed(2)} ms, ${est.inputGuess} tokens`)
}
