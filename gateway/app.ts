// createApp(deps): mounts the plugins and routes, nothing else.
import { Elysia } from 'elysia'
import type { Logger } from '../shared/log.ts'
import type { ConfigStore, Snapshot } from './config-store.ts'
import { errorResponse, GatewayError, toGatewayError } from './errors.ts'
import { adminKeys } from './routes/admin-keys.ts'
import type { KeyRegistry } from './keys/registry.ts'
import { AuditSink } from './keys/audit.ts'
import { MemoryCacheStore, type CacheStore } from './cache/cache.ts'
import { errorHandler } from './plugins/error-handler.ts'
import { requestContext } from './plugins/request-context.ts'
import { handleChatCompletions } from './routes/chat-completions.ts'
import { healthRoutes, type ReadinessDetail } from './routes/health.ts'
import { listModels, retrieveModel } from './routes/models.ts'
import { countMessageTokens } from './routes/count-tokens.ts'
import { handleEmbeddings } from './routes/embeddings.ts'
import { anthropicErrorResponse, anthropicSurface } from './surfaces/anthropic/surface.ts'
import { responsesSurface } from './surfaces/responses/surface.ts'
import { MemoryResponseStore, type ResponseStore } from './surfaces/responses/store.ts'
import type { QuotaService } from './quota/quota.ts'
import type { QuotaStore } from './quota/types.ts'
import { quotaStatus, requireAdmin, routingStatus } from './routes/admin.ts'
import { quotaUtilization } from './metrics/quota-metrics.ts'
import { teeSinks, type UsageSink } from './usage.ts'
import { GatewayMetrics } from './metrics/request-metrics.ts'
import type { Tracer } from '@opentelemetry/api'
import type { UsageSinkStats } from './usage-stream-sink.ts'
import type { GatewayRouting } from './routing/state.ts'
import { renderMetrics } from './routes/metrics.ts'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { bunConnection, defaultRequestCap } from './connection.ts'
import { RequestGate } from './request-gate.ts'
import { Gauge } from './metrics/registry.ts'
import { PendingWork } from './pending-work.ts'
import { LiveRequests } from './live-requests.ts'
import type { LeaseStats } from './quota/leased-store.ts'
import { ProcessMetrics } from '../shared/process-metrics.ts'

export interface AppDeps {
  store: ConfigStore
  log: Logger
  usage: UsageSink
  quota: QuotaService
  quotaStore: QuotaStore
  // Spans for each request and its steps; absent when tracing is off.
  tracer?: Tracer
  // Request metrics; created here when not given (they also observe every usage record).
  metrics?: GatewayMetrics
  // The usage stream sink's counters, for /metrics (with Redis only).
  usageStats?: () => UsageSinkStats
  // Breakers, latency figures, clocks: state that outlives config snapshots.
  routing: GatewayRouting
  // Readiness of what the gateway depends on beyond its config (Redis when configured).
  ready?: () => Promise<boolean>
  // Where budgets live and, on Redis, whether it persists them (the last check's result); absent: in memory.
  readiness?: () => ReadinessDetail
  // How many requests the process holds at once; absent: the config's cap, else the open-file limit's.
  gate?: RequestGate
  // Settles and records requests leave running after their response; shutdown awaits them.
  pending?: PendingWork
  // The requests under way; shutdown stops those its drain window outlived.
  live?: LiveRequests
  // True once the process is shutting down (/readyz answers 503 draining).
  draining?: () => boolean
  // Budget leases on Redis (for /metrics); absent when budgets are not leased.
  leases?: () => LeaseStats
  // Process figures for /metrics (memory, descriptors, sockets; event-loop lag when the process
  // samples it); absent: the same without the lag.
  runtime?: ProcessMetrics
  // Responses served on /v1/responses with `store`, for previous_response_id (Redis when
  // configured); absent: kept in this process's memory.
  responses?: ResponseStore
  // Keys made at runtime (/admin/keys); absent: the admin key API answers 404.
  keys?: KeyRegistry
  // Where the admin API's audit events go; absent: made here (log, and the worker at ANALYTICS_URL).
  audit?: AuditSink
  // The response cache; absent: kept in this process's memory.
  cache?: CacheStore
}

