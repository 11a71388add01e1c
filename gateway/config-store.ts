// The current config snapshot: building one may throw, swapping one in cannot.
import type { Config } from '../shared/config/load.ts'
import type { ClientConfig } from '../shared/config/schema.ts'
import { pricePerTokenPico } from '../shared/money.ts'
import { adapterFor } from './providers/registry.ts'
import type { ProviderAdapter, Target } from './providers/types.ts'

export interface Caller {
  client: ClientConfig
  keyName: string
  // The stored SHA-256 of the key, as bytes for the constant-time compare.
  digest: Buffer
  // Model names this caller may use; undefined means all.
  allowed: ReadonlySet<string> | undefined
}

export interface Route {
  target: Target
  adapter: ProviderAdapter
  // Why this target cannot serve now (disabled, key unset), if it cannot.
  unavailable: string | undefined
}

export interface Snapshot {
  config: Config
  // Virtual keys by the hex SHA-256 of the bearer token.
  keys: ReadonlyMap<string, Caller>
  // Client-facing model name → its routes, in config order.
  routes: ReadonlyMap<string, readonly Route[]>
  loadedAt: number
}

export function buildSnapshot(config: Config, now = Date.now()): Snapshot {
  const routes = new Map<string, Route[]>()
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
      }
      const list = routes.get(model.name) ?? []
      list.push({ target, adapter, unavailable })
      routes.set(model.name, list)
    }
  })
  const keys = new Map<string, Caller>()
  for (const client of config.file.clients) {
    const allowed = client.models ? new Set(client.models) : undefined
    for (const key of client.keys) keys.set(key.sha256, { client, keyName: key.name, digest: Buffer.from(key.sha256, 'hex'), allowed })
  }
  return { config, keys, routes, loadedAt: now }
}

export class ConfigStore {
  constructor(private snapshot: Snapshot) {}

  get current(): Snapshot {
    return this.snapshot
  }

  // One assignment: a request holds the snapshot it started with until it ends.
  swap(next: Snapshot): void {
    this.snapshot = next
  }
}
