// Analytics worker process (npm run analytics): drains the usage stream into ClickHouse, keeps the daily rollups, serves cost queries.
import { createLogger } from '../shared/log.ts'
import { loadWorkerConfig } from './config.ts'
import { startWorker } from './worker.ts'

const config = loadWorkerConfig(process.env)
const log = createLogger(config.logLevel)
const worker = await startWorker(config, log, 'stream')
log.lifecycle('analytics listening', { port: worker.port, clickhouse: config.clickhouseUrl ? 'server' : `embedded (${config.dataDir})`, consumer: config.consumer })

let stopping = false
const shutdown = (signal: string) => {
  if (stopping) return
  stopping = true
  log.lifecycle('analytics draining', { signal })
  void worker.stop().then(() => process.exit(0))
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
