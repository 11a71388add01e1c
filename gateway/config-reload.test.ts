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

function setUp() {
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
})
