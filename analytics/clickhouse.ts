// One small interface over both engines: clickhouse-server over HTTP (@clickhouse/client) and embedded chdb.
import { ClickHouseLogLevel, createClient } from '@clickhouse/client'
import { StartupError } from './startup.ts'
import type * as Chdb from 'chdb'

export interface ClickHouse {
  engine: 'server' | 'embedded'
  // One statement, no result (DDL, ALTER, INSERT ... SELECT). Server HTTP takes one statement per call.
  exec(sql: string): Promise<void>
  // One SELECT without a FORMAT clause; rows as JSONEachRow objects (64-bit integers as strings).
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>
  // One JSONEachRow insert of the whole batch (a batch is one insert, so one part and one write).
  insertRows(table: string, rows: ReadonlyArray<Record<string, unknown>>): Promise<void>
  close(): Promise<void>
}

// @clickhouse/client 1.23 sends no settings by default that 18.16 rejects (checked: ping, command,
// query, insert); response compression stays off so it never adds enable_http_compression.
export function connectClickHouse(url: string): ClickHouse {
  const client = createClient({
    url,
    database: 'default',
    compression: { request: false, response: false },
    // Errors reach the caller as rejections; the client's own error log would report them twice.
    log: { level: ClickHouseLogLevel.OFF },
  })
  return {
    engine: 'server',
    async exec(sql) {
      await client.command({ query: sql })
    },
    async query<T>(sql: string) {
      const result = await client.query({ query: sql, format: 'JSONEachRow' })
      return result.json<T>()
    },
    async insertRows(table, rows) {
      if (rows.length === 0) return
      await client.insert({ table, values: rows as Array<Record<string, unknown>>, format: 'JSONEachRow' })
    },
    async close() {
      await client.close()
    },
  }
}

// chdb is one engine per process bound to one data folder: close() before opening another folder.
// chdb (a 500 MB native library) is an optional dependency, loaded only here: an install that uses
// a ClickHouse server (CLICKHOUSE_URL) can leave it out (npm rm --no-save chdb after npm ci).
async function loadChdb(): Promise<typeof Chdb> {
  try {
    return await import('chdb')
  } catch {
    throw new StartupError('analytics: embedded ClickHouse needs the optional package chdb, which is not installed: npm install chdb, or set CLICKHOUSE_URL to a ClickHouse server (or ANALYTICS=off)')
  }
}

export async function openEmbeddedClickHouse(dataDir: string): Promise<ClickHouse> {
  const { drainPending, Session } = await loadChdb()
  const session = new Session(dataDir, {
    // 18.16 quotes 64-bit integers in JSON by default, current ClickHouse does not: match the server.
    connectionArgs: ['--output_format_json_quote_64bit_integers=1'],
  })
  return {
    engine: 'embedded',
    async exec(sql) {
      await session.queryAsync(sql)
    },
    async query<T>(sql: string) {
      const result = await session.queryAsync(sql, { format: 'JSONEachRow' })
      return parseJsonLines<T>(result.text())
    },
    async insertRows(table, rows) {
      if (rows.length === 0) return
      await session.insert({ table, values: rows.map((r) => JSON.stringify(r)).join('\n'), format: 'JSONEachRow' })
    },
    async close() {
      session.close()
      // close() returns before the native connection is gone; the next Session must wait for it.
      await drainPending()
    },
  }
}

function parseJsonLines<T>(text: string): T[] {
  const rows: T[] = []
  for (const line of text.split('\n')) if (line !== '') rows.push(JSON.parse(line) as T)
  return rows
}