export function createApp(deps: AppDeps) {
  const metrics = deps.metrics ?? new GatewayMetrics(deps.store, deps.quota)
  const gate = deps.gate ?? defaultGate(deps.store)
  metrics.registry.register(new Gauge('gateway_requests_in_progress', 'Chat requests the process holds now (streams included).', () => gate.inFlight))
  metrics.registry.register(new Gauge('gateway_requests_refused_busy', 'Chat requests refused (503 server_busy) because the process held its cap of requests in progress; only grows.', () => gate.refused))
  const pending = deps.pending ?? new PendingWork()
  metrics.registry.register(new Gauge('gateway_pending_settles', 'Budget settles and releases requests left running after their response (shutdown waits for them).', () => pending.count('settle')))
  metrics.registry.register(new Gauge('gateway_pending_records', 'Usage records requests left to finish after their response (a stream without usage being counted; shutdown waits for them).', () => pending.count('record')))
  const leases = deps.leases
  if (leases) {
    metrics.registry.register(new Gauge('gateway_quota_leases_total', 'Budget leases taken in Redis, each a block of many requests (only grows).', () => leases().leases))
    metrics.registry.register(new Gauge('gateway_quota_reservations_leased_total', 'Budget reservations served from a lease, in memory (only grows).', () => leases().local))
    metrics.registry.register(new Gauge('gateway_quota_reservations_direct_total', 'Budget reservations made in Redis one by one, near a limit (only grows).', () => leases().direct))
    metrics.registry.register(new Gauge('gateway_quota_lease_bookings_failed_total', 'Lease bookings Redis refused or failed; such a lease is booked whole when it expires (only grows).', () => leases().bookingsFailed + leases().bookingsMissed))
  }
  const runtime = deps.runtime ?? new ProcessMetrics()
  const live = deps.live ?? new LiveRequests()
  const chatDeps = {
    gate,
    pending,
    live,
    usage: deps.store.current.config.file.server.metrics ? teeSinks(deps.usage, metrics) : deps.usage,
    metrics,
    tracer: deps.tracer,
    quota: deps.quota,
    routing: deps.routing,
    onInternalError: (err: unknown, requestId: string) => deps.log.error('internal error', { request_id: requestId, err }),
    cache: deps.cache ?? new MemoryCacheStore(),
  }
  const responsesApi = responsesSurface(deps.responses ?? new MemoryResponseStore())
  // Audit events: log lines, and rows in the analytics worker's ClickHouse when one is known.
  const audit = deps.audit ?? new AuditSink(deps.log, () => (process.env.ANALYTICS_URL ? { url: process.env.ANALYTICS_URL, token: deps.store.current.config.adminToken?.reveal() } : undefined))
  const keysApi = async (request: Request, requestId: string, snapshot: Snapshot) => {
    try {
      if (!deps.keys) throw new GatewayError('not_found', `Unknown request URL: ${request.method.slice(0, 16)} /admin/keys.`)
      return await adminKeys(request, snapshot, snapshot.config.adminToken, { keys: deps.keys, audit })
    } catch (err) {
      const e = toGatewayError(err)
      if (e.code === 'internal_error' || e.code === 'dependency_unavailable') deps.log.error('admin key API failed', { request_id: requestId, err })
      return errorResponse(e, { 'x-request-id': requestId })
    }
  }
  return new Elysia({ name: 'gateway' })
    .use(errorHandler(deps.log))
    .use(healthRoutes(deps.store, deps.ready, deps.readiness, deps.draining))
    .use(requestContext(deps.store))
    .post('/v1/chat/completions', function chatCompletions({ request, requestId, clientRequestId, snapshot, startedAt, server }) {
      const connection = bunConnection(server, request, snapshot.config.file.server.idle_timeout_s)
      return handleChatCompletions({ request, requestId, clientRequestId, snapshot, startedAt, connection }, chatDeps)
    })
    .post('/v1/messages', function messages({ request, requestId, clientRequestId, snapshot, startedAt, server }) {
      const connection = bunConnection(server, request, snapshot.config.file.server.idle_timeout_s)
      return handleChatCompletions({ request, requestId, clientRequestId, snapshot, startedAt, connection, surface: anthropicSurface }, chatDeps)
    })
    .post('/v1/responses', function responses({ request, requestId, clientRequestId, snapshot, startedAt, server }) {
      const connection = bunConnection(server, request, snapshot.config.file.server.idle_timeout_s)
      return handleChatCompletions({ request, requestId, clientRequestId, snapshot, startedAt, connection, surface: responsesApi }, chatDeps)
    })
    .post('/v1/embeddings', function embeddings({ request, requestId, clientRequestId, snapshot, startedAt, server }) {
      const connection = bunConnection(server, request, snapshot.config.file.server.idle_timeout_s)
      return handleEmbeddings({ request, requestId, clientRequestId, snapshot, startedAt, connection }, chatDeps)
    })
    .post('/v1/messages/count_tokens', function countTokens({ request, requestId, snapshot, startedAt, server }) {
      const connection = bunConnection(server, request, snapshot.config.file.server.idle_timeout_s)
      return countMessageTokens({ request, requestId, snapshot, startedAt, connection }, deps.routing, gate, deps.quota)
    })
    .all('/admin/keys', function keysAdmin({ request, requestId, snapshot }) {
      return keysApi(request, requestId, snapshot)
    })
    .all('/admin/keys/*', function keyAdmin({ request, requestId, snapshot }) {
      return keysApi(request, requestId, snapshot)
    })
    // The analytics worker's API (costs, the request log, rollups) behind the gateway's admin token,
    // so the console needs one origin and one token.
    .all('/admin/analytics/*', async function analyticsProxy({ request, requestId, snapshot, params }) {
      try {
        requireAdmin(request.headers.get('authorization'), snapshot.config.adminToken, '/admin/analytics')
        if (request.method !== 'GET' && request.method !== 'POST') throw new GatewayError('not_found', `Unknown request URL: ${request.method.slice(0, 16)} /admin/analytics.`)
        const base = process.env.ANALYTICS_URL || `http://127.0.0.1:${process.env.ANALYTICS_PORT || 8081}`
        const url = `${base.replace(/\/$/, '')}/${params['*']}${new URL(request.url).search}`
        let res: Response
        try {
          res = await fetch(url, { method: request.method, headers: { authorization: request.headers.get('authorization') ?? '' }, signal: AbortSignal.timeout(15_000), redirect: 'manual' })
        } catch (err) {
          throw new GatewayError('dependency_unavailable', `The analytics worker (${base}) did not answer.`, { cause: err })
        }
        return new Response(await res.text(), { status: res.status, headers: { 'content-type': res.headers.get('content-type') ?? 'application/json', 'x-request-id': requestId } })
      } catch (err) {
        return errorResponse(toGatewayError(err), { 'x-request-id': requestId })
      }
    })
    // A known path asked with the wrong method: 405 with the one it takes.
    .all('/v1/chat/completions', ({ request }) => wrongMethod(request, 'POST'))
    .all('/v1/responses', ({ request }) => wrongMethod(request, 'POST'))
    .all('/v1/embeddings', ({ request }) => wrongMethod(request, 'POST'))
    .all('/v1/messages', ({ request }) => wrongMethod(request, 'POST', anthropicErrorResponse))
    .all('/v1/messages/count_tokens', ({ request }) => wrongMethod(request, 'POST', anthropicErrorResponse))
    // The admin console: static files; the data come from the admin API with the token the page asks for.
    .get('/ui', () => consoleFile('index.html'))
    .get('/ui/', () => consoleFile('index.html'))
    .get('/ui/app.js', () => consoleFile('app.js'))
    .get('/ui/app.css', () => consoleFile('app.css'))
    .get('/admin/quotas', async function adminQuotas({ request, requestId, snapshot }) {
      try {
        requireAdmin(request.headers.get('authorization'), snapshot.config.adminToken, '/admin/quotas')
        return await quotaStatus(snapshot, deps.quotaStore)
      } catch (err) {
        return errorResponse(toGatewayError(err), { 'x-request-id': requestId })
      }
    })
    .get('/admin/routing', function adminRouting({ request, requestId, snapshot }) {
      try {
        requireAdmin(request.headers.get('authorization'), snapshot.config.adminToken, '/admin/routing')
        return routingStatus(snapshot, deps.routing)
      } catch (err) {
        return errorResponse(toGatewayError(err), { 'x-request-id': requestId })
      }
    })
    .get('/metrics', async function prometheusMetrics({ snapshot }) {
      return renderMetrics(snapshot, deps.routing, deps.usageStats?.(), [...metrics.registry.render(), ...(await quotaUtilization(snapshot, deps.quotaStore)), ...(await runtime.lines())])
    })
    // A model id may hold a slash (sent raw or as %2F): the whole rest of the path is the id.
    .get('/v1/models/*', function model({ request, requestId, snapshot, params }) {
      const anthropic = request.headers.has('anthropic-version')
      try {
        return retrieveModel(anthropic ? anthropicSurface.credentials(request) : request.headers.get('authorization'), snapshot, requestId, decodePath(params['*']), anthropic)
      } catch (err) {
        return (anthropic ? anthropicErrorResponse : errorResponse)(toGatewayError(err), { 'x-request-id': requestId })
      }
    })
    .get('/v1/models', function models({ request, requestId, snapshot }) {
      try {
        const anthropic = request.headers.has('anthropic-version')
        return listModels(anthropic ? anthropicSurface.credentials(request) : request.headers.get('authorization'), snapshot, requestId, anthropic)
      } catch (err) {
        return (request.headers.has('anthropic-version') ? anthropicErrorResponse : errorResponse)(toGatewayError(err), { 'x-request-id': requestId })
      }
    })
}

