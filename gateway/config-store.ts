// The current config snapshot: building one may throw, swapping one in cannot.
import type { Config } from '../shared/config/load.ts'
import type { CacheConfig, ClientConfig, RoutePolicy, UnsupportedParams } from '../shared/config/schema.ts'
import { pricePerTokenPico } from '../shared/money.ts'
import { Redactor } from '../shared/redact.ts'
import { adapterFor } from './providers/registry.ts'
import type { ProviderAdapter, Target } from './providers/types.ts'
import type { KeyLimits, KeyRegistry } from './keys/registry.ts'

export interface Caller {
  client: ClientConfig
  keyName: string
  // The stored SHA-256 of the key, as bytes for the constant-time compare.
  digest: Buffer
  // Model names this caller may use; undefined means all.
  allowed: ReadonlySet<string> | undefined
  // A key made at runtime (the admin API): its id and its own limits.
  key?: KeyLimits
}

// One target a request can be sent to: a provider's model, with its adapter.
export interface Route {
  // `<provider_id>/<model name>`: names the target's breaker and latency figures across reloads.
  key: string
  target: Target
  adapter: ProviderAdapter
  // Why this target cannot serve now (disabled, key unset), if it cannot.
  unavailable: string | undefined
}

// What a client-facing model name resolves to: targets and how to choose among them.
export interface RoutePlan {
  name: string
  policy: RoutePolicy
  // In config order; weights[i] belongs to targets[i] (ab).
  targets: readonly Route[]
  weights: readonly number[]
  fallback: boolean
  retries: number
  sticky: boolean
  // The route's unsupported_params (a model's own plan: none).
  unsupportedParams?: UnsupportedParams
  // The route's response cache (a model's own plan: none).
  cache?: CacheConfig
  // The route's guardrail ids.
  guardrails?: readonly string[]
}

export interface Snapshot {
  config: Config
  // Virtual keys by the hex SHA-256 of the bearer token.
  keys: ReadonlyMap<string, Caller>
  // Client-facing model name → its plan: configured routes, and every provider model name
  // (explicit over the providers serving it, in config order) that no route replaces.
  routes: ReadonlyMap<string, RoutePlan>
  // Every target by key.
  targets: ReadonlyMap<string, Route>
  // The configured provider keys, to keep out of anything the gateway returns.
  redactor: Redactor
  loadedAt: number
  // Keys made at runtime, looked up after the config's own.
  runtimeKeys?: KeyRegistry
}

export function buildSnapshot(config: Config, now = Date.now()): Snapshot {
  // Every provider's key, whichever provider echoes it.
  const redactor = new Redactor([...config.secrets.values()].map((s) => s.reveal()))
  const byModel = new Map<string, Route[]>()
  const targets = new Map<string, Route>()
  const { retries } = config.file.routing
  config.file.providers.forEach((provider) => {
    const adapter = adapterFor(provider.kind)
    const unavailable = config.unavailable.get(provider.provider_id)
    for (const model of provider.models) {
      const target: Target = {
        provider,
        model,
        upstreamModel: model.upstream_model ?? model.name,
        apiKey: config.secrets.get(provider.provider_id),
        price: {
          input_pico_per_token: pricePerTokenPico(model.cost_per_1k_input_tokens),
          output_pico_per_token: pricePerTokenPico(model.cost_per_1k_output_tokens),
        },
        redactor,
      }
      const route: Route = { key: `${provider.provider_id}/${model.name}`, target, adapter, unavailable }
      targets.set(route.key, route)
      const list = byModel.get(model.name) ?? []
      list.push(route)
      byModel.set(model.name, list)
    }
  })
  const routes = new Map<string, RoutePlan>()
  for (const [name, list] of byModel) {
    routes.set(name, { name, policy: 'explicit', targets: list, weights: list.map(() => 1), fallback: true, retries, sticky: false })
  }
  for (const r of config.file.routes) {
    // References were checked when the config loaded.
    const list = r.targets.map((tg) => targets.get(`${tg.provider}/${tg.model}`) as Route)
    routes.set(r.name, {
      name: r.name,
      policy: r.policy,
      targets: list,
      weights: r.targets.map((tg) => tg.weight ?? 1),
      fallback: r.fallback,
      retries: r.retries ?? retries,
      sticky: r.sticky,
      ...(r.unsupported_params ? { unsupportedParams: r.unsupported_params } : {}),
      ...(r.cache ? { cache: r.cache } : {}),
      ...(r.guardrails ? { guardrails: r.guardrails } : {}),
    })
  }
  const keys = new Map<string, Caller>()
  for (const client of config.file.clients) {
    const allowed = client.models ? new Set(client.models) : undefined
    for (const key of client.keys) keys.set(key.sha256, { client, keyName: key.name, digest: Buffer.from(key.sha256, 'hex'), allowed })
  }
  return { config, keys, routes, targets, redactor, loadedAt: now }
}

export class ConfigStore {
  #keys: KeyRegistry | undefined

  constructor(private snapshot: Snapshot) {}

  get current(): Snapshot {
    return this.snapshot
  }

  // One assignment: a request holds the snapshot it started with until it ends.
  swap(next: Snapshot): void {
    if (this.#keys) next.runtimeKeys = this.#keys
    this.snapshot = next
  }

  // Keys made at runtime join every snapshot from now on.
  attachKeys(keys: KeyRegistry): void {
    this.#keys = keys
    this.snapshot.runtimeKeys = keys
  }
}
