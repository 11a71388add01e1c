import { describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { unexportedMetrics } from '../../test/harness/metric-names.ts'

interface Panel {
  id: number
  title: string
  gridPos: { x: number; y: number; w: number; h: number }
  targets: Array<{ expr: string }>
}

const dashboard = JSON.parse(readFileSync(join(import.meta.dir, 'llm-gateway.json'), 'utf8')) as { uid: string; panels: Panel[] }

describe('Grafana dashboard', () => {
  it('has unique panel ids and queries for every panel', () => {
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length)
    for (const p of dashboard.panels) expect(p.targets.length).toBeGreaterThan(0)
  })

  it('only queries metrics the gateway and the worker export', () => {
    expect(unexportedMetrics(dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n'))).toEqual([])
  })

  it('lays panels out without overlap on the 24-column grid', () => {
    const cells = new Set<string>()
    for (const { gridPos: g } of dashboard.panels) {
      expect(g.x + g.w).toBeLessThanOrEqual(24)
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          const cell = `${x},${y}`
          expect(cells.has(cell)).toBe(false)
          cells.add(cell)
        }
      }
    }
  })
})
