import { describe, expect, it } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

describe('stopWithNpm', () => {
  const child = join(import.meta.dir, '..', 'test', 'harness', 'npm-child.ts')
  const run = async (env: Record<string, string>) => {
    // bash stands for npm: it starts the process, waits until it says it is ready (a fifo), and is
    // gone; the process's output pipe ends when the process exits.
    const ready = join(mkdtempSync(join(tmpdir(), 'npm-child-')), 'ready')
    const script = `mkfifo "${ready}"; "${process.execPath}" "${child}" & read -r line < "${ready}"`
    const proc = Bun.spawn(['bash', '-c', script], { stdout: 'pipe', env: { PATH: process.env.PATH ?? '', READY_FIFO: ready, ...env } })
    return new Response(proc.stdout).text()
  }

  it('sends the process its own SIGTERM when the npm that started it is gone', async () => {
    expect(await run({ npm_lifecycle_event: 'start' })).toBe('started\nSIGTERM\n')
  })

  it('leaves a process npm did not start alone', async () => {
    expect(await run({})).toBe('started\nstill running\n')
  })
})
