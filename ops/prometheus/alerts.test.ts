import { describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { unexportedMetrics } from '../../test/harness/metric-names.ts'

const DIR = import.meta.dir

function promtool(...args: string[]) {
  const r = Bun.spawnSync(['promtool', ...args], { cwd: DIR })
  return { code: r.exitCode, out: `${r.stdout.toString()}${r.stderr.toString()}` }
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
    expect(unexportedMetrics(readFileSync(join(DIR, 'gateway-alerts.yml'), 'utf8'))).toEqual([])
  })
})
