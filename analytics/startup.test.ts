import { afterAll, describe, expect, it } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkPortFree, lockDataDir, StartupError } from './startup.ts'

const dirs: string[] = []
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'startup-'))
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe('the analytics worker refuses to start, in one line, when', () => {
  it('its port is in use, naming the port and ANALYTICS_PORT', () => {
    const busy = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
    try {
      const err = (() => {
        try {
          checkPortFree('127.0.0.1', busy.port)
        } catch (e) {
          return e
        }
      })()
      expect(err).toBeInstanceOf(StartupError)
      expect((err as Error).message).toBe(`analytics: cannot listen on 127.0.0.1:${busy.port}: the port is in use by another process (another npm start?); stop it, or set ANALYTICS_PORT (0 picks a free port)`)
    } finally {
      busy.stop(true)
    }
    expect(() => checkPortFree('127.0.0.1', busy.port)).not.toThrow()
  })

  it('another live process holds the data folder, naming the folder and ANALYTICS_DATA_DIR', async () => {
    const dir = tmp()
    const other = Bun.spawn(['sleep', '30'])
    try {
      writeFileSync(join(dir, 'gateway.lock'), String(other.pid))
      expect(() => lockDataDir(dir)).toThrow(StartupError)
      expect(() => lockDataDir(dir)).toThrow(`analytics: the data folder ${dir} is in use by process ${other.pid} (another npm start?); stop it, or set ANALYTICS_DATA_DIR to another folder (or ANALYTICS=off)`)
    } finally {
      other.kill()
      await other.exited
    }
    // Its process gone, the lock is taken over; released, the file goes.
    const release = lockDataDir(dir)
    expect(readFileSync(join(dir, 'gateway.lock'), 'utf8')).toBe(String(process.pid))
    release()
    expect(existsSync(join(dir, 'gateway.lock'))).toBe(false)
  })
})
