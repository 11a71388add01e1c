import { afterEach, describe, expect, it } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../shared/config/load.ts'
import { createLogger } from '../shared/log.ts'
import { startConfigReload, type ConfigReloader } from './config-reload.ts'
import { buildSnapshot, ConfigStore, type Snapshot } from './config-store.ts'

const config = (models: string[]) =>
  JSON.stringify({
    providers: [
      {
        provider_id: 'p',
        name: 'p',
        kind: 'openai-compatible',
        base_url: 'http://127.0.0.1:1/v1',
        models: models.map((name) => ({ name, cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 })),
      },
    ],
  })

let dir: string
let reloader: ConfigReloader | undefined

// `follow` stands in for the server's onSwap (breakers, tokenizer tables); it may throw or reject.
function setUp(follow?: (s: Snapshot) => void | Promise<void>) {
  dir = mkdtempSync(join(tmpdir(), 'reload-'))
  const path = join(dir, 'gateway.json')
  writeFileSync(path, config(['one']))
  const env = { GATEWAY_CONFIG: path }
  const store = new ConfigStore(buildSnapshot(loadConfig(env)))
  const lines: Array<Record<string, unknown>> = []
  const swaps: Snapshot[] = []
  let onSwap: (() => void) | undefined
  reloader = startConfigReload({
    filePath: path,
    env,
    store,
    log: createLogger('debug', (line) => lines.push(JSON.parse(line))),
    onSwap: (s) => {
      swaps.push(s)
      onSwap?.()
      return follow?.(s)
    },
  })
  const nextSwap = () => new Promise<void>((resolve) => (onSwap = resolve))
  return { path, store, lines, swaps, nextSwap }
}

afterEach(() => {
  reloader?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('config reload', () => {
  it('swaps in a valid new config; a request holding the old snapshot keeps it', async () => {
    const { path, store, lines } = setUp()
    const held = store.current
    writeFileSync(path, config(['one', 'two']))
    expect(await reloader?.reload('test')).toBe(true)
    expect([...store.current.routes.keys()]).toEqual(['one', 'two'])
    expect([...held.routes.keys()]).toEqual(['one'])
    expect(lines.find((l) => l.msg === 'config reloaded')).toMatchObject({ reason: 'test', routes: 2 })
  })

  it('rejects an invalid config with a log line naming the problem, and keeps serving the old one', async () => {
    const { path, store, lines } = setUp()
    const before = store.current
    writeFileSync(path, JSON.stringify({ providers: [], routes: [{ name: 'x', targets: [{ provider: 'ghost', model: 'm' }] }] }))
    expect(await reloader?.reload('test')).toBe(false)
    expect(store.current).toBe(before)
    const rejected = lines.find((l) => l.msg === 'config rejected; the previous config keeps serving')
    expect(rejected?.problems).toContain('/providers: Expected array length to be greater or equal to 1')
    writeFileSync(path, '{ not json')
    expect(await reloader?.reload('test')).toBe(false)
    expect(store.current).toBe(before)
  })

  it('does nothing when the text did not change', async () => {
    const { store } = setUp()
    const before = store.current
    expect(await reloader?.reload('poll')).toBe(false)
    expect(store.current).toBe(before)
  })

  it('notices a file change by itself', async () => {
    const { path, store, nextSwap } = setUp()
    const swapped = nextSwap()
    writeFileSync(path, config(['one', 'three']))
    await swapped
    expect([...store.current.routes.keys()]).toEqual(['one', 'three'])
  })

  it('logs an onSwap that throws, with its cause, and says the swap is incomplete', async () => {
    const { path, store, lines } = setUp(() => {
      throw new Error('breaker settings refused', { cause: new RangeError('window_ms out of range') })
    })
    writeFileSync(path, config(['one', 'two']))
    expect(await reloader?.reload('test')).toBe(true)
    expect([...store.current.routes.keys()]).toEqual(['one', 'two'])
    const failed = lines.find((l) => l.level === 'error')
    expect(failed?.msg).toContain('config swapped in, but the state that follows it')
    expect(failed).toMatchObject({ reason: 'test', err: { message: 'breaker settings refused', cause: { name: 'RangeError', message: 'window_ms out of range' } } })
    expect(lines.find((l) => l.msg === 'config reloaded')).toMatchObject({ routes: 2, incomplete: true })
  })

  it('logs an onSwap promise that rejects (a tokenizer table that will not load), and tries it again at the next reload', async () => {
    let attempts = 0
    const { path, store, lines, swaps } = setUp(async () => {
      attempts++
      if (attempts === 1) throw new Error('cannot load o200k_base', { cause: Object.assign(new Error('read failed'), { code: 'EIO' }) })
    })
    writeFileSync(path, config(['one', 'two']))
    expect(await reloader?.reload('test')).toBe(true)
    expect(lines.find((l) => l.level === 'error')).toMatchObject({ err: { message: 'cannot load o200k_base', cause: { code: 'EIO' } } })
    // The text did not change: nothing is swapped, but the failed step runs again, on the same snapshot.
    const swapped = store.current
    expect(await reloader?.reload('poll')).toBe(false)
    expect(attempts).toBe(2)
    expect(swaps.at(-1)).toBe(swapped)
    expect(store.current).toBe(swapped)
    expect(lines.filter((l) => l.level === 'error').length).toBe(1)
    expect(lines.at(-1)?.msg).toBe('config swap completed: the state that follows it caught up')
    // Caught up: the next poll does nothing at all.
    expect(await reloader?.reload('poll')).toBe(false)
    expect(attempts).toBe(2)
  })
})
