import { describe, expect, it } from 'bun:test'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'

const DIR = import.meta.dir
const ROOT = resolve(DIR, '../..')

function promtool(...args: string[]) {
  const r = Bun.spawnSync(['promtool', ...args], { cwd: DIR })
  return { code: r.exitCode, out: `${r.stdout.toString()}${r.stderr.toString()}` }
}

function sources(dir: string): string {
  return readdirSync(dir)
    .map((name) => join(dir, name))
    .map((p) => (statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') && !p.endsWith('.test.ts') ? readFileSync(p, 'utf8') : ''))
    .join('\n')
}

describe('alert rules', () => {
  it('are valid Prometheus rules', () => {
    const r = promtool('check', 'rules', 'gateway-alerts.yml')
    expect(r.out).toContain('SUCCESS')
    expect(r.code).toBe(0)
  })

  it('fire and stay quiet as their promtool unit tests say', () => {
    const r = promtool('test', 'rules', 'gateway-alerts.test.yml')
    expect(r.out).toContain('SUCCESS')
    expect(r.code).toBe(0)
  })

  it('only use metrics the gateway and the worker export', () => {
    const rules = readFileSync(join(DIR, 'gateway-alerts.yml'), 'utf8')
    const used = new Set(rules.match(/\b(gateway|analytics)_[a-z0-9_]+/g) ?? [])
    const code = sources(join(ROOT, 'gateway')) + sources(join(ROOT, 'analytics'))
    const exported = [...used].filter((name) => code.includes(`'${name}`) || code.includes(`\`${name}`) || code.includes(`${name} `))
    expect(exported.sort()).toEqual([...used].sort())
  })
})
