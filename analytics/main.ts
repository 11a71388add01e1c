// Analytics worker process (npm run analytics): drains the usage stream into ClickHouse, keeps the daily rollups, serves cost queries.
import { createLogger } from '../shared/log.ts'
import { loadWorkerConfig } from './config.ts'
import { startWorker } from './worker.ts'
import { StartupError } from './startup.ts'
import { stopWithNpm } from '../shared/parent-watch.ts'

// npm exits on SIGTERM without passing it on: stop with it.
stopWithNpm()

const config = loadWorkerConfig(process.env)
const log = createLogger(config.logLevel)
// A drain that cannot go on exits the process, so a supervisor restarts it.
let worker
try {
  worker = await startWorker(config, log, 'stream', () => process.exit(1))
} catch (err) {
  if (!(err instanceof StartupError)) throw err
  process.stderr.write(`${err.message}\n`)
  process.exit(78)
}
log.lifecycle('analytics listening', { port: worker.port, clickhouse: config.clickhouseUrl ? 'server' : `embedded (${config.dataDir})`, consumer: config.consumer })

let stopping = false
const shutdown = (signal: string) => {
  if (stopping) return
  stopping = true
  log.lifecycle('analytics draining', { signal })
  // Redis or ClickHouse down must not keep the process from exiting: what is not written stays
  // pending in the stream for the next worker.
  const force = setTimeout(() => process.exit(0), 15_000)
  void worker.stop(10_000).finally(() => {
    clearTimeout(force)
    process.exit(0)
  })
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
