// npm start: the gateway; without REDIS_URL, the analytics worker runs in the same process and gets usage records directly (ANALYTICS=off: log lines only).
import { loadWorkerConfig } from '../analytics/config.ts'
import { startWorker } from '../analytics/worker.ts'
import { StartupError } from '../analytics/startup.ts'
import { runGateway, type LocalUsage } from '../gateway/server.ts'
import { launch } from '../gateway/supervisor.ts'
import type { Logger } from '../shared/log.ts'
import { loadConfig } from '../shared/config/load.ts'
import { stopWithNpm } from '../shared/parent-watch.ts'

// npm exits on SIGTERM without passing it on: stop with it.
stopWithNpm()

async function localUsage(log: Logger): Promise<LocalUsage | undefined> {
  if (process.env.ANALYTICS === 'off') return undefined
  const config = loadWorkerConfig(process.env)
  let worker
  try {
    worker = await startWorker(config, log, 'in-process')
  } catch (err) {
    if (!(err instanceof StartupError)) throw err
    // One line naming the port or folder and the setting; a restart would not help (EX_CONFIG).
    process.stderr.write(`${err.message}\n`)
    process.exit(78)
  }
  log.lifecycle('analytics listening', { port: worker.port, clickhouse: config.clickhouseUrl ? 'server' : `embedded (${config.dataDir})`, mode: 'in-process' })
  // The console's analytics calls (/admin/analytics) go to this worker unless told otherwise.
  process.env.ANALYTICS_URL ||= `http://127.0.0.1:${worker.port}`
  const sink = worker.sink
  if (!sink) throw new Error('in-process worker without a sink')
  return { sink, stop: (ms) => worker.stop(ms) }
}

// The demo providers of the sample config point at the bundled emulator (127.0.0.1:4010): when the
// config does and nothing listens there, it starts with the gateway, so the README's first request
// works with nothing else running (DEMO_EMULATOR=off: never).
async function demoEmulator(): Promise<void> {
  if (process.env.DEMO_EMULATOR === 'off') return
  let wanted = false
  try {
    wanted = loadConfig(process.env).file.providers.some((p) => /^https?:\/\/(127\.0\.0\.1|localhost):4010(\/|$)/.test(p.base_url))
  } catch {
    // The gateway says what is wrong with the config.
    return
  }
  if (!wanted) return
  const busy = await fetch('http://127.0.0.1:4010/__emulator/stats', { signal: AbortSignal.timeout(300) }).then(() => true, () => false)
  if (busy) return
  const { startEmulator } = await import('../test/harness/emulator.ts')
  try {
    startEmulator({ port: 4010, recordLimit: 100 })
    process.stdout.write(`${JSON.stringify({ level: 'info', msg: 'demo emulator listening', port: 4010, why: 'the config has providers at 127.0.0.1:4010; DEMO_EMULATOR=off to not start it' })}\n`)
  } catch {
    // Something else holds the port: the demo providers answer whatever it is.
  }
}

await launch(import.meta.path, async () => {
  await demoEmulator()
  return runGateway({ localUsage })
})
