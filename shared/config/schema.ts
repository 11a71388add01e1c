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
    max_output_tokens: t.Optional(t.Integer({ minimum: 1, maximum: 1_048_576 })),
    // Input tokens reserved for every image sent to this model, replacing the gateway's own rules
    // for the provider (for models it does not know, e.g. a vision model on a self-hosted server).
    max_tokens_per_image: t.Optional(t.Integer({ minimum: 1, maximum: 1_000_000 })),
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
    // Background health checks (routing.health_check) for this provider; off for one that bills them.
    health_check: t.Boolean({ default: true }),
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

// What a target does with a parameter it cannot honour: refuse the request (400 naming it), or
// drop it and say so (x-gateway-dropped-params, and the usage record).
export const UnsupportedParams = t.Union([t.Literal('reject'), t.Literal('drop')])
export type UnsupportedParams = Static<typeof UnsupportedParams>

// The response cache, opt-in per route or client (the client's setting wins): answers kept for
// ttl_seconds, shared within the scope (team by default: one tenant never reads another's), for
// deterministic requests (temperature 0) unless deterministic_only is false.
export const CacheConfig = t.Object(
  {
    ttl_seconds: t.Integer({ minimum: 1, maximum: 30 * 86_400 }),
    scope: t.Union([t.Literal('team'), t.Literal('client'), t.Literal('global')], { default: 'team' }),
    deterministic_only: t.Boolean({ default: true }),
  },
  strict,
)
export type CacheConfig = Static<typeof CacheConfig>

// Guardrails: checks on what a request sends (and, for pii restore, what it gets back), by id.
const GuardrailId = t.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' })
const AppliesTo = t.Union([t.Literal('input'), t.Literal('output'), t.Literal('both')], { default: 'input' })

export const GuardrailConfig = t.Union([
  t.Object(
    {
      id: GuardrailId,
      kind: t.Literal('pii'),
      // redact: replaced before the provider sees it ([EMAIL_1], ...); block: the request is refused.
      action: t.Union([t.Literal('redact'), t.Literal('block')]),
      // With redact: the originals put back in the answer (stream included).
      restore: t.Boolean({ default: false }),
      types: t.Array(t.Union([t.Literal('email'), t.Literal('phone'), t.Literal('card'), t.Literal('iban'), t.Literal('secret')]), { default: ['email', 'phone', 'card', 'iban', 'secret'] }),
      // What it checks: the request (input), the answer (output: redact replaces, block stops it), or both.
      applies_to: AppliesTo,
    },
    strict,
  ),
  t.Object(
    {
      id: GuardrailId,
      kind: t.Literal('regex'),
      action: t.Union([t.Literal('redact'), t.Literal('block')]),
      // JavaScript regular expressions, matched case-insensitively.
      patterns: t.Array(t.String({ minLength: 1, maxLength: 1000 }), { minItems: 1, maxItems: 100 }),
      applies_to: AppliesTo,
      // On a streamed answer, how much text is held back while a match may be forming: the longest
      // match it must catch (a longer one may go out in part).
      max_match_chars: t.Integer({ minimum: 1, maximum: 4096, default: 256 }),
    },
    strict,
  ),
  t.Object({ id: GuardrailId, kind: t.Literal('prompt_injection'), action: t.Union([t.Literal('block'), t.Literal('log')]) }, strict),
  t.Object(
    {
      id: GuardrailId,
      kind: t.Literal('moderation'),
      // A provider speaking OpenAI's /v1/moderations (its base_url and key), and the model to ask.
      provider: t.String({ minLength: 1 }),
      model: t.String({ minLength: 1 }),
      // Output: a non-streamed answer is asked about before the caller gets it.
      applies_to: AppliesTo,
      timeout_ms: t.Integer({ minimum: 10, maximum: 60_000, default: 2000 }),
      on_error: t.Union([t.Literal('allow'), t.Literal('block')], { default: 'allow' }),
      action: t.Union([t.Literal('block'), t.Literal('log')]),
    },
    strict,
  ),
])
export type GuardrailConfig = Static<typeof GuardrailConfig>

