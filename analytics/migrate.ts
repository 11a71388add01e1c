// Applies analytics/migrations/NNNN_name.sql in order, each once, recorded in schema_migrations.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ClickHouse } from './clickhouse.ts'

const MIGRATIONS_DIR = join(import.meta.dir, 'migrations')
const FILE = /^(\d{4})_([a-z0-9_]+)\.sql$/

// ClickHouse has no transactions or locks to serialise two workers starting at once, so both may
// apply the same migration: its statements are idempotent (IF NOT EXISTS) and the record is a
// ReplacingMergeTree row read with FINAL, so a second copy of either changes nothing.
const CREATE_SCHEMA_MIGRATIONS = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version String,
  name String,
  applied_at DateTime('UTC')
) ENGINE = ReplacingMergeTree ORDER BY version`

export interface Migration {
  version: string
  name: string
  statements: string[]
}

// Returns the versions applied by this call, in order; [] when the schema was already current.
export async function migrate(ch: ClickHouse, dir = MIGRATIONS_DIR): Promise<string[]> {
  await ch.exec(CREATE_SCHEMA_MIGRATIONS)
  const done = new Set((await ch.query<{ version: string }>('SELECT version FROM schema_migrations FINAL')).map((r) => r.version))
  const applied: string[] = []
  for (const m of loadMigrations(dir)) {
    if (done.has(m.version)) continue
    for (const sql of m.statements) {
      try {
        await ch.exec(sql)
      } catch (err) {
        // A column another worker added a moment ago (ADD COLUMN has no IF NOT EXISTS on 18.16).
        if (/^\s*ALTER TABLE \w+ ADD COLUMN /i.test(sql) && /already exists/i.test(String(err))) continue
        throw new Error(`migration ${m.version}_${m.name} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
      }
    }
    await ch.insertRows('schema_migrations', [{ version: m.version, name: m.name, applied_at: nowDateTime() }])
    applied.push(m.version)
  }
  return applied
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const migrations: Migration[] = []
  for (const file of readdirSync(dir).sort()) {
    const m = FILE.exec(file)
    if (!m) continue
    migrations.push({ version: m[1] ?? '', name: m[2] ?? '', statements: splitStatements(readFileSync(join(dir, file), 'utf8')) })
  }
  const versions = migrations.map((m) => m.version)
  const dup = versions.find((v, i) => versions.indexOf(v) !== i)
  if (dup !== undefined) throw new Error(`two migrations share version ${dup}`)
  return migrations
}

// The server's HTTP interface takes one statement per request. Migration files are ours: whole-line
// `--` comments, and `;` only as a statement's end (never inside a literal).
export function splitStatements(text: string): string[] {
  const code = text
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n')
  return code
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

function nowDateTime(): string {
  return new Date().toISOString().slice(0, 19).replace('T', ' ')
}
