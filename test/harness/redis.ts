// Starts a real redis-server on a free port with a temporary data folder, and stops it.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LineLog } from './line-log.ts'

export interface RedisServer {
  url: string
  port: number
  stop(): Promise<void>
  // Kills the process and starts a new one on the same port: data and script cache are gone.
  restart(): Promise<void>
  // Kills the process; `resume` starts it again on the same port. An outage of the caller's length.
  stopTemporarily(): Promise<{ resume(): Promise<void> }>
}

export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-test-'))
  const port = freePort()
  let proc = await spawn(port, dir)
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async restart() {
      proc.kill('SIGKILL')
      await proc.exited
      proc = await spawn(port, dir)
    },
    async stopTemporarily() {
      proc.kill('SIGKILL')
      await proc.exited
      return {
        resume: async () => {
          proc = await spawn(port, dir)
        },
      }
    },
    async stop() {
      proc.kill('SIGTERM')
      await proc.exited
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function spawn(port: number, dir: string) {
  const proc = Bun.spawn(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'notice'], {
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const log = new LineLog(proc.stdout)
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([
    log.waitFor((l) => l.includes('Ready to accept connections')),
    proc.exited.then((code) => {
      throw new Error(`redis-server exited with ${code}`)
    }),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('redis-server not ready within 10 s')), 10_000)
    }),
  ]).finally(() => clearTimeout(timer))
  return proc
}

function freePort(): number {
  const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response(null) })
  const port = probe.port ?? 0
  probe.stop(true)
  return port
}
