import { afterAll, describe, expect, it } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
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

  it('another live process holds the data folder, naming the folder and ANALYTICS_DATA_DIR; free again when it is gone', async () => {
    const dir = tmp()
    const other = Bun.spawn([process.execPath, join(import.meta.dir, '..', 'test', 'harness', 'lock-holder.ts'), dir], { stdout: 'pipe' })
    const reader = other.stdout.getReader()
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('locked\n')
    try {
      expect(() => lockDataDir(dir)).toThrow(StartupError)
      expect(() => lockDataDir(dir)).toThrow(`analytics: the data folder ${dir} is in use by another process (another npm start?); stop it, or set ANALYTICS_DATA_DIR to another folder (or ANALYTICS=off)`)
    } finally {
      other.kill('SIGKILL')
      await other.exited
    }
    // Its process gone (killed: no release ran), the folder is free.
    const release = lockDataDir(dir)
    expect(() => lockDataDir(dir)).toThrow(StartupError)
    release()
    lockDataDir(dir)()
  })
})
