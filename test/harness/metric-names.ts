// The metric names a piece of PromQL uses that neither the gateway nor the worker exports, their process metrics included (for the alert rule and dashboard tests).
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'

const ROOT = resolve(import.meta.dir, '../..')

function sources(dir: string): string {
  return readdirSync(dir)
    .map((name) => join(dir, name))
    .map((p) => (statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') && !p.endsWith('.test.ts') ? readFileSync(p, 'utf8') : ''))
    .join('\n')
}

export function unexportedMetrics(promql: string): string[] {
  const used = new Set(promql.match(/\b(gateway|analytics|process)_[a-z0-9_]+/g) ?? [])
  const code = sources(join(ROOT, 'gateway')) + sources(join(ROOT, 'analytics')) + sources(join(ROOT, 'shared'))
  // A histogram is exported under its base name; its series add _bucket, _sum and _count.
  const base = (name: string) => name.replace(/_(bucket|sum|count)$/, '')
  const exported = (name: string) => [name, base(name)].some((n) => code.includes(`'${n}'`) || code.includes(`'${n} `) || code.includes(`\`${n}`) || code.includes(`${n} \${`))
  return [...used].filter((name) => !exported(name)).sort()
}
