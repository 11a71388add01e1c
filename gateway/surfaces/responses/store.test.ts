import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { connectRedis, type RedisClient } from '../../../shared/redis.ts'
import { startRedis, type RedisServer } from '../../../test/harness/redis.ts'
import { MemoryResponseStore, RedisResponseStore, type ResponseStore } from './store.ts'

const response = (id: string, text = 'hello') => ({ id, items: [{ role: 'user', content: text }], output: [{ id: `msg_${id}`, type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] }] })

function contract(name: string, make: () => ResponseStore) {
  describe(`${name} response store`, () => {
    it('finds a response by id and by the id of an item it holds, for its owner only', async () => {
      const store = make()
      await store.put('client-a', response('resp_1'))
      expect(await store.get('client-a', 'resp_1')).toEqual(response('resp_1'))
      expect(await store.get('client-a', 'item:msg_resp_1')).toEqual(response('resp_1'))
      expect(await store.get('client-b', 'resp_1')).toBeUndefined()
      expect(await store.get('client-b', 'item:msg_resp_1')).toBeUndefined()
      expect(await store.get('client-a', 'resp_2')).toBeUndefined()
    })

    it('does not keep a response larger than the bound', async () => {
      const store = make()
      await store.put('client-a', response('resp_big', 'x'.repeat(2000)))
      expect(await store.get('client-a', 'resp_big')).toBeUndefined()
    })
  })
}

contract('memory', () => new MemoryResponseStore({ ttlMs: 60_000, maxResponseBytes: 1000, maxBytes: 1 << 20 }))

let redis: RedisServer
let client: RedisClient
beforeAll(async () => {
  redis = await startRedis()
  client = connectRedis(redis.url, 2000)
  await new Promise((resolve) => (client.status === 'ready' ? resolve(undefined) : client.once('ready', resolve)))
})
afterAll(async () => {
  client?.disconnect()
  await redis?.stop()
})
contract('Redis', () => new RedisResponseStore(client, { ttlMs: 60_000, maxResponseBytes: 1000, maxBytes: 0 }))

describe('memory response store bounds', () => {
  it('forgets a response past its TTL', async () => {
    let now = 0
    const store = new MemoryResponseStore({ ttlMs: 1000, maxResponseBytes: 10_000, maxBytes: 1 << 20 }, () => now)
    await store.put('a', response('resp_1'))
    now = 999
    expect(await store.get('a', 'resp_1')).toBeDefined()
    now = 1000
    expect(await store.get('a', 'resp_1')).toBeUndefined()
  })

  it('holds at most its bytes, dropping the least recently used first', async () => {
    const store = new MemoryResponseStore({ ttlMs: 60_000, maxResponseBytes: 10_000, maxBytes: 2_000 })
    for (let i = 0; i < 50; i++) {
      await store.put('a', response(`resp_${i}`))
      // The first stays in use, so it is never the least recently used.
      expect(await store.get('a', 'resp_0')).toBeDefined()
    }
    expect(store.bytes).toBeLessThanOrEqual(2_000)
    expect(await store.get('a', 'resp_49')).toBeDefined()
    expect(await store.get('a', 'resp_10')).toBeUndefined()
  })
})

describe('response store names', () => {
  it('keeps responses and items apart, whatever a provider calls its response', async () => {
    for (const store of [new MemoryResponseStore(), new RedisResponseStore(client)]) {
      await store.put('a', { id: 'item:Y', items: [], output: [{ id: 'Y', type: 'message' }] })
      // The item resolves to its response, one level only (no loop through a response named like an item).
      expect((await store.get('a', 'item:Y'))?.id).toBe('item:Y')
      expect(await store.get('a', 'item:none')).toBeUndefined()
    }
  })

  it('evicts a client over its share from its own oldest responses, not other clients\'', async () => {
    const store = new MemoryResponseStore({ ttlMs: 60_000, maxResponseBytes: 10_000, maxBytes: 1 << 20, maxOwnerBytes: 3_000 })
    await store.put('victim', response('resp_v'))
    for (let i = 0; i < 40; i++) await store.put('attacker', response(`resp_a${i}`, 'x'.repeat(500)))
    expect(await store.get('victim', 'resp_v')).toBeDefined()
    expect(await store.get('attacker', 'resp_a39')).toBeDefined()
    expect(await store.get('attacker', 'resp_a0')).toBeUndefined()
  })
})
