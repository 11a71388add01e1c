// The whole gateway config file as one TypeBox schema: the schema is the type.
import { Type as t, type Static } from '@sinclair/typebox'

const strict = { additionalProperties: false } as const

export const ProviderKind = t.Union([
  t.Literal('openai'),
  t.Literal('openai-compatible'),
  t.Literal('anthropic'),
  t.Literal('gemini'),
])
export type ProviderKind = Static<typeof ProviderKind>

// A secret is always a reference, never the value: `env:NAME`.
export const SecretRef = t.String({ pattern: '^env:[A-Za-z_][A-Za-z0-9_]*$' })

const UsdPrice = t.Number({ minimum: 0 })

export const ModelConfig = t.Object(
  {
    // The name clients send in `model`.
    name: t.String({ minLength: 1 }),
    // The provider's own model id; defaults to `name`.
    upstream_model: t.Optional(t.String({ minLength: 1 })),
    cost_per_1k_input_tokens: UsdPrice,
    cost_per_1k_output_tokens: UsdPrice,
    max_output_tokens: t.Optional(t.Integer({ minimum: 1 })),
  },
  strict,
)
export type ModelConfig = Static<typeof ModelConfig>

export const ProviderConfig = t.Object(
  {
    provider_id: t.String({ pattern: '^[a-z0-9][a-z0-9_-]*$' }),
    name: t.String({ minLength: 1 }),
    kind: ProviderKind,
    base_url: t.String({ pattern: '^https?://' }),
    api_key_secret: t.Optional(SecretRef),
    models: t.Array(ModelConfig, { minItems: 1 }),
    rate_limit_rpm: t.Optional(t.Integer({ minimum: 1 })),
    enabled: t.Boolean({ default: true }),
    // Deadline for a whole non-streaming call, headers and body.
    timeout_ms: t.Integer({ minimum: 1, default: 120_000 }),
  },
  strict,
)
export type ProviderConfig = Static<typeof ProviderConfig>

export const VirtualKey = t.Object(
  {
    // A label for operators; never the key itself.
    name: t.String({ minLength: 1 }),
    // Lower-case hex SHA-256 of the bearer token (`npm run hash-key -- <key>`).
    sha256: t.String({ pattern: '^[0-9a-f]{64}$' }),
  },
  strict,
)

export const ClientConfig = t.Object(
  {
    client_id: t.String({ minLength: 1 }),
    team_id: t.String({ minLength: 1 }),
    // Model names this client may call; absent means every configured model.
    models: t.Optional(t.Array(t.String({ minLength: 1 }))),
    keys: t.Array(VirtualKey, { minItems: 1 }),
  },
  strict,
)
export type ClientConfig = Static<typeof ClientConfig>

export const LogLevel = t.Union([
  t.Literal('debug'),
  t.Literal('info'),
  t.Literal('warn'),
  t.Literal('error'),
  t.Literal('silent'),
])
export type LogLevel = Static<typeof LogLevel>

export const ServerConfig = t.Object(
  {
    port: t.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
    host: t.String({ default: '0.0.0.0' }),
    max_body_bytes: t.Integer({ minimum: 1024, default: 4 * 1024 * 1024 }),
    // Whole-stream deadline, first byte to last.
    stream_timeout_ms: t.Integer({ minimum: 1, default: 120_000 }),
    // Longest silence allowed between two upstream stream chunks (and before the first).
    stream_idle_timeout_ms: t.Integer({ minimum: 1, default: 30_000 }),
    log_level: t.Optional(LogLevel),
  },
  { ...strict, default: {} },
)
export type ServerConfig = Static<typeof ServerConfig>

// A budget: user (a client_id), team (a team_id) or global; without entity_id it applies to
// every user or every team separately.
export const QuotaRecord = t.Object(
  {
    quota_id: t.String({ pattern: '^[A-Za-z0-9_.-]+$' }),
    entity_type: t.Union([t.Literal('user'), t.Literal('team'), t.Literal('global')]),
    entity_id: t.Optional(t.String({ minLength: 1 })),
    period: t.Union([t.Literal('minute'), t.Literal('day'), t.Literal('month')]),
    window: t.Union([t.Literal('fixed'), t.Literal('sliding')], { default: 'fixed' }),
    token_limit: t.Optional(t.Integer({ minimum: 0 })),
    cost_limit_usd: t.Optional(t.Number({ minimum: 0 })),
  },
  strict,
)
export type QuotaRecord = Static<typeof QuotaRecord>

export const QuotaSettings = t.Object(
  {
    // Redis unreachable: refuse requests (503) by default, or serve them unmetered.
    fail_open: t.Boolean({ default: false }),
    // A reservation whose gateway died stops counting after this long; keep it above the
    // longest request (stream_timeout_ms).
    reservation_ttl_ms: t.Integer({ minimum: 1000, default: 300_000 }),
    // Reserved output when neither the caller nor the model config names a cap (then also sent upstream).
    default_max_output_tokens: t.Integer({ minimum: 1, default: 4096 }),
    // Deadline for each Redis call on the request path.
    redis_timeout_ms: t.Integer({ minimum: 1, default: 250 }),
  },
  { ...strict, default: {} },
)
export type QuotaSettings = Static<typeof QuotaSettings>

export const GatewayConfig = t.Object(
  {
    server: ServerConfig,
    providers: t.Array(ProviderConfig, { minItems: 1 }),
    clients: t.Array(ClientConfig, { default: [] }),
    quotas: t.Array(QuotaRecord, { default: [] }),
    quota: QuotaSettings,
  },
  strict,
)
export type GatewayConfig = Static<typeof GatewayConfig>
