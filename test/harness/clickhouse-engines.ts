// Both engines the analytics SQL must run on, opened fresh for one test file: clickhouse-server 18.16 and chdb.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectClickHouse, openEmbeddedClickHouse, type ClickHouse } from '../../analytics/clickhouse.ts'
import { startClickHouse } from './clickhouse.ts'

export const ENGINES = ['server', 'embedded'] as const
export type EngineKind = (typeof ENGINES)[number]

export interface TestEngine {
  ch: ClickHouse
  stop(): Promise<void>
}

export async function openTestEngine(kind: EngineKind): Promise<TestEngine> {
  if (kind === 'server') {
    const server = await startClickHouse()
    const ch = connectClickHouse(server.url)
    return {
      ch,
      async stop() {
        await ch.close()
        await server.stop()
      },
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'chdb-test-'))
  const ch = await openEmbeddedClickHouse(dir)
  return {
    ch,
    async stop() {
      await ch.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export const ENGINE_LABEL: Record<EngineKind, string> = {
  server: 'clickhouse-server 18.16',
  embedded: 'chdb (embedded, current ClickHouse)',
}
