// What keeps the analytics worker from starting, said in one line that names the port or folder and the setting that changes it (no stack trace): a port in use, a data folder another process holds.
import { Database } from 'bun:sqlite'
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'

export class StartupError extends Error {
  override name = 'StartupError'
}

// The query API's port must be free (0 is always).
export function checkPortFree(host: string, port: number): void {
  if (port === 0) return
  try {
    const probe = Bun.listen({ hostname: host, port, socket: { data() {} } })
    probe.stop(true)
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'EADDRINUSE') throw new StartupError(`analytics: cannot listen on ${host}:${port}: the port is in use by another process (another npm start?); stop it, or set ANALYTICS_PORT (0 picks a free port)`)
    throw new StartupError(`analytics: cannot listen on ${host}:${port} (${code ?? (err as Error).message}); set ANALYTICS_HOST / ANALYTICS_PORT`)
  }
}

// Embedded ClickHouse allows one process per data folder: an exclusive SQLite lock in it, taken
// before the engine opens (which would otherwise fail with its own trace) and held while this process
// runs; the operating system lets it go with the process, however it ends. Returns the release.
export function lockDataDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true })
  const path = join(dir, 'gateway-lock.sqlite')
  let db: Database
  try {
    db = new Database(path, { create: true })
  } catch (err) {
    throw new StartupError(`analytics: cannot create ${path} (${(err as Error).message}); set ANALYTICS_DATA_DIR to a folder this process may write`)
  }
  db.exec('PRAGMA locking_mode = EXCLUSIVE')
  try {
    db.exec('PRAGMA journal_mode = WAL')
    db.exec('BEGIN EXCLUSIVE')
    db.exec('CREATE TABLE IF NOT EXISTS holder (since TEXT)')
    db.exec('COMMIT')
  } catch {
    db.close()
    throw new StartupError(`analytics: the data folder ${resolve(dir)} is in use by another process (another npm start?); stop it, or set ANALYTICS_DATA_DIR to another folder (or ANALYTICS=off)`)
  }
  return () => db.close()
}
