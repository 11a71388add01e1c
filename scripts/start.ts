// npm start: the gateway; without REDIS_URL, the analytics worker runs in the same process and gets usage records directly (ANALYTICS=off: log lines only).
import { loadWorkerConfig } from '../analytics/config.ts'
import { startWorker } from '../analytics/worker.ts'
import { runGateway } from '../gateway/server.ts'

await runGateway({
  localUsage: async (log) => {
    if (process.env.ANALYTICS === 'off') return undefined
    const config = loadWorkerConfig(process.env)
    const worker = await startWorker(config, log, 'in-process')
    log.lifecycle('analytics listening', { port: worker.port, clickhouse: config.clickhouseUrl ? 'server' : `embedded (${config.dataDir})`, mode: 'in-process' })
    const sink = worker.sink
    if (!sink) throw new Error('in-process worker without a sink')
    return { sink, stop: (ms) => worker.stop(ms) }
  },
})
