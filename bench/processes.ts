// Starts the bench's child processes: the upstream emulator (its own process, a free port) and the gateways.
import { resolve } from 'node:path'
import { startGateway, testConfig, type GatewayProcess } from '../test/harness/gateway-process.ts'

const ROOT = resolve(import.meta.dir, '..')
const START_TIMEOUT_MS = 15_000

export interface EmulatorProcess {
  url: string
  baseUrl: string
  pid: number
  stop(): Promise<number>
}

// Bind port 0, note what the kernel gave, release it: emulator-main needs a concrete PORT.
export function pickFreePort(): number {
  const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response(null) })
  const port = probe.port
  probe.stop(true)
  if (port === undefined) throw new Error('could not pick a free port')
  return port
}

export async function startEmulatorProcess(): Promise<EmulatorProcess> {
  const port = pickFreePort()
  const proc = Bun.spawn([process.execPath, resolve(ROOT, 'test/harness/emulator-main.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', PORT: String(port) },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const stop = async () => {
    proc.kill('SIGTERM')
    return proc.exited
  }
  try {
    await withTimeout(waitForStdoutText(proc.stdout, 'emulator listening'), START_TIMEOUT_MS, 'emulator did not start')
  } catch (err) {
    proc.kill('SIGKILL')
    const stderr = await new Response(proc.stderr).text()
    throw new Error(`${err instanceof Error ? err.message : String(err)}: ${stderr.trim()}`)
  }
  return { url: `http://127.0.0.1:${port}`, baseUrl: `http://127.0.0.1:${port}/v1`, pid: proc.pid, stop }
}

// No timeout here: startGateway gives no handle to a gateway that never says 'listening', so a timeout would leak it.
// It does reject if the process exits first, which is how a bad config shows up.
export function startBenchGateway(upstreamBaseUrl: string, logLevel: 'info' | 'warn'): Promise<GatewayProcess> {
  return startGateway({ config: testConfig({ upstreamBaseUrl, server: { log_level: logLevel } }) })
}

// Reads until `needle` appears, then keeps draining in the background so the child never blocks on a full pipe.
async function waitForStdoutText(stream: ReadableStream<Uint8Array>, needle: string): Promise<void> {
  const reader = stream.getReader()
  const decoder = new TextDecoder()
  let seen = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`process exited before printing "${needle}"`)
    seen += decoder.decode(value, { stream: true })
    if (seen.includes(needle)) break
  }
  void drainReader(reader)
}

async function drainReader(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  try {
    while (!(await reader.read()).done) {
      // discard
    }
  } catch {
    // the child went away
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}
