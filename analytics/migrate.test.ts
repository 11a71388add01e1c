import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { ENGINE_LABEL, ENGINES, openTestEngine, type TestEngine } from '../test/harness/clickhouse-engines.ts'
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import { insertUsage } from './usage-table.ts'
import { loadMigrations, migrate, splitStatements } from './migrate.ts'

describe('migration files', () => {
  it('are numbered, unique and split into single statements', () => {
    const ms = loadMigrations()
    expect(ms.map((m) => m.version)).toEqual(['0001', '0002', '0003', '0004', '0005', '0006', '0007', '0008'])
    for (const m of ms) for (const s of m.statements) expect(s).not.toContain(';')
  })

  it('drop whole-line comments and empty statements', () => {
    expect(splitStatements('-- a; b\nSELECT 1;\n\n  -- c\nSELECT 2;\n')).toEqual(['SELECT 1', 'SELECT 2'])
  })
})

for (const kind of ENGINES) {
  describe(`migrate on ${ENGINE_LABEL[kind]}`, () => {
    let engine: TestEngine
    beforeAll(async () => {
      engine = await openTestEngine(kind)
    })
    afterAll(async () => {
      await engine?.stop()
    })

    it('applies every migration once, even when two workers start at once', async () => {
      const [a, b] = await Promise.all([migrate(engine.ch), migrate(engine.ch)])
      expect([...new Set([...(a ?? []), ...(b ?? [])])].sort()).toEqual(['0001', '0002', '0003', '0004', '0005', '0006', '0007', '0008'])
      const tables = await engine.ch.query<{ name: string }>("SELECT name FROM system.tables WHERE database = 'default' ORDER BY name")
      expect(tables.map((t) => t.name)).toEqual(['audit_events', 'schema_migrations', 'usage_daily', 'usage_daily_staging', 'usage_raw'])
      const recorded = await engine.ch.query<{ version: string }>('SELECT version FROM schema_migrations FINAL ORDER BY version')
      expect(recorded.map((r) => r.version)).toEqual(['0001', '0002', '0003', '0004', '0005', '0006', '0007', '0008'])
    })

    it('applies nothing when run again', async () => {
      expect(await migrate(engine.ch)).toEqual([])
    })

    it('rejects a failed query with the ClickHouse message', async () => {
      await expect(engine.ch.query('SELECT no_such_column FROM usage_raw')).rejects.toThrow(/no_such_column/)
    })

    it('returns UInt64 as a string, as 18.16 does by default', async () => {
      expect(await engine.ch.query('SELECT toUInt64(18446744073709551615) AS n')).toEqual([{ n: '18446744073709551615' }])
    })
  })
}

for (const kind of ENGINES) {
  describe(`upgrading an existing schema on ${ENGINE_LABEL[kind]}`, () => {
    it('adds client_request_id and endpoint to a usage_raw made by the first migrations, keeping its rows', async () => {
      const engine = await openTestEngine(kind)
      const old = mkdtempSync(join(tmpdir(), 'old-migrations-'))
      try {
        for (const f of ['0001_usage_raw.sql', '0002_usage_daily.sql']) cpSync(join(import.meta.dir, 'migrations', f), join(old, f))
        expect(await migrate(engine.ch, old)).toEqual(['0001', '0002'])
        await engine.ch.insertRows('usage_raw', [{ request_id: 'before', client_id: 'c', team_id: 't', provider_id: 'p', model: 'm', upstream_model: 'm', status: 'success', attempt_log: '[]', created_at: '2024-01-01 00:00:00' }])
        expect(await migrate(engine.ch)).toEqual(['0003', '0004', '0005', '0006', '0007', '0008'])
        await insertUsage(engine.ch, [usageRecord({ request_id: 'after', client_request_id: 'theirs-1', endpoint: 'embeddings' }), usageRecord({ request_id: 'older-gateway' })])
        const rows = await engine.ch.query<{ request_id: string; client_request_id: string | null; endpoint: string }>('SELECT request_id, client_request_id, endpoint FROM usage_raw FINAL ORDER BY request_id')
        // Rows from before, and records from gateways that did not say, were chat completions.
        expect(rows).toEqual([
          { request_id: 'after', client_request_id: 'theirs-1', endpoint: 'embeddings' },
          { request_id: 'before', client_request_id: null, endpoint: 'chat.completions' },
          { request_id: 'older-gateway', client_request_id: null, endpoint: 'chat.completions' },
        ])
      } finally {
        rmSync(old, { recursive: true, force: true })
        await engine.stop()
      }
    })
  })
}
