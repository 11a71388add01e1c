import { describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { ConfigError, loadConfig, parseConfig } from './load.ts'

const minimal = () => ({
  providers: [
    {
      provider_id: 'openai',
      name: 'OpenAI',
      kind: 'openai',
      base_url: 'https://api.openai.com/v1',
      api_key_secret: 'env:OPENAI_API_KEY',
      models: [{ name: 'gpt-4o-mini', cost_per_1k_input_tokens: 0.00015, cost_per_1k_output_tokens: 0.0006 }],
    },
  ],
  clients: [{ client_id: 'app', team_id: 't', keys: [{ name: 'k', sha256: 'a'.repeat(64) }] }],
})

function problemsOf(doc: unknown, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(JSON.stringify(doc), 'test.json', env)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

describe('loadConfig', () => {
  it('loads the sample config with its defaults', () => {
    const c = loadConfig({ GATEWAY_CONFIG: 'config/gateway.sample.yaml', OPENAI_API_KEY: 'sk-x', ANTHROPIC_API_KEY: 'sk-ant', GEMINI_API_KEY: 'AIza' })
    expect(c.file.server.port).toBe(8080)
    expect(c.file.providers.map((p) => p.provider_id)).toEqual(['openai', 'anthropic', 'gemini', 'emulator', 'emulator-anthropic', 'emulator-gemini'])
    expect(c.secrets.get('openai')?.reveal()).toBe('sk-x')
    expect(c.unavailable.size).toBe(0)
  })

  it('fills defaults for omitted settings', () => {
    const c = parseConfig(JSON.stringify(minimal()), 'x.json', {})
    expect(c.file.server).toMatchObject({ port: 8080, max_body_bytes: 4194304, stream_timeout_ms: 120000, stream_idle_timeout_ms: 30000 })
    expect(c.file.providers[0]).toMatchObject({ enabled: true, timeout_ms: 120000 })
  })

  it('rejects a misspelled key naming its path instead of dropping it', () => {
    const doc = minimal() as Record<string, unknown> & ReturnType<typeof minimal>
    ;(doc.providers[0] as Record<string, unknown>).base_ulr = 'https://x'
    ;(doc as Record<string, unknown>).sever = {}
    const problems = problemsOf(doc)
    expect(problems.some((p) => p.startsWith('/providers/0/base_ulr'))).toBe(true)
    expect(problems.some((p) => p.startsWith('/sever'))).toBe(true)
  })

  it('lists every bad path at once', () => {
    const doc = minimal()
    ;(doc.providers[0] as Record<string, unknown>).kind = 'azure'
    ;(doc.providers[0]?.models[0] as Record<string, unknown>).cost_per_1k_input_tokens = 'cheap'
    const problems = problemsOf(doc)
    expect(problems.some((p) => p.startsWith('/providers/0/kind'))).toBe(true)
    expect(problems.some((p) => p.startsWith('/providers/0/models/0/cost_per_1k_input_tokens'))).toBe(true)
  })

  it('says which key was meant, lists the allowed values, and reports shape and reference problems together', () => {
    const doc = minimal() as Record<string, unknown> & ReturnType<typeof minimal>
    ;(doc as Record<string, unknown>).server = { log_levle: 'debug' }
    ;(doc.providers[0] as Record<string, unknown>).kind = 'antropic'
    ;(doc as Record<string, unknown>).guardrails = [{ id: 'g', kind: 'pii', action: 'redcat' }, { id: 'h', kind: 'piii', action: 'block' }]
    ;(doc as Record<string, unknown>).routes = [{ name: 'r', targets: [{ provider: 'nobody', model: 'x' }] }]
    const problems = problemsOf(doc)
    expect(problems).toContain('/server/log_levle: unknown setting "log_levle" (did you mean "log_level"?)')
    expect(problems).toContain('/providers/0/kind: "antropic" is not one of openai, openai-compatible, anthropic, gemini (did you mean "anthropic"?)')
    // A guardrail's own fields, checked against the shape its kind names (its defaults applied).
    expect(problems).toContain('/guardrails/0/action: "redcat" is not one of redact, block (did you mean "redact"?)')
    expect(problems).toContain('/guardrails/1/kind: "piii" is not one of pii, regex, prompt_injection, moderation (did you mean "pii"?)')
    // A reference problem in the same report as the shape problems.
    expect(problems).toContain('/routes/0/targets/0/provider: no provider "nobody"')
    expect(problems.some((p) => p.includes('Expected union value') || p.includes('Expected required property'))).toBe(false)
  })

  it('lists the known keys when a misspelling is not close to any', () => {
    const doc = minimal() as Record<string, unknown>
    doc.server = { zzzzzz: 1 }
    expect(problemsOf(doc).find((p) => p.startsWith('/server/zzzzzz'))).toMatch(/^\/server\/zzzzzz: unknown setting "zzzzzz"; known here: .*log_level/)
  })

  it('refuses an inline secret', () => {
    const doc = minimal()
    ;(doc.providers[0] as Record<string, unknown>).api_key_secret = 'sk-live-123'
    expect(problemsOf(doc).some((p) => p.startsWith('/providers/0/api_key_secret'))).toBe(true)
  })

  it('marks a provider whose key variable is unset as unavailable, without failing', () => {
    const c = parseConfig(JSON.stringify(minimal()), 'x.json', {})
    expect(c.unavailable.get('openai')).toContain('OPENAI_API_KEY')
    expect(c.secrets.has('openai')).toBe(false)
  })

  it('catches duplicates and dangling references', () => {
    const doc = minimal()
    doc.providers.push({ ...doc.providers[0]! })
    doc.clients.push({ client_id: 'app', team_id: 't', keys: [{ name: 'k2', sha256: 'a'.repeat(64) }] })
    ;(doc.clients[0] as Record<string, unknown>).models = ['no-such-model']
    const problems = problemsOf(doc)
    expect(problems).toContain('/providers/1/provider_id: duplicate "openai"')
    expect(problems).toContain('/clients/1/client_id: duplicate "app"')
    expect(problems).toContain('/clients/1/keys/0/sha256: this key is already assigned')
    expect(problems).toContain('/clients/0/models/0: no provider or route serves model "no-such-model"')
  })

  it('rejects a price finer than a pico-dollar per token', () => {
    const doc = minimal()
    doc.providers[0]!.models[0]!.cost_per_1k_input_tokens = 0.0000000000001
    expect(problemsOf(doc).some((p) => p.startsWith('/providers/0/models/0/cost_per_1k_input_tokens'))).toBe(true)
  })

  it('takes PORT from the environment and validates it', () => {
    expect(parseConfig(JSON.stringify(minimal()), 'x.json', { PORT: '9999' }).file.server.port).toBe(9999)
    expect(problemsOf(minimal(), { PORT: 'eighty' }).some((p) => p.includes('/server/port') && p.includes('PORT'))).toBe(true)
  })

  it('refuses a REDIS_URL it cannot use, without showing its password', () => {
    expect(parseConfig(JSON.stringify(minimal()), 'x.json', { REDIS_URL: 'rediss://:pw@redis.example.com:6380' }).redisUrl).toBe('rediss://:pw@redis.example.com:6380')
    const problems = problemsOf(minimal(), { REDIS_URL: 'redis://:hunter2-secret@10.0.0.1:7000,redis://:other@10.0.0.2:7001' })
    expect(problems).toEqual(['REDIS_URL: seeds 1 (10.0.0.1:7000) and 2 (10.0.0.2:7001) have different passwords: every node of a Cluster is reached with the same credentials'])
  })

  it('reads YAML and JSON by extension and refuses others', () => {
    const yaml = readFileSync('config/gateway.sample.yaml', 'utf8')
    expect(parseConfig(yaml, 'a.yml').file.providers.length).toBe(6)
    expect(() => parseConfig(yaml, 'a.toml')).toThrow(/unknown extension/)
    expect(() => parseConfig('{', 'a.json')).toThrow(/cannot parse json/)
  })

  it('fails clearly on a missing file', () => {
    expect(() => loadConfig({ GATEWAY_CONFIG: '/nonexistent/gw.yaml' })).toThrow(/cannot read file/)
  })
})

describe('a config that is not a mapping', () => {
  it('is one clear problem, not a crash', () => {
    for (const text of ['', 'null', '- a\n- b', '42']) {
      expect(() => parseConfig(text, 'empty.yaml', {})).toThrow(ConfigError)
      try {
        parseConfig(text, 'empty.yaml', {})
      } catch (err) {
        expect((err as ConfigError).problems).toHaveLength(1)
        expect((err as ConfigError).problems[0]).toStartWith('/: the config must be a mapping of settings')
      }
    }
  })
})