export type App = ReturnType<typeof createApp>

const CONSOLE_TYPES: Record<string, string> = { 'index.html': 'text/html; charset=utf-8', 'app.js': 'text/javascript; charset=utf-8', 'app.css': 'text/css; charset=utf-8' }
const consoleFiles = new Map<string, string>()

// The console's own files (read once), with a policy that lets the page run only its own script.
function consoleFile(name: string): Response {
  let text = consoleFiles.get(name)
  if (text === undefined) {
    text = readFileSync(join(import.meta.dir, 'ui', name), 'utf8')
    consoleFiles.set(name, text)
  }
  return new Response(text, {
    headers: {
      'content-type': CONSOLE_TYPES[name] ?? 'application/octet-stream',
      'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    },
  })
}

function wrongMethod(request: Request, allow: string, respond = errorResponse): Response {
  const path = new URL(request.url).pathname
  return respond(new GatewayError('method_not_allowed', `${request.method.slice(0, 16)} is not allowed on ${path}; use ${allow}.`), { allow })
}

// A path segment as sent when it is not valid percent-encoding.
function decodePath(raw: string): string {
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}

// Without a gate given: the config's cap, else the open-file limit's (read once).
function defaultGate(store: ConfigStore): RequestGate {
  const fdCap = defaultRequestCap(() => readFileSync('/proc/self/limits', 'utf8'))
  return new RequestGate(() => store.current.config.file.server.max_concurrent_requests ?? fdCap)
}
