// Starts one of the project's Bun processes (gateway, analytics worker) for tests and bench, and waits for its JSON "ready" log line.
import { resolve } from 'node:path'
import { jsonLine, LineLog } from './line-log.ts'

const ROOT = resolve(import.meta.dir, '../..')
const START_TIMEOUT_MS = 20_000

export interface ServiceProcess {
  pid: number
  // Every stdout line so far (JSON logs).
  readonly lines: string[]
  // The ready line, parsed.
  ready: Record<string, unknown>
  // Resolves with the first log line (parsed) satisfying the predicate, past or future.
  waitForLog(predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>
  // Sends the signal (SIGTERM drains, SIGKILL is a crash) and resolves with the exit code.
  stop(signal?: NodeJS.Signals): Promise<number>
}

// entry: a path from the repository root; name says which process in errors. openFiles: the
// process's open-file limit (ulimit -n), to see it run out of descriptors.
export async function startService(entry: string, env: Record<string, string>, readyMsg: string, name: string, openFiles?: number): Promise<ServiceProcess> {
  const command = [process.execPath, resolve(ROOT, entry)]
  const argv = openFiles === undefined ? command : ['bash', '-c', `ulimit -n ${openFiles} && exec "$0" "$@"`, ...command]
  const proc = Bun.spawn(argv, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdout: 'pipe', stderr: 'pipe' })
  const log = new LineLog(proc.stdout)
  const stderr = new Response(proc.stderr).text()
  const waitForLog = async (predicate: (l: Record<string, unknown>) => boolean) => JSON.parse(await log.waitFor(jsonLine(predicate))) as Record<string, unknown>
  let timer: ReturnType<typeof setTimeout> | undefined
  const ready = await Promise.race([
    waitForLog((l) => l.msg === readyMsg),
    proc.exited.then(async (code) => {
      throw new Error(`${name} exited with ${code} before "${readyMsg}": ${await stderr}`)
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        proc.kill('SIGKILL')
        reject(new Error(`${name} did not log "${readyMsg}" within ${START_TIMEOUT_MS} ms (log_level silent?)`))
      }, START_TIMEOUT_MS)
    }),
  ]).finally(() => clearTimeout(timer))
  return {
    pid: proc.pid,
    lines: log.lines,
    ready,
    waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      proc.kill(signal)
      return proc.exited
    },
  }
}
