// Starts a real gateway process (bun gateway/main.ts) on a free port with a given config, for tests and bench.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashKey } from '../../gateway/auth.ts'
import { startService } from './service-process.ts'

export interface GatewayProcess {
  url: string
  // The config file the process reads (rewrite it to test hot reload).
  configPath: string
  port: number
  pid: number
  // Every stdout line so far (JSON logs).
  readonly lines: string[]
  // Resolves with the first log line (parsed) satisfying the predicate, past or future.
  waitForLog(predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>
  stop(signal?: NodeJS.Signals): Promise<number>
}

export interface GatewayProcessOptions {
  config: Record<string, unknown>
  env?: Record<string, string>
  // gateway/main.ts (default), or scripts/start.ts: npm start, with the in-process analytics
  // worker when REDIS_URL is unset.
  entry?: 'gateway' | 'start'
  // The process's open-file limit (ulimit -n).
  openFiles?: number
}

export async function startGateway(opts: GatewayProcessOptions): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'gw-test-'))
  const configPath = join(dir, 'gateway.json')
  writeFileSync(configPath, JSON.stringify(opts.config))
  // Its own data folder (runtime keys' SQLite file), unless the test shares one between processes.
  const proc = await startService(opts.entry === 'start' ? 'scripts/start.ts' : 'gateway/main.ts', { GATEWAY_CONFIG: configPath, PORT: '0', GATEWAY_DATA_DIR: join(dir, 'data'), ...opts.env }, 'listening', 'gateway', opts.openFiles)
  const port = Number(proc.ready.port)
  return {
    url: `http://127.0.0.1:${port}`,
    configPath,
    port,
    // The worker serving (its supervisor's, when there is one, is proc.pid).
    pid: Number(proc.ready.pid ?? proc.pid),
    lines: proc.lines,
    waitForLog: proc.waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      // A crash is the worker's: its supervisor going alone would leave it draining for a moment.
      const worker = Number(proc.ready.pid)
      if (signal === 'SIGKILL' && worker && worker !== proc.pid) process.kill(worker, 'SIGKILL')
      const code = await proc.stop(signal)
      rmSync(dir, { recursive: true, force: true })
      return code
    },
  }
}

export interface TestConfigOptions {
  upstreamBaseUrl: string
  upstreamKeyEnv?: string
  server?: Record<string, unknown>
  routing?: Record<string, unknown>
  extraModels?: Array<Record<string, unknown>>
}

export const TEST_KEYS = { full: 'sk-test-full-access', limited: 'sk-test-limited' } as const

// A config with one emulator-backed provider and two clients: one may call everything, one only `test-model`.
export function testConfig(o: TestConfigOptions): Record<string, unknown> {
  return {
    server: { log_level: 'info', ...o.server },
    ...(o.routing ? { routing: o.routing } : {}),
    providers: [
      {
        provider_id: 'emu',
        name: 'Emulator',
        kind: 'openai-compatible',
        base_url: o.upstreamBaseUrl,
        ...(o.upstreamKeyEnv ? { api_key_secret: `env:${o.upstreamKeyEnv}` } : {}),
        models: [
          { name: 'test-model', upstream_model: 'emu-upstream', cost_per_1k_input_tokens: 0.00015, cost_per_1k_output_tokens: 0.0006 },
          { name: 'other-model', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 },
          ...(o.extraModels ?? []),
        ],
      },
    ],
    clients: [
      { client_id: 'full-client', team_id: 'team-a', keys: [{ name: 'k1', sha256: hashKey(TEST_KEYS.full) }] },
      { client_id: 'limited-client', team_id: 'team-b', models: ['test-model'], keys: [{ name: 'k2', sha256: hashKey(TEST_KEYS.limited) }] },
    ],
  }
}
