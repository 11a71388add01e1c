// The quota store contract against a real redis-server.
import { afterAll, beforeAll } from 'bun:test'
import Redis from 'ioredis'
import { RedisQuotaStore } from '../../gateway/quota/redis-store.ts'
import { describeQuotaStore } from '../../gateway/quota/store.contract.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

let server: RedisServer
let client: Redis
let n = 0

beforeAll(async () => {
  server = await startRedis()
  client = new Redis(server.url, { lazyConnect: false })
})

afterAll(async () => {
  client?.disconnect()
  await server?.stop()
})

describeQuotaStore('redis', async () => ({ store: new RedisQuotaStore(client), entity: () => `user:e${++n}` }))
