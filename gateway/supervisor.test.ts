import { describe, expect, it } from 'bun:test'
import { ConfigError, parseConfig } from '../shared/config/load.ts'
import { launchPlan, UPSTREAM_HEADROOM, upstreamRequestsOf } from './supervisor.ts'

import { testConfig } from '../test/harness/gateway-process.ts'

const text = (server: Record<string, unknown> = {}) => JSON.stringify(testConfig({ upstreamBaseUrl: 'http://127.0.0.1:9', server }))
const limits = (soft: number) => () => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                ${soft}                files\n`

describe('launchPlan', () => {
  it('gives Bun fetch room for every request the worker admits, plus health checks', () => {
    expect(launchPlan(parseConfig(text({ max_concurrent_requests: 2000 }), 'c.json'), limits(1024))).toEqual({ workers: 1, upstreamRequests: 2000 + UPSTREAM_HEADROOM })
    // Without a cap, the open-file limit's: half of it less 64.
    expect(launchPlan(parseConfig(text(), 'c.json'), limits(20_000)).upstreamRequests).toBe((20_000 - 64) / 2 + UPSTREAM_HEADROOM)
    // Bun's own ceiling.
    expect(launchPlan(parseConfig(text({ max_concurrent_requests: 1_000_000 }), 'c.json'), limits(1024)).upstreamRequests).toBe(65_535)
  })

  it('takes GATEWAY_WORKERS over server.workers, and refuses more than one without Redis', () => {
    expect(launchPlan(parseConfig(text({ workers: 2 }), 'c.json', { REDIS_URL: 'redis://127.0.0.1:6379' }), limits(1024)).workers).toBe(2)
    expect(launchPlan(parseConfig(text(), 'c.json', { GATEWAY_WORKERS: '3', REDIS_URL: 'redis://127.0.0.1:6379' }), limits(1024)).workers).toBe(3)
    expect(() => parseConfig(text({ workers: 2 }), 'c.json')).toThrow(ConfigError)
    expect(() => parseConfig(text(), 'c.json', { GATEWAY_WORKERS: 'two', REDIS_URL: 'redis://127.0.0.1:6379' })).toThrow(/workers.*\(from GATEWAY_WORKERS\)/)
  })
})

describe('upstreamRequestsOf', () => {
  it("reads the environment's fetch concurrency, Bun's default 256 when unset or unreadable", () => {
    expect(upstreamRequestsOf({ BUN_CONFIG_MAX_HTTP_REQUESTS: '4096' })).toBe(4096)
    expect(upstreamRequestsOf({})).toBe(256)
    expect(upstreamRequestsOf({ BUN_CONFIG_MAX_HTTP_REQUESTS: 'lots' })).toBe(256)
  })
})
