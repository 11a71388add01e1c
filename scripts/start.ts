// npm start: the gateway; without REDIS_URL, the analytics worker runs in the same process and gets usage records directly (ANALYTICS=off: log lines only).
import { loadWorkerConfig } from '../analytics/config.ts'
import { startWorker } from '../analytics/worker.ts'
import { runGateway, type LocalUsage } from '../gateway/server.ts'
import { launch } from '../gateway/supervisor.ts'
import type { Logger } from '../shared/log.ts'

async function localUsage(log: Logger): Promise<LocalUsage | undefined> {
  if (process.env.ANALYTICS === 'off') return undefined
  const config = loadWorkerConfig(process.env)
  const worker = await startWorker(config, log, 'in-process')
  log.lifecycle('analytics listening', { port: worker.port, clickhouse: config.clickhouseUrl ? 'server' : `embedded (${config.dataDir})`, mode: 'in-process' })
  // The console's analytics calls (/admin/analytics) go to this worker unless told otherwise.
  process.env.ANALYTICS_URL ||= `http://127.0.0.1:${worker.port}`
  const sink = worker.sink
  if (!sink) throw new Error('in-process worker without a sink')
  return { sink, stop: (ms) => worker.stop(ms) }
}

await launch(import.meta.path, () => runGateway({ localUsage }))
