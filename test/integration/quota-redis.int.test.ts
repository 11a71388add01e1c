// The quota store contract against a real redis-server, single node and a 3-master Cluster.
import { afterAll, beforeAll } from 'bun:test'
import { RedisQuotaStore } from '../../gateway/quota/redis-store.ts'
import { describeQuotaStore } from '../../gateway/quota/store.contract.ts'
import { connectRedis, type RedisClient } from '../../shared/redis.ts'
import { startRedis, startRedisCluster, type RedisCluster, type RedisServer } from '../harness/redis.ts'

let server: RedisServer
let cluster: RedisCluster
let single: RedisClient
let clustered: RedisClient
let n = 0

async function connect(url: string): Promise<RedisClient> {
  const client = connectRedis(url, 2000)
  await new Promise((resolve) => client.once('ready', resolve))
  return client
}

beforeAll(async () => {
  ;[server, cluster] = await Promise.all([startRedis(), startRedisCluster()])
  ;[single, clustered] = await Promise.all([connect(server.url), connect(cluster.url)])
})

afterAll(async () => {
  single?.disconnect()
  clustered?.disconnect()
  await Promise.all([server?.stop(), cluster?.stop()])
})

describeQuotaStore('redis', async () => ({ store: new RedisQuotaStore(single), entity: () => `user:e${++n}` }))
// Entities land in different slots (and nodes); every script stays within one.
describeQuotaStore('redis cluster', async () => ({ store: new RedisQuotaStore(clustered), entity: () => `team:e${++n}` }))
