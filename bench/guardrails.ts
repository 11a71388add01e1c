// What the guardrails cost a request, in process: the default set (pii redact with restore, prompt_injection, one regex) on a typical prompt and on 10, 50 and 100 KB prompts, to show the cost grows with the text and nothing else.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { ChatRequest } from '../gateway/chat-request.ts'
import { applyGuardrails } from '../gateway/guardrails/apply.ts'
import type { GuardrailConfig } from '../shared/config/schema.ts'

const SET: GuardrailConfig[] = [
  { id: 'pii', kind: 'pii', action: 'redact', restore: true, types: ['email', 'phone', 'card', 'iban', 'secret'] },
  { id: 'no-injection', kind: 'prompt_injection', action: 'block' },
  { id: 'words', kind: 'regex', action: 'block', patterns: ['project\\s+zeta'] },
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
console.log(`guardrails bench — bun ${Bun.version}; the default set: pii (redact, restore), prompt_injection, one regex`)
for (const r of rows) console.log(`${r.case.padEnd(28)}${String(r.bytes).padStart(8)} B  ${String(r.us_per_request).padStart(9)} µs  ${String(r.us_per_kb).padStart(7)} µs/KB`)
const path = resolve(import.meta.dir, 'results/guardrails.json')
mkdirSync(resolve(path, '..'), { recursive: true })
writeFileSync(path, `${JSON.stringify({ timestamp: new Date().toISOString(), rows }, null, 2)}\n`)