export const ClientConfig = t.Object(
  {
    client_id: t.String({ minLength: 1 }),
    team_id: t.String({ minLength: 1 }),
    // Model names this client may call; absent means every configured model.
    models: t.Optional(t.Array(t.String({ minLength: 1 }))),
    keys: t.Array(VirtualKey, { minItems: 1 }),
    // Overrides the route's setting; a request's x-gateway-options overrides this.
    unsupported_params: t.Optional(UnsupportedParams),
    cache: t.Optional(CacheConfig),
    // Guardrail ids applied to this client's requests (beside guardrail_defaults and the route's).
    guardrails: t.Optional(t.Array(GuardrailId)),
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
    // A request body must arrive within this, plus body_timeout_ms_per_mb for each MiB it declares
    // beyond the first (408 past it): 10 s for 1 MiB, 16 s for 4 MiB by default.
    body_timeout_ms: t.Integer({ minimum: 100, default: 10_000 }),
    body_timeout_ms_per_mb: t.Integer({ minimum: 0, default: 2_000 }),
    // A socket with no request in progress (keep-alive between requests, a client that connects
    // and says nothing) is closed after this many seconds (Bun closes it within twice that).
    idle_timeout_s: t.Integer({ minimum: 1, maximum: 255, default: 5 }),
    // Chat requests in progress at once in this process, streams included; past it, 503
    // server_busy. Default: half the process's open-file limit less 64 (each request holds a
    // client and an upstream socket).
    max_concurrent_requests: t.Optional(t.Integer({ minimum: 1 })),
    // A non-streaming provider answer, decoded, may be at most this large (502 past it).
    max_response_bytes: t.Integer({ minimum: 1024, default: 32 * 1024 * 1024 }),
    // One SSE event from a provider may be at most this large (a broken stream past it).
    max_event_bytes: t.Integer({ minimum: 1024, default: 1024 * 1024 }),
    // A compressed provider answer may decode to at most this many bytes per byte received.
    max_decompression_ratio: t.Integer({ minimum: 2, default: 100 }),
    // Whole-stream deadline, first byte to last.
    stream_timeout_ms: t.Integer({ minimum: 1, default: 120_000 }),
    // Longest a read from the provider may wait: before its first byte and between two chunks.
    // Time the stream waits on a slow caller does not count.
    stream_idle_timeout_ms: t.Integer({ minimum: 1, default: 30_000 }),
    // A stream held for its first content (a model thinking) is committed after this long, and
    // SSE comments keep it alive whenever the client got nothing for this long. 0: never.
    stream_keepalive_ms: t.Integer({ minimum: 0, default: 15_000 }),
    // At SIGTERM, how long requests under way may run to their end; those still running then are
    // stopped (a 503 or an error frame gateway_shutting_down), each recorded and its budget settled.
    // Keep it at least 12 s below the orchestrator's kill grace (Kubernetes: 30 s, so 18 s at most).
    shutdown_drain_ms: t.Integer({ minimum: 0, maximum: 3_600_000, default: 10_000 }),
    // At SIGTERM, how long /readyz answers 503 while requests are still taken, before the listener
    // closes: set it to your load balancer's readiness period when it polls (0: close at once).
    shutdown_unready_ms: t.Integer({ minimum: 0, maximum: 600_000, default: 0 }),
    // Gateway processes on one port (SO_REUSEPORT), each using a core; GATEWAY_WORKERS overrides.
    // More than one needs REDIS_URL: budgets, rate limits and breakers must be shared.
    workers: t.Integer({ minimum: 1, maximum: 256, default: 1 }),
    log_level: t.Optional(LogLevel),
    // Request metrics on /metrics (off only to measure what they cost).
    metrics: t.Boolean({ default: true }),
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
    // Budgets are counted in integers the stores hold exactly (cost in micro-dollars).
    token_limit: t.Optional(t.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
    cost_limit_usd: t.Optional(t.Number({ minimum: 0, maximum: 1_000_000_000 })),
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
    // On Redis, each process leases blocks of a budget for this many requests' estimates and
    // serves reservations from them in memory (0: every request reserves in Redis itself); a lease
    // takes no new requests after lease_max_age_ms and is then booked. Read at start.
    lease_requests: t.Integer({ minimum: 0, maximum: 10_000, default: 64 }),
    lease_max_age_ms: t.Integer({ minimum: 10, maximum: 60_000, default: 1000 }),
  },
  { ...strict, default: {} },
)
export type QuotaSettings = Static<typeof QuotaSettings>

const policyLiterals = () => [t.Literal('explicit'), t.Literal('cost'), t.Literal('latency'), t.Literal('ab')]
export const RoutePolicy = t.Union(policyLiterals())
export type RoutePolicy = Static<typeof RoutePolicy>

export const RouteTarget = t.Object(
  {
    provider: t.String({ minLength: 1 }),
    // A model `name` in that provider's models.
    model: t.String({ minLength: 1 }),
    // Share of traffic under the `ab` policy (relative to the route's other weights).
    weight: t.Optional(t.Integer({ minimum: 0 })),
  },
  strict,
)
export type RouteTarget = Static<typeof RouteTarget>

// A model name clients call, served by one of several targets chosen by a policy.
export const RouteConfig = t.Object(
  {
    name: t.String({ minLength: 1 }),
    policy: t.Union(policyLiterals(), { default: 'explicit' }),
    targets: t.Array(RouteTarget, { minItems: 1 }),
    // After the chosen target fails (retries spent), try the others in order.
    fallback: t.Boolean({ default: true }),
    // Retries on the same target; routing.retries when absent.
    retries: t.Optional(t.Integer({ minimum: 0, maximum: 10 })),
    // ab: the same client always lands on the same target.
    sticky: t.Boolean({ default: false }),
    // reject (default) or drop: see UnsupportedParams.
    unsupported_params: t.Optional(UnsupportedParams),
    cache: t.Optional(CacheConfig),
    // Guardrail ids applied to this client's requests (beside guardrail_defaults and the route's).
    guardrails: t.Optional(t.Array(GuardrailId)),
  },
  strict,
)
export type RouteConfig = Static<typeof RouteConfig>

export const BreakerSettings = t.Object(
  {
    enabled: t.Boolean({ default: true }),
    // Opens when failures / requests over the window exceed this, with at least min_requests.
    failure_rate: t.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.5 }),
    min_requests: t.Integer({ minimum: 1, default: 10 }),
    window_ms: t.Integer({ minimum: 1000, default: 30_000 }),
    // Open this long, then half-open: up to half_open_probes requests test the target.
    cooldown_ms: t.Integer({ minimum: 1, default: 15_000 }),
    half_open_probes: t.Integer({ minimum: 1, default: 1 }),
    // The longest a half-open probe holds its slot without a verdict (a pass never returned frees it
    // then). Default: the longest a request may run (server.stream_timeout_ms or the slowest
    // provider's timeout_ms, whichever is longer) plus a second, so a slow probe still decides.
    probe_lease_ms: t.Optional(t.Integer({ minimum: 1 })),
  },
  { ...strict, default: {} },
)
export type BreakerSettings = Static<typeof BreakerSettings>

