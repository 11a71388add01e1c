// Targets and routes for tests and benches that need one without a config file: a provider of a kind serving one model.
import type { ModelConfig, ProviderKind } from '../../shared/config/schema.ts'
import { pricePerTokenPico } from '../../shared/money.ts'
import { Redactor } from '../../shared/redact.ts'
import type { Route } from '../../gateway/config-store.ts'
import { adapterFor } from '../../gateway/providers/registry.ts'
import type { Target } from '../../gateway/providers/types.ts'

// Prices default to GPT-4o's ($2.50 / $10 per million tokens).
export function testTarget(kind: ProviderKind, upstreamModel: string, model: Partial<ModelConfig> = {}): Target {
  const m: ModelConfig = { name: upstreamModel, cost_per_1k_input_tokens: 0.0025, cost_per_1k_output_tokens: 0.01, ...model }
  return {
    provider: { provider_id: kind, name: kind, kind, base_url: 'http://127.0.0.1:1', models: [], enabled: true, timeout_ms: 1000, health_check: false },
    model: m,
    upstreamModel,
    apiKey: undefined,
    price: { input_pico_per_token: pricePerTokenPico(m.cost_per_1k_input_tokens), output_pico_per_token: pricePerTokenPico(m.cost_per_1k_output_tokens) },
    redactor: new Redactor([]),
  }
}

export function testRoute(kind: ProviderKind, upstreamModel: string, model: Partial<ModelConfig> = {}): Route {
  return { key: `${kind}/${upstreamModel}`, adapter: adapterFor(kind), unavailable: undefined, target: testTarget(kind, upstreamModel, model) }
}
