// Usage pipeline bench: worker throughput (records/s into ClickHouse, server and embedded) and stream lag under a steady gateway load.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import Redis from 'ioredis'
import { connectClickHouse, openEmbeddedClickHouse, type ClickHouse } from '../analytics/clickhouse.ts'
import { hashKey } from '../gateway/auth.ts'
import { encodeUsage, RECORD_FIELD, USAGE_GROUP, USAGE_STREAM } from '../shared/usage-stream.ts'
import { startAnalytics } from '../test/harness/analytics-process.ts'
import { startClickHouse } from '../test/harness/clickhouse.ts'
import { startGateway } from '../test/harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../test/harness/redis.ts'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import { startEmulatorProcess } from './processes.ts'
import { summarizeLatencies } from './stats.ts'

const RECORDS = Number(process.env.PIPELINE_RECORDS ?? 50_000)
const LOAD_SECONDS = Number(process.env.PIPELINE_LOAD_SECONDS ?? 20)
const CONCURRENCY = 8
const KEY = 'sk-pipeline-bench'

async function storedCount(ch: ClickHouse): Promise<number> {
  const [r] = await ch.query<{ n: string }>('SELECT count() AS n FROM usage_raw')
  return Number(r?.n ?? 0)
}

async function waitStored(ch: ClickHouse, n: number, maxMs: number): Promise<number> {
  const start = performance.now()
  while ((await storedCount(ch).catch(() => 0)) < n) {
    if (performance.now() - start > maxMs) throw new Error(`only ${await storedCount(ch)} of ${n} records stored within ${maxMs} ms`)
    await Bun.sleep(20)
  }
  return performance.now() - start
}

// A backlog of RECORDS in the stream, then the worker started: how fast does it empty it?
async function throughput(redisServer: RedisServer, engine: 'server' | 'embedded') {
  const redis = new Redis(redisServer.url)
  await redis.flushall()
  for (let i = 0; i < RECORDS; i += 1000) {
    const p = redis.pipeline()
    for (let j = i; j < Math.min(RECORDS, i + 1000); j++) p.xadd(USAGE_STREAM, '*', RECORD_FIELD, encodeUsage(usageRecord()))
    await p.exec()
  }
  const dir = mkdtempSync(join(tmpdir(), 'pipeline-bench-'))
  const server = engine === 'server' ? await startClickHouse() : undefined
  const env: Record<string, string> = { REDIS_URL: redisServer.url, ANALYTICS_BATCH_SIZE: '5000', ANALYTICS_FLUSH_MS: '200', ANALYTICS_CONSUMER: `bench-${engine}` }
  if (server) env.CLICKHOUSE_URL = server.url
  else env.ANALYTICS_DATA_DIR = dir
  const worker = await startAnalytics(env)
  // Embedded ClickHouse belongs to the worker process; count through Redis acks instead.
  const ch = server ? connectClickHouse(server.url) : undefined
  const start = performance.now()
  if (ch) await waitStored(ch, RECORDS, 300_000)
  else {
    for (;;) {
      const groups = (await redis.xinfo('GROUPS', USAGE_STREAM)) as unknown[][]
      const info = Object.fromEntries((groups[0] ?? []).flatMap((v, i, a) => (i % 2 === 0 ? [[String(v), a[i + 1]]] : [])))
      if (Number(info.lag) === 0 && Number(info.pending) === 0) break
      if (performance.now() - start > 300_000) throw new Error('embedded worker did not drain the backlog')
      await Bun.sleep(20)
    }
  }
  const ms = performance.now() - start
  await worker.stop()
  await ch?.close()
  await server?.stop()
  if (!server) {
    const check = await openEmbeddedClickHouse(dir)
    const stored = await storedCount(check)
    await check.close()
    if (stored !== RECORDS) throw new Error(`embedded store has ${stored} of ${RECORDS}`)
  }
  rmSync(dir, { recursive: true, force: true })
  redis.disconnect()
  return { engine, records: RECORDS, seconds: ms / 1000, records_per_second: Math.round(RECORDS / (ms / 1000)) }
}

// The gateway under steady load with the worker running: how far behind is ClickHouse?
async function lagUnderLoad(redisServer: RedisServer) {
  const redis = new Redis(redisServer.url)
  await redis.flushall()
  const server = await startClickHouse()
  const emulator = await startEmulatorProcess()
  const gateway = await startGateway({
    config: {
      server: { log_level: 'warn' },
      providers: [{ provider_id: 'emu', name: 'emu', kind: 'openai-compatible', base_url: emulator.baseUrl, health_check: false, models: [{ name: 'm', upstream_model: 'emu-upstream', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }] }],
      clients: [{ client_id: 'bench', team_id: 'bench', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
    },
    env: { REDIS_URL: redisServer.url },
  })
  const worker = await startAnalytics({ REDIS_URL: redisServer.url, CLICKHOUSE_URL: server.url, ANALYTICS_CONSUMER: 'bench-lag' })
  const ch = connectClickHouse(server.url)
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'Say hello.' }] })
  let sent = 0
  let running = true
  const lags: number[] = []
  const sampler = (async () => {
    while (running) {
      const groups = (await redis.xinfo('GROUPS', USAGE_STREAM).catch(() => [])) as unknown[][]
      for (const g of groups) {
        const info = Object.fromEntries(g.flatMap((v, i, a) => (i % 2 === 0 ? [[String(v), a[i + 1]]] : [])))
        if (info.name === USAGE_GROUP) lags.push(Number(info.lag ?? 0) + Number(info.pending ?? 0))
      }
      await Bun.sleep(250)
    }
  })()
  const deadline = performance.now() + LOAD_SECONDS * 1000
  const loop = async () => {
    while (performance.now() < deadline) {
      const res = await fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body })
      await res.arrayBuffer()
      sent++
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, loop))
  const stopped = performance.now()
  const drainMs = await waitStored(ch, sent, 120_000)
  running = false
  await sampler
  const result = {
    seconds: LOAD_SECONDS,
    requests: sent,
    requests_per_second: Math.round(sent / LOAD_SECONDS),
    // Records appended but not yet stored, sampled every 250 ms during the load.
    lag_records: summarizeLatencies(lags),
    drained_after_load_ms: Math.round(drainMs),
    stored_at_end: await storedCount(ch),
  }
  void stopped
  await gateway.stop()
  await worker.stop()
  await emulator.stop()
  await ch.close()
  await server.stop()
  redis.disconnect()
  return result
}

const redisServer = await startRedis()
try {
  const results = { ran_at: new Date().toISOString(), throughput: [await throughput(redisServer, 'server'), await throughput(redisServer, 'embedded')], lag: await lagUnderLoad(redisServer) }
  for (const t of results.throughput) process.stdout.write(`worker throughput, ${t.engine} ClickHouse: ${t.records} records in ${t.seconds.toFixed(2)} s = ${t.records_per_second} records/s\n`)
  const l = results.lag
  process.stdout.write(
    `lag under load: ${l.requests} requests in ${l.seconds} s (${l.requests_per_second}/s, c=${CONCURRENCY}); records not yet in ClickHouse p50 ${l.lag_records.p50}, p95 ${l.lag_records.p95}, max ${l.lag_records.max}; all stored ${l.drained_after_load_ms} ms after the load stopped (${l.stored_at_end} rows)\n`,
  )
  const dir = resolve(import.meta.dir, 'results')
  mkdirSync(dir, { recursive: true })
  writeFileSync(resolve(dir, 'pipeline.json'), `${JSON.stringify(results, null, 2)}\n`)
} finally {
  await redisServer.stop()
}
