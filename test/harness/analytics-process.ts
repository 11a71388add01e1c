// Starts a real analytics worker process (bun analytics/main.ts) for tests and bench, and kills or stops it.
import { resolve } from 'node:path'
import { jsonLine, LineLog } from './line-log.ts'

const ROOT = resolve(import.meta.dir, '../..')
const START_TIMEOUT_MS = 20_000

export interface AnalyticsProcess {
  url: string
  pid: number
  readonly lines: string[]
  waitForLog(predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>
  // SIGTERM drains (the batch in hand is written); SIGKILL is a crash.
  stop(signal?: NodeJS.Signals): Promise<number>
}

// env: REDIS_URL and CLICKHOUSE_URL at least; ANALYTICS_PORT defaults to a free port.
export async function startAnalytics(env: Record<string, string>): Promise<AnalyticsProcess> {
  const proc = Bun.spawn([process.execPath, resolve(ROOT, 'analytics/main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ANALYTICS_PORT: '0', LOG_LEVEL: 'info', ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const log = new LineLog(proc.stdout)
  const stderr = new Response(proc.stderr).text()
  const waitForLog = async (predicate: (l: Record<string, unknown>) => boolean) => JSON.parse(await log.waitFor(jsonLine(predicate))) as Record<string, unknown>
  let timer: ReturnType<typeof setTimeout> | undefined
  const listening = await Promise.race([
    waitForLog((l) => l.msg === 'analytics listening'),
    proc.exited.then(async (code) => {
      throw new Error(`analytics worker exited with ${code} before listening: ${await stderr}`)
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        proc.kill('SIGKILL')
        reject(new Error(`analytics worker did not start within ${START_TIMEOUT_MS} ms`))
      }, START_TIMEOUT_MS)
    }),
  ]).finally(() => clearTimeout(timer))
  return {
    url: `http://127.0.0.1:${listening.port}`,
    pid: proc.pid,
    lines: log.lines,
    waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      proc.kill(signal)
      return proc.exited
    },
  }
}
