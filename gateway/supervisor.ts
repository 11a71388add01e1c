// How the gateway starts: as one worker process when it can (the worker itself), else a supervisor that runs server.workers of them on one port (SO_REUSEPORT), with the upstream concurrency the gateway needs (Bun reads it only from the environment, at start), restarts a worker that dies, and passes SIGTERM, SIGINT and SIGHUP on to all.
import { readFileSync } from 'node:fs'
import { ConfigError, loadConfig } from '../shared/config/load.ts'
import type { Config } from '../shared/config/load.ts'
import { createLogger, type Logger } from '../shared/log.ts'
import { defaultRequestCap } from './connection.ts'
import { concatBytes } from '../shared/bytes.ts'

// Bun's fetch runs at most this many requests at once per process (BUN_CONFIG_MAX_HTTP_REQUESTS,
// default 256) and queues the rest, inside the provider's deadline: the gateway sets it so that
// every request it admits gets its call at once, plus room for health checks.
export const UPSTREAM_HEADROOM = 256
const BUN_MAX_HTTP_REQUESTS = 65_535

// Exit codes that a restart cannot fix: the config (78, EX_CONFIG) and a port in use (98).
export const EXIT_CONFIG = 78
export const EXIT_PORT_IN_USE = 98
const FATAL = new Set([EXIT_CONFIG, EXIT_PORT_IN_USE])

// A worker that dies is restarted after this long, doubling while it keeps dying soon after start.
const RESTART_MIN_MS = 500
const RESTART_MAX_MS = 30_000
// A worker that ran this long is healthy again: its next restart waits the minimum.
const HEALTHY_AFTER_MS = 60_000
// How long the workers' last lines get to be written out once they all exited.
const FORWARD_AT_EXIT_MS = 5_000

export interface LaunchPlan {
  workers: number
  // The Bun fetch concurrency each worker runs with.
  upstreamRequests: number
}

// The request cap a worker enforces and the fetch concurrency that never queues below it.
export function launchPlan(config: Config, limitsText: () => string): LaunchPlan {
  const requestCap = config.file.server.max_concurrent_requests ?? defaultRequestCap(limitsText)
  return { workers: config.file.server.workers, upstreamRequests: Math.min(BUN_MAX_HTTP_REQUESTS, requestCap + UPSTREAM_HEADROOM) }
}

// The fetch concurrency this process runs with (Bun's default when the variable is unset).
export function upstreamRequestsOf(env: NodeJS.ProcessEnv): number {
  const n = Number(env.BUN_CONFIG_MAX_HTTP_REQUESTS)
  return Number.isInteger(n) && n > 0 ? Math.min(n, BUN_MAX_HTTP_REQUESTS) : 256
}

export const isWorker = (env: NodeJS.ProcessEnv) => env.GATEWAY_WORKER_ID !== undefined

// Runs the gateway: in this process (run) when it is a worker, or one worker whose environment
// already allows the concurrency it needs; else as the supervisor of workers started from entry.
export async function launch(entry: string, run: () => Promise<void>): Promise<void> {
  if (isWorker(process.env)) return run()
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`${err.message}\n`)
    process.exit(EXIT_CONFIG)
  }
  const plan = launchPlan(config, () => readFileSync('/proc/self/limits', 'utf8'))
  if (plan.workers === 1 && upstreamRequestsOf(process.env) >= plan.upstreamRequests) return run()
  const log = createLogger(config.logLevel)
  const port = plan.workers > 1 ? await sharedPort(config.file.server.host, config.file.server.port) : config.file.server.port
  supervise(entry, plan, port, log)
}

// Several workers share one port: it must be free now (one supervisor per port), and a port of 0
// becomes one free port for all of them.
async function sharedPort(host: string, port: number): Promise<number> {
  try {
    const probe = Bun.listen({ hostname: host, port, socket: { data() {} } })
    const chosen = probe.port
    probe.stop(true)
    return chosen
  } catch (err) {
    if ((err as { code?: string }).code !== 'EADDRINUSE') throw err
    process.stderr.write(`${portInUse(host, port)}\n`)
    process.exit(EXIT_PORT_IN_USE)
  }
}