// The breaker settings with probe_lease_ms filled in from the request deadlines when not set.
export function breakerSettingsOf(file: { server: { stream_timeout_ms: number }; providers: ReadonlyArray<{ timeout_ms: number }>; routing: { breaker: BreakerSettings } }): BreakerSettings {
  const b = file.routing.breaker
  if (b.probe_lease_ms !== undefined) return b
  const longest = Math.max(file.server.stream_timeout_ms, ...file.providers.map((p) => p.timeout_ms))
  return { ...b, probe_lease_ms: longest + 1000 }
}

// Retries to a target (a request's second and later calls to it; a fallback's first call is not
// one) stay within a share of the requests that target had over the window, never below a floor:
// in a brownout retries add a fifth to the load, not twice it.
export const RetryBudgetSettings = t.Object(
  {
    enabled: t.Boolean({ default: true }),
    // Retries allowed per request the target had over the window (0.2: one retry for five requests).
    ratio: t.Number({ minimum: 0, maximum: 10, default: 0.2 }),
    // Retries allowed over the window whatever the traffic, so a quiet target still gets its few.
    min_retries: t.Integer({ minimum: 0, default: 3 }),
    window_ms: t.Integer({ minimum: 1000, default: 10_000 }),
  },
  { ...strict, default: {} },
)
export type RetryBudgetSettings = Static<typeof RetryBudgetSettings>

