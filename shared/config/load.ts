// Reads the config file and the environment into a validated Config, or a ConfigError naming every bad path.
import { readFileSync } from 'node:fs'
import { extname } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { explainErrors } from './explain.ts'
import { parse as parseYaml } from 'yaml'
import { GatewayConfig, type LogLevel } from './schema.ts'
import { Secret } from '../secret.ts'
import { pricePerTokenPico } from '../money.ts'
import { redisConnectionOptions } from '../redis-url.ts'

export const DEFAULT_CONFIG_PATH = 'config/gateway.sample.yaml'
const SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio']

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid config ${source}:\n  - ${problems.join('\n  - ')}`)
    this.name = 'ConfigError'
  }
}

export interface Config {
  source: string
  file: GatewayConfig
  // Provider secrets resolved from the environment, by provider_id; absent when the variable is unset.
  secrets: ReadonlyMap<string, Secret>
  // Why a provider cannot serve even though the file enables it (e.g. its key variable is unset).
  unavailable: ReadonlyMap<string, string>
  logLevel: LogLevel
  // REDIS_URL: shared quota state; absent means the in-memory store (one instance).
  redisUrl: string | undefined
  // ADMIN_TOKEN: enables the admin endpoints; absent means they do not exist.
  adminToken: Secret | undefined
  // GATEWAY_CONFIG_REDIS_KEY: a Redis key whose value (YAML or JSON), when present, replaces the file.
  configRedisKey: string | undefined
  // Traces go out over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set and
  // neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none says otherwise.
  tracing: { enabled: boolean; serviceName: string; sampler: string; samplerArg: number | undefined }
}

export type Env = Record<string, string | undefined>

export function loadConfig(env: Env = process.env): Config {
  const source = env.GATEWAY_CONFIG || DEFAULT_CONFIG_PATH
  let text: string
  try {
    text = readFileSync(source, 'utf8')
  } catch (err) {
    throw new ConfigError(source, [`cannot read file: ${(err as Error).message}`])
  }
  return parseConfig(text, source, env)
}

export function parseConfig(text: string, source: string, env: Env = {}): Config {
  // A Redis key has no extension: its text says which it is.
  const ext = source.startsWith('redis:') ? (text.trimStart().startsWith('{') ? '.json' : '.yaml') : extname(source).toLowerCase()
  const raw = decodeText(text, source, ext)
  // Default fills optional settings; Check + Errors then report misspelled keys instead of
  // dropping them (Value.Parse's Clean step would delete them silently).
  const withDefaults = Value.Default(GatewayConfig, structuredClone(raw))
  if (env.PORT !== undefined && isObject(withDefaults) && isObject(withDefaults.server)) {
    withDefaults.server.port = /^\d+$/.test(env.PORT) ? Number(env.PORT) : env.PORT
  }
  if (env.GATEWAY_WORKERS !== undefined && isObject(withDefaults) && isObject(withDefaults.server)) {
    withDefaults.server.workers = /^\d+$/.test(env.GATEWAY_WORKERS) ? Number(env.GATEWAY_WORKERS) : env.GATEWAY_WORKERS
  }
  // Every problem of the file in one report: the shape, then (as far as the shape allows) the
  // references between its parts and the environment.
  // Not even an object (an empty file, a list): nothing more can be said.
  if (!isObject(withDefaults)) throw new ConfigError(source, [`/: the config must be a mapping of settings (${withDefaults === null || withDefaults === undefined ? 'the file is empty' : `got ${Array.isArray(withDefaults) ? 'a list' : typeof withDefaults}`})`])
  const problems: string[] = []
  const shapeOk = Value.Check(GatewayConfig, withDefaults)
  if (!shapeOk) {
    for (const p of explainErrors(GatewayConfig, withDefaults)) {
      problems.push(`${p}${/^\/server\/port:/.test(p) && env.PORT ? ' (from PORT)' : ''}${/^\/server\/workers:/.test(p) && env.GATEWAY_WORKERS ? ' (from GATEWAY_WORKERS)' : ''}`)
    }
  }
  const file = withDefaults as GatewayConfig
  problems.push(...checkReferences(file))
  const logLevel = env.LOG_LEVEL ?? file.server?.log_level ?? 'info'
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) problems.push(`LOG_LEVEL: unknown level "${logLevel}"`)
  const sampler = env.OTEL_TRACES_SAMPLER
  if (sampler && !SAMPLERS.includes(sampler)) problems.push(`OTEL_TRACES_SAMPLER: "${sampler}" is not one of ${SAMPLERS.join(', ')}`)
  const ratio = env.OTEL_TRACES_SAMPLER_ARG
  if (ratio && !(Number(ratio) >= 0 && Number(ratio) <= 1)) problems.push(`OTEL_TRACES_SAMPLER_ARG: "${ratio}" is not a ratio between 0 and 1`)
  // Checked here so a bad URL stops the start with the other problems; the message never holds the URL (it may hold a password).
  if (env.REDIS_URL) {
    try {
      redisConnectionOptions(env.REDIS_URL)
    } catch (err) {
      problems.push(`REDIS_URL: ${(err as Error).message}`)
    }
  }
  // Each worker keeps its own memory: budgets, rate limits and breakers in memory would be per
  // worker, and several in-process analytics workers would share one data folder.
  if (shapeOk && file.server.workers > 1 && !env.REDIS_URL) {
    problems.push(`server.workers: ${file.server.workers} workers need REDIS_URL (budgets, rate limits and breakers must be shared between them, and usage records go through its stream); set REDIS_URL or use 1`)
  }
  if (problems.length > 0) throw new ConfigError(source, dedupe(problems))

  const secrets = new Map<string, Secret>()
  const unavailable = new Map<string, string>()
  for (const p of file.providers) {
    if (!p.enabled) unavailable.set(p.provider_id, 'disabled in config')
    if (!p.api_key_secret) continue
    const name = p.api_key_secret.slice('env:'.length)
    const value = env[name]
    if (value) secrets.set(p.provider_id, new Secret(value))
    else if (p.enabled) unavailable.set(p.provider_id, `its key variable ${name} is not set`)
  }
  return {
    source,
    file,
    secrets,
    unavailable,
    logLevel: logLevel as LogLevel,
    redisUrl: env.REDIS_URL || undefined,
    adminToken: env.ADMIN_TOKEN ? new Secret(env.ADMIN_TOKEN) : undefined,
    configRedisKey: env.GATEWAY_CONFIG_REDIS_KEY || undefined,
    tracing: {
      enabled: Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) && env.OTEL_SDK_DISABLED !== 'true' && env.OTEL_TRACES_EXPORTER !== 'none',
      serviceName: env.OTEL_SERVICE_NAME || 'llm-gateway',
      // The standard sampler variables (the SDK package leaves reading them to its caller).
      sampler: env.OTEL_TRACES_SAMPLER || 'parentbased_always_on',
      samplerArg: env.OTEL_TRACES_SAMPLER_ARG === undefined || env.OTEL_TRACES_SAMPLER_ARG === '' ? undefined : Number(env.OTEL_TRACES_SAMPLER_ARG),
    },
  }
}

function decodeText(text: string, source: string, ext: string): unknown {
  try {
    if (ext === '.json') return JSON.parse(text)
    if (ext === '.yaml' || ext === '.yml') return parseYaml(text)
  } catch (err) {
    throw new ConfigError(source, [`cannot parse ${ext.slice(1)}: ${(err as Error).message}`])
  }
  throw new ConfigError(source, [`unknown extension "${ext}": use .yaml, .yml or .json`])
}

// What a schema cannot say: uniqueness and references between sections.
// The references between the file's parts. Each part is checked on its own: one too malformed to
// follow (its shape errors say what is wrong) does not hide the others' problems.
function checkReferences(file: GatewayConfig): string[] {
  const problems: string[] = []
  const part = (check: () => void) => {
    try {
      check()
    } catch {
      // Reported by the shape check.
    }
  }
  const providerIds = new Set<string>()
  const modelNames = new Set<string>()
  part(() =>
    file.providers.forEach((p, i) => {
      if (providerIds.has(p.provider_id)) problems.push(`/providers/${i}/provider_id: duplicate "${p.provider_id}"`)
      providerIds.add(p.provider_id)
      const own = new Set<string>()
      p.models.forEach((m, j) => {
        if (own.has(m.name)) problems.push(`/providers/${i}/models/${j}/name: duplicate "${m.name}" in this provider`)
        own.add(m.name)
        modelNames.add(m.name)
        for (const field of ['cost_per_1k_input_tokens', 'cost_per_1k_output_tokens'] as const) {
          try {
            pricePerTokenPico(m[field])
          } catch (err) {
            problems.push(`/providers/${i}/models/${j}/${field}: ${(err as Error).message}`)
          }
        }
      })
    }),
  )
  part(() => {
    const teamIds = new Set(file.clients.map((c) => c.team_id))
    const quotaIds = new Set<string>()
    file.quotas.forEach((q, i) => {
      if (quotaIds.has(q.quota_id)) problems.push(`/quotas/${i}/quota_id: duplicate "${q.quota_id}"`)
      quotaIds.add(q.quota_id)
      if (q.token_limit === undefined && q.cost_limit_usd === undefined) problems.push(`/quotas/${i}: needs token_limit, cost_limit_usd or both`)
      if (q.entity_type === 'global' && q.entity_id !== undefined) problems.push(`/quotas/${i}/entity_id: a global quota has no entity_id`)
      if (q.entity_type === 'user' && q.entity_id !== undefined && !file.clients.some((c) => c.client_id === q.entity_id)) {
        problems.push(`/quotas/${i}/entity_id: no client "${q.entity_id}"`)
      }
      if (q.entity_type === 'team' && q.entity_id !== undefined && !teamIds.has(q.entity_id)) problems.push(`/quotas/${i}/entity_id: no team "${q.entity_id}"`)
    })
  })
  part(() => problems.push(...checkRoutes(file)))
  part(() => problems.push(...checkGuardrails(file)))
  // A reservation must outlive the request: the last attempt may start at max_total_ms and run
  // for its own timeout. Shorter, and a slow request's usage would find its reservation gone.
  part(() => {
    if (file.quotas.length === 0) return
    const longest = Math.max(file.server.stream_timeout_ms, ...file.providers.map((p) => p.timeout_ms))
    const needed = file.routing.max_total_ms + longest
    if (file.quota.reservation_ttl_ms < needed) {
      problems.push(`/quota/reservation_ttl_ms: must be at least routing.max_total_ms + the longest timeout (${needed} ms), so a reservation outlives its request`)
    }
  })
  part(() => {
    const callable = new Set([...modelNames, ...file.routes.map((r) => r.name)])
    const clientIds = new Set<string>()
    const hashes = new Set<string>()
    file.clients.forEach((c, i) => {
      if (clientIds.has(c.client_id)) problems.push(`/clients/${i}/client_id: duplicate "${c.client_id}"`)
      clientIds.add(c.client_id)
      c.models?.forEach((m, j) => {
        if (!callable.has(m)) problems.push(`/clients/${i}/models/${j}: no provider or route serves model "${m}"`)
      })
      c.keys.forEach((k, j) => {
        if (hashes.has(k.sha256)) problems.push(`/clients/${i}/keys/${j}/sha256: this key is already assigned`)
        hashes.add(k.sha256)
      })
    })
  })
  return problems
}

function checkGuardrails(file: GatewayConfig): string[] {
  const problems: string[] = []
  const ids = new Set<string>()
  file.guardrails.forEach((g, i) => {
    if (ids.has(g.id)) problems.push(`/guardrails/${i}/id: duplicate "${g.id}"`)
    ids.add(g.id)
    if (g.kind === 'regex') {
      g.patterns.forEach((p, j) => {
        try {
          new RegExp(p, 'giu')
        } catch (err) {
          problems.push(`/guardrails/${i}/patterns/${j}: not a regular expression (${(err as Error).message})`)
        }
      })
    }
    if (g.kind === 'moderation' && typeof g.provider === 'string' && !file.providers.some((p) => p.provider_id === g.provider)) problems.push(`/guardrails/${i}/provider: no provider "${g.provider}"`)
  })
  const named = (list: readonly string[] | undefined, at: string) => list?.forEach((id, j) => {
    if (!ids.has(id)) problems.push(`${at}/${j}: no guardrail "${id}"`)
  })
  named(file.guardrail_defaults, '/guardrail_defaults')
  file.routes.forEach((r, i) => named(r.guardrails, `/routes/${i}/guardrails`))
  file.clients.forEach((c, i) => named(c.guardrails, `/clients/${i}/guardrails`))
  return problems
}

function checkRoutes(file: GatewayConfig): string[] {
  const problems: string[] = []
  const names = new Set<string>()
  file.routes.forEach((r, i) => {
    if (names.has(r.name)) problems.push(`/routes/${i}/name: duplicate "${r.name}"`)
    names.add(r.name)
    const seen = new Set<string>()
    r.targets.forEach((tg, j) => {
      const provider = file.providers.find((p) => p.provider_id === tg.provider)
      if (!provider) problems.push(`/routes/${i}/targets/${j}/provider: no provider "${tg.provider}"`)
      else if (!provider.models.some((m) => m.name === tg.model)) problems.push(`/routes/${i}/targets/${j}/model: provider "${tg.provider}" has no model "${tg.model}"`)
      const key = `${tg.provider}/${tg.model}`
      if (seen.has(key)) problems.push(`/routes/${i}/targets/${j}: duplicate target "${key}"`)
      seen.add(key)
      if (r.policy === 'ab' && tg.weight === undefined) problems.push(`/routes/${i}/targets/${j}/weight: the ab policy needs a weight on every target`)
      if (r.policy !== 'ab' && tg.weight !== undefined) problems.push(`/routes/${i}/targets/${j}/weight: only the ab policy uses weights`)
    })
    if (r.policy === 'ab' && r.targets.every((tg) => (tg.weight ?? 0) === 0)) problems.push(`/routes/${i}/targets: the ab weights sum to zero`)
    if (r.sticky && r.policy !== 'ab') problems.push(`/routes/${i}/sticky: only the ab policy is sticky`)
  })
  return problems
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)]
}