export function portInUse(host: string, port: number): string {
  return `cannot listen on ${host}:${port}: the port is in use by another process (another gateway?); stop it, or set PORT / server.port`
}

function supervise(entry: string, plan: LaunchPlan, port: number, log: Logger): void {
  const workers = new Map<number, Bun.Subprocess>()
  // Output still being copied: a worker's last lines (its records at shutdown) go out before this
  // process exits.
  const forwarding = new Set<Promise<void>>()
  let stopping = false
  let exitCode = 0
  // Bounded: a reader that never takes them must not keep the process.
  const exit = () => {
    setTimeout(() => process.exit(exitCode), FORWARD_AT_EXIT_MS).unref()
    void Promise.all([...forwarding]).then(() => process.exit(exitCode))
  }
  const env = (id: number) => ({
    ...process.env,
    GATEWAY_WORKER_ID: String(id),
    BUN_CONFIG_MAX_HTTP_REQUESTS: String(plan.upstreamRequests),
    PORT: String(port),
    ...(plan.workers > 1 ? { GATEWAY_REUSE_PORT: '1' } : {}),
  })
  const start = (id: number, delayMs: number) => {
    const startedAt = Date.now()
    // Several workers' lines go through here whole: writes to a shared pipe interleave past 4 KiB.
    const child = Bun.spawn([process.execPath, entry], {
      env: env(id),
      stdio: ['ignore', plan.workers > 1 ? 'pipe' : 'inherit', 'inherit'],
      onExit: (_p, code, signal) => {
        workers.delete(id)
        const status = code ?? 128
        if (stopping) {
          exitCode = Math.max(exitCode, status)
          if (workers.size === 0) exit()
          return
        }
        if (FATAL.has(status)) {
          // The config or the port: every worker would fail the same way.
          log.error('worker cannot start; stopping', { worker: id, exit_code: status })
          stopAll('SIGTERM', status)
          return
        }
        const ranMs = Date.now() - startedAt
        const next = ranMs >= HEALTHY_AFTER_MS ? RESTART_MIN_MS : Math.min(RESTART_MAX_MS, Math.max(RESTART_MIN_MS, delayMs * 2))
        log.error('worker died; restarting', { worker: id, exit_code: code, signal, restart_in_ms: next })
        setTimeout(() => {
          if (!stopping) start(id, next)
        }, next)
      },
    })
    workers.set(id, child)
    if (child.stdout instanceof ReadableStream) {
      const copied = forwardLines(child.stdout).catch(() => undefined)
      forwarding.add(copied)
      void copied.then(() => forwarding.delete(copied))
    }
  }
  const stopAll = (signal: NodeJS.Signals, code = 0) => {
    if (stopping) return
    stopping = true
    exitCode = code
    if (workers.size === 0) exit()
    for (const w of workers.values()) w.kill(signal)
  }
  process.on('SIGTERM', () => stopAll('SIGTERM'))
  process.on('SIGINT', () => stopAll('SIGINT'))
  process.on('SIGHUP', () => {
    for (const w of workers.values()) w.kill('SIGHUP')
  })
  log.lifecycle('supervising', { workers: plan.workers, port, upstream_requests: plan.upstreamRequests })
  for (let id = 0; id < plan.workers; id++) start(id, RESTART_MIN_MS)
}

// Copies a worker's output to this process's, whole lines at a time.
async function forwardLines(from: ReadableStream<Uint8Array>): Promise<void> {
  let held: Uint8Array | undefined
  for await (const chunk of from) {
    const bytes = held ? concatBytes([held, chunk]) : chunk
    const end = bytes.lastIndexOf(0x0a) + 1
    if (end > 0) await written(bytes.subarray(0, end))
    held = end < bytes.length ? bytes.slice(end) : undefined
  }
  if (held) await written(held)
}

// Resolves once stdout took the bytes (a write still queued on a pipe is lost at exit).
function written(bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => process.stdout.write(bytes, () => resolve()))
}

// A worker whose supervisor is gone (killed outright) drains and exits instead of living on.
export function watchSupervisor(onGone: () => void): void {
  if (!isWorker(process.env)) return
  const parent = process.ppid
  setInterval(() => {
    if (process.ppid !== parent) onGone()
  }, 1000).unref()
}