export const RoutingSettings = t.Object(
  {
    retries: t.Integer({ minimum: 0, maximum: 10, default: 2 }),
    // Full jitter: a retry waits random(0, min(backoff_max_ms, backoff_base_ms * 2^n)).
    backoff_base_ms: t.Integer({ minimum: 0, default: 100 }),
    backoff_max_ms: t.Integer({ minimum: 0, default: 2_000 }),
    // A provider's retry-after is waited for up to this; a longer one moves on to the next target.
    max_retry_after_ms: t.Integer({ minimum: 0, default: 5_000 }),
    // No retry or fallback starts this long after the request arrived; the caller gets the last error.
    max_total_ms: t.Integer({ minimum: 1, default: 180_000 }),
    breaker: BreakerSettings,
    retry_budget: RetryBudgetSettings,
    latency: t.Object(
      {
        // Samples older than this stop counting toward a target's p95.
        window_ms: t.Integer({ minimum: 1000, default: 60_000 }),
        // Fewer samples than this: the target's latency is unknown, and the policy tries it first.
        min_samples: t.Integer({ minimum: 1, default: 5 }),
        // How often each instance shares its figures through Redis (when REDIS_URL is set).
        share_interval_ms: t.Integer({ minimum: 100, default: 5_000 }),
      },
      { ...strict, default: {} },
    ),
    health_check: t.Object(
      {
        enabled: t.Boolean({ default: true }),
        interval_ms: t.Integer({ minimum: 100, default: 30_000 }),
        timeout_ms: t.Integer({ minimum: 1, default: 5_000 }),
      },
      { ...strict, default: {} },
    ),
    // Hot reload: the config file (or Redis key) is re-read this often, besides file-change events.
    reload_poll_ms: t.Integer({ minimum: 100, default: 30_000 }),
  },
  { ...strict, default: {} },
)
export type RoutingSettings = Static<typeof RoutingSettings>

export const UsageSettings = t.Object(
  {
    // Records held in memory while the usage stream (Redis) is unreachable; past this, new
    // records are dropped, logged and counted (gateway_usage_records_dropped_total).
    max_buffered_records: t.Integer({ minimum: 1, default: 50_000 }),
  },
  { ...strict, default: {} },
)

export const GatewayConfig = t.Object(
  {
    server: ServerConfig,
    usage: UsageSettings,
    providers: t.Array(ProviderConfig, { minItems: 1 }),
    routes: t.Array(RouteConfig, { default: [] }),
    guardrails: t.Array(GuardrailConfig, { default: [] }),
    // Guardrail ids applied to every request.
    guardrail_defaults: t.Array(GuardrailId, { default: [] }),
    routing: RoutingSettings,
    clients: t.Array(ClientConfig, { default: [] }),
    quotas: t.Array(QuotaRecord, { default: [] }),
    quota: QuotaSettings,
  },
  strict,
)
export type GatewayConfig = Static<typeof GatewayConfig>
