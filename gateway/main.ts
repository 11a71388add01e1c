// Gateway process: load config, listen, drain on SIGTERM.
import { ConfigError, loadConfig } from '../shared/config/load.ts'
import { createLogger } from '../shared/log.ts'
import { createApp } from './app.ts'
import { buildSnapshot, ConfigStore } from './config-store.ts'
import { logUsageSink } from './usage.ts'

const DRAIN_MS = 10_000

function start(): void {
  let store: ConfigStore
  let config
  try {
    config = loadConfig(process.env)
    store = new ConfigStore(buildSnapshot(config))
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`${err.message}\n`)
    process.exit(78)
  }
  const log = createLogger(config.logLevel)
  for (const [provider, reason] of config.unavailable) log.warn('provider unavailable', { provider, reason })

  const { server: settings } = config.file
  const app = createApp({ store, log, usage: logUsageSink(log) })
  app.listen({
    port: settings.port,
    hostname: settings.host,
    // Our own check answers 413 in OpenAI's shape; this is only the hard stop above it.
    maxRequestBodySize: settings.max_body_bytes * 2,
    idleTimeout: 0,
  })
  const server = app.server
  if (!server) throw new Error('server did not start')
  log.lifecycle('listening', { port: server.port, host: settings.host, config: config.source })

  const shutdown = (signal: string) => {
    log.lifecycle('draining', { signal, pending_requests: server.pendingRequests })
    // stop(false) refuses new connections and resolves once in-flight requests have finished.
    const force = setTimeout(() => process.exit(0), DRAIN_MS)
    void server.stop(false).then(() => {
      clearTimeout(force)
      process.exit(0)
    })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
}

start()
