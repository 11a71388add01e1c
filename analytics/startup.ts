// What keeps the analytics worker from starting, said in one line that names the port or folder and the setting that changes it (no stack trace): a port in use, a data folder another process holds.
import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs'
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
    if ((err as { code?: string }).code !== 'EADDRINUSE') throw err
    throw new StartupError(`analytics: cannot listen on ${host}:${port}: the port is in use by another process (another npm start?); stop it, or set ANALYTICS_PORT (0 picks a free port)`)
  }
}

// Embedded ClickHouse allows one process per data folder: a lock file with this process's id, taken
// before the engine opens (which would otherwise fail with its own trace). A lock whose process is
// gone is taken over. Returns the release.
export function lockDataDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true })
  const path = join(dir, 'gateway.lock')
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fd = openSync(path, 'wx')
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => rmSync(path, { force: true })
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err
      const holder = Number(readFileSync(path, 'utf8').trim())
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
        throw new StartupError(`analytics: the data folder ${resolve(dir)} is in use by process ${holder} (another npm start?); stop it, or set ANALYTICS_DATA_DIR to another folder (or ANALYTICS=off)`)
      }
      rmSync(path, { force: true })
    }
  }
  throw new StartupError(`analytics: cannot lock the data folder ${resolve(dir)}; set ANALYTICS_DATA_DIR to another folder`)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM'
  }
}
