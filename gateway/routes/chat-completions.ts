// POST /v1/chat/completions (and /v1/messages, the same pipeline on Anthropic's surface) as named steps: accept (key, options, body), route, reserve, call with retries and fallback, answer once or relay a stream; the request's ledger records how it ended.
import type { Caller, Route, Snapshot } from '../config-store.ts'
import { authenticate } from '../auth.ts'
import { wantsStream, type ChatRequest } from '../chat-request.ts'
import { GatewayError, toGatewayError } from '../errors.ts'
import { CLIENT_CLOSED, completeChat, type CompleteResult } from '../upstream/call.ts'
import { openChatStream, type OpenedStream } from '../upstream/relay.ts'
import type { UsageSink } from '../usage.ts'
import { bodyDeadlineMs, readJsonBody } from '../read-body.ts'
import type { Connection } from '../connection.ts'
import { requestIdHeaders } from '../plugins/request-context.ts'
import type { RequestGate } from '../request-gate.ts'
import type { PendingWork } from '../pending-work.ts'
import type { LiveRequests } from '../live-requests.ts'
import { parseGatewayOptions, type GatewayOptions } from '../gateway-options.ts'
import { openAiSurface, type Surface } from '../surfaces/surface.ts'
import { answerOfBody, cacheUseOf, replayBody, replayStream, type CachedAnswer, type CacheStore, type CacheUse } from '../cache/cache.ts'
import { tapStreamForCache } from '../cache/tap.ts'
import { applyGuardrails, guardrailsFor, moderate, answerTexts, type Fired, type GuardrailRun, type ModerationGuardrail, type ModerationTarget } from '../guardrails/apply.ts'
import { guardedAdapter, outputGuardrails, answerRules, type TextRule } from '../guardrails/output.ts'
import { moderatedAdapter, type OutputModeration } from '../guardrails/moderated-stream.ts'
import type { ProviderAdapter } from '../providers/types.ts'
import type { GuardrailConfig } from '../../shared/config/schema.ts'
import { costPico } from '../../shared/money.ts'
import type { QuotaService } from '../quota/quota.ts'
import { routeRequest, type RoutingDecision, type RoutingState } from '../routing/router.ts'
import { dispatch, type DispatchDeps, type DispatchSettings, type Dispatched } from '../upstream/dispatch.ts'
import type { GatewayMetrics } from '../metrics/request-metrics.ts'
import { startRequestTrace, type RequestTrace } from '../tracing.ts'
import { RequestBudget } from '../request-budget.ts'
import { Place, RequestLedger } from '../request-ledger.ts'
import { SpanKind, type Tracer } from '@opentelemetry/api'

export interface ChatDeps {
  usage: UsageSink
  quota: QuotaService
  metrics: GatewayMetrics
  // Absent when tracing is off: then no span is created at all.
  tracer?: Tracer
  routing: RoutingState & { sleep: DispatchDeps['sleep'] }
  // How many requests the process holds at once.
  gate: RequestGate
  // Work left running after a response (settles, records waiting on a count): tracked for shutdown.
  pending: PendingWork
  // The requests under way, each with its signal: a shutdown stops those its drain window outlived.
  live: LiveRequests
  onInternalError(err: unknown, requestId: string): void
  // The response cache (routes and clients opt in); absent: none.
  cache?: CacheStore
}

export interface RequestContext {
  request: Request
  requestId: string
  // The caller's x-client-request-id (or x-request-id), echoed back and recorded.
  clientRequestId?: string
  snapshot: Snapshot
  startedAt: number
  // The request's socket: deadlines while it is read, none while the gateway works on it.
  connection: Connection
  // The API the request came on: how its key and body are read, its answers and errors written.
  surface?: Surface
}

// Refusals after which the socket is closed rather than kept for another request: the caller is
// unknown, or sent too much or too slowly, or the process is full.
export const CLOSE_AFTER = new Set(['missing_api_key', 'invalid_api_key', 'body_too_large', 'request_timeout', 'client_closed', 'server_busy'])

// A place among the requests in progress (the gate), with the request's own signal: freed once, by
// the ledger or the refusal that ends the request. A full gateway is a server_busy refusal.
export function enterPlace(ctx: RequestContext, deps: ChatDeps): { place: Place; signal: AbortSignal } | GatewayError {
  if (!deps.gate.enter()) {
    deps.metrics.rejected.inc(['server_busy'])
    return new GatewayError('server_busy', 'The gateway holds as many requests as it can; retry shortly.', { retryAfterSeconds: 1 })
  }
  const live = deps.live.open(ctx.request.signal)
  const place = new Place(
    () => {
      deps.gate.leave()
      live.close()
    },
    () => ctx.connection.release(),
  )
  return { place, signal: live.signal }
}

export async function handleChatCompletions(ctx: RequestContext, deps: ChatDeps): Promise<Response> {
  const surface = ctx.surface ?? openAiSurface
  const baseHeaders = requestIdHeaders(ctx)
  const entered = enterPlace(ctx, deps)
  if (entered instanceof GatewayError) return surface.errorResponse(entered, { ...baseHeaders, connection: 'close' })
  const { place, signal } = entered
  const tr = startRequestTrace(deps.tracer, ctx.request, surface.name)
  const accepted = await accept(ctx, deps, tr)
  if (accepted instanceof GatewayError) {
    place.free()
    return surface.errorResponse(accepted, CLOSE_AFTER.has(accepted.code) ? { ...baseHeaders, connection: 'close' } : baseHeaders)
  }
  ctx.connection.hold()
  // Guardrails first: a refused request is recorded (which guardrail, nothing billed), a redacted
  // one goes on as the provider will see it.
  const guardrails = guardrailsOf(ctx, accepted.req.model, accepted.caller)
  let guarded: GuardrailRun | undefined
  try {
    if (guardrails.length > 0) guarded = await applyGuardrails(accepted.req, guardrails, (providerId) => moderationTarget(ctx, providerId))
  } catch (err) {
    const refused = openLedger(ctx, deps, place, tr, accepted, baseHeaders, signal)
    noteGuardrails(deps, refused, (err as { fired?: Fired[] }).fired)
    return failed(surface, refused, err)
  }
  const request: Accepted = guarded ? { ...accepted, guardrails, req: guarded.req, restore: guarded.restore, redacted: guarded.fired.some((f) => f.action === 'redact') } : { ...accepted, guardrails }
  const ledger = openLedger(ctx, deps, place, tr, request, baseHeaders, signal)
  noteGuardrails(deps, ledger, guarded?.fired)
  try {
    return await serve(ctx, deps, ledger, request, tr)
  } catch (err) {
    // A fault of the gateway's own on the way: the request still ends, recorded, its place freed.
    return failed(surface, ledger, err)
  }
}

// The guardrails of the defaults, the request's route and its client.
export function guardrailsOf(ctx: RequestContext, model: string, caller: Caller): GuardrailConfig[] {
  const file = ctx.snapshot.config.file
  if (file.guardrails.length === 0) return []
  return guardrailsFor(file.guardrails, [file.guardrail_defaults, ctx.snapshot.routes.get(model)?.guardrails, caller.client.guardrails])
}

export function moderationTarget(ctx: RequestContext, providerId: string): ModerationTarget | undefined {
  const target = [...ctx.snapshot.targets.values()].find((r) => r.target.provider.provider_id === providerId)?.target
  return target ? { baseUrl: target.provider.base_url, apiKey: target.apiKey } : undefined
}

export function noteGuardrails(deps: ChatDeps, ledger: RequestLedger, fired: Fired[] | undefined): void {
  if (!fired?.length) return
  const seen = (ledger.outcome.guardrails ??= [])
  for (const f of fired) {
    seen.push(f.stage ? { id: f.id, action: f.action, stage: f.stage } : { id: f.id, action: f.action })
    deps.metrics.guardrails.inc([f.id, f.action])
  }
}

// An accepted request: route, reserve, then answer once or relay a stream.
async function serve(ctx: RequestContext, deps: ChatDeps, ledger: RequestLedger, { caller, req, options, restore, redacted, guardrails = [] }: Accepted, tr: RequestTrace): Promise<Response> {
  const routing = tr.step('route')
  let decision: RoutingDecision
  try {
    decision = routeRequest(ctx.snapshot, caller, req, options, deps.routing)
  } catch (err) {
    routing.end(toGatewayError(err))
    return failed(ctx.surface ?? openAiSurface, ledger, err)
  }
  routing.setAttributes({ 'gateway.policy': decision.policy, 'gateway.chain': decision.chain.map((r) => r.key).join(',') })
  routing.end()
  ledger.routed(decision.chain[0])

  // The response cache, for the routes and clients that opted in (chat completions only).
  const surface = ctx.surface ?? openAiSurface
  // Options that shape the answer (provider_options, a chosen provider or policy) are not in the key: not cached.
  const shaped = options.provider_options !== undefined || options.provider !== undefined || options.policy !== undefined || options.fallback !== undefined
  // Answers checked by output guardrails are not cached (a hit would skip the check, and another
  // caller's guardrails may differ).
  const output = outputGuardrails(guardrails)
  const moderation = guardrails.filter((g): g is ModerationGuardrail => g.kind === 'moderation' && g.applies_to !== 'input')
  const use = deps.cache && surface === openAiSurface && !redacted && !shaped && output.length === 0 && moderation.length === 0 ? cacheUseOf(req, caller, ctx.snapshot.routes.get(req.model), ctx.request.headers.get('x-gateway-cache')) : undefined
  if (use && deps.cache) {
    ledger.headers['x-gateway-cache'] = 'miss'
    const hit = use.lookup ? await deps.cache.get(use.key).catch(() => undefined) : undefined
    if (hit) return serveFromCache(ctx, deps, ledger, req, hit)
  }
  const chain = await reserve(surface, ledger, decision.chain, ctx.snapshot, tr)
  if (chain instanceof Response) return chain
  const rules = restore || output.length > 0 ? () => answerRules(restore, output, (f) => noteGuardrails(deps, ledger, [f])) : undefined
  const plan: CallPlan = {
    ...callPlan(ctx, deps, ledger, { ...decision, chain: [...chain] }, tr),
    cache: use?.store ? { use, store: deps.cache! } : undefined,
    answerRules: rules,
    outputModeration: moderation.length > 0 ? { list: moderation, target: (id) => moderationTarget(ctx, id), note: (f) => noteGuardrails(deps, ledger, [f]) } : undefined,
  }
  return ledger.outcome.stream ? relayStream(ctx, ledger, plan, req) : answerOnce(ctx, ledger, plan)
}

// A cached answer: no budget reserved, no provider called, recorded as a hit (cost 0, what it saved).
function serveFromCache(ctx: RequestContext, deps: ChatDeps, ledger: RequestLedger, req: ChatRequest, hit: CachedAnswer): Response {
  deps.metrics.cacheHits.inc([])
  const headers: Record<string, string> = { ...ledger.headers, 'x-gateway-cache': 'hit', 'x-gateway-provider': hit.provider_id, 'x-gateway-model': hit.upstream_model, 'x-gateway-attempts': '0' }
  ledger.outcome.ttfbMs = performance.now() - ctx.startedAt
  ledger.end({ kind: 'cached', hit: { provider_id: hit.provider_id, upstream_model: hit.upstream_model, saved_tokens: hit.usage.input_tokens + hit.usage.output_tokens, saved_pico: hit.cost_pico } })
  if (ledger.outcome.stream) return new Response(replayStream(hit, (ctx.surface ?? openAiSurface).wantsUsageChunk(req)), { headers: { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' } })
  return new Response(replayBody(hit), { headers: { ...headers, 'content-type': 'application/json' } })
}

interface Accepted {
  caller: Caller
  req: ChatRequest
  options: GatewayOptions
  // Placeholders of redacted text → the originals, put back into the answer (pii restore).
  restore?: Map<string, string>
  // A guardrail changed the request: its answer is not cached (it would answer others' originals).
  redacted?: boolean
  // The guardrails that apply to it (the defaults, its route's, its client's).
  guardrails?: GuardrailConfig[]
}

// Who is calling and what it asks: the key, the gateway options, the body under its deadline.
// A refusal here is answered at once and counted; no record (there is no caller to bill).
async function accept(ctx: RequestContext, deps: ChatDeps, tr: RequestTrace): Promise<Accepted | GatewayError> {
  const { request, snapshot } = ctx
  try {
    const auth = tr.step('auth')
    let caller: Caller
    try {
      caller = authenticate((ctx.surface ?? openAiSurface).credentials(request), snapshot)
    } catch (err) {
      auth.end(toGatewayError(err))
      throw err
    }
    auth.end()
    const options = parseGatewayOptions(request.headers.get('x-gateway-options'))
    const { server } = snapshot.config.file
    const deadlineMs = bodyDeadlineMs(request.headers.get('content-length'), server.max_body_bytes, server.body_timeout_ms, server.body_timeout_ms_per_mb)
    ctx.connection.bodyDeadline(deadlineMs)
    const req = await (ctx.surface ?? openAiSurface).parse(await readJsonBody(request, { limit: server.max_body_bytes, deadlineMs }), request, caller)
    await deps.quota.admitKey(caller.key)
    return { caller, req, options }
  } catch (err) {
    const e = toGatewayError(err)
    if (e.code === 'internal_error') deps.onInternalError(err, ctx.requestId)
    deps.metrics.rejected.inc([e.code])
    tr.finish(undefined, e)
    return e
  }
}

function openLedger(ctx: RequestContext, deps: ChatDeps, place: Place, tr: RequestTrace, a: Accepted, headers: Record<string, string>, signal: AbortSignal): RequestLedger {
  const unsupported = a.options.unsupported_params ?? a.caller.client.unsupported_params ?? ctx.snapshot.routes.get(a.req.model)?.unsupportedParams
  const budget = new RequestBudget(deps.quota, ctx.requestId, a.req, a.caller, ctx.snapshot.config.file.quotas, a.options.provider_options ?? {}, { unsupported })
  return new RequestLedger(deps, place, tr, budget, {
    requestId: ctx.requestId,
    clientRequestId: ctx.clientRequestId,
    caller: a.caller,
    req: a.req,
    stream: wantsStream(a.req),
    endpoint: (ctx.surface ?? openAiSurface).endpoint,
    startedAt: ctx.startedAt,
    headers,
    routeOf: (key) => ctx.snapshot.targets.get(key),
    signal,
  })
}

// A failure after the request was accepted: recorded, answered in the surface's shape.
function failed(surface: Surface, ledger: RequestLedger, err: unknown): Response {
  const error = toGatewayError(err)
  ledger.end({ kind: 'failed', error })
  return surface.errorResponse(error, ledger.headers)
}

// Budgets reserve for the dearest target the chain may reach, so a fallback cannot overspend.
// Returns the chain the request can go to, or the answer to a request refused here.
async function reserve(surface: Surface, ledger: RequestLedger, chain: readonly Route[], snapshot: Snapshot, tr: RequestTrace): Promise<readonly Route[] | Response> {
  if (!ledger.budget.budgeted) return chain
  const reserving = tr.step('quota.reserve')
  try {
    const kept = await ledger.budget.reserve(chain, snapshot.config.file.quota)
    Object.assign(ledger.headers, ledger.budget.headers)
    reserving.end()
    return kept
  } catch (err) {
    reserving.end(toGatewayError(err))
    return failed(surface, ledger, err)
  }
}

// How the request's calls are made: the chain, the settings, admission (with a top-up reservation
// after a call that may have been billed), a span per call.
export interface CallPlan {
  // The rules answers go through: the originals of redacted text put back, output guardrails.
  answerRules?: () => TextRule[]
  // Moderation of non-streamed answers.
  outputModeration?: OutputModeration
  // Where the answer is kept for the response cache, when the request uses it.
  cache?: { use: CacheUse; store: CacheStore }
  chain: readonly Route[]
  settings: DispatchSettings
  deps: DispatchDeps
  // One call to a target under its own span, its failure noted for the budget.
  attempt<T>(route: Route, call: (traceHeaders: Record<string, string> | undefined) => Promise<T>): Promise<T>
}

export function callPlan(ctx: RequestContext, deps: ChatDeps, ledger: RequestLedger, decision: RoutingDecision, tr: RequestTrace): CallPlan {
  const routing = ctx.snapshot.config.file.routing
  const { budget } = ledger
  return {
    chain: decision.chain,
    settings: { ...routing, retries: decision.plan.retries, breakers: routing.breaker.enabled, deadline: ctx.startedAt + routing.max_total_ms },
    deps: {
      ...deps.routing,
      // One admission per upstream call: retries count against the provider's limit too, and a call
      // after one that may have been billed must first be paid for.
      admit: async (route) => {
        await budget.topUp()
        return deps.quota.admitProvider(route.target.provider)
      },
    },
    attempt: (route, call) => {
      const noteFailure = (err: unknown) => {
        budget.noteFailure(route, err)
        throw err
      }
      if (!deps.tracer) return call(undefined).catch(noteFailure)
      const s = tr.step('provider.attempt', { 'gateway.target': route.key, 'gateway.provider_id': route.target.provider.provider_id, 'gen_ai.request.model': route.target.upstreamModel }, SpanKind.CLIENT)
      return call(tr.headersFor(s)).then(
        (v) => {
          s.end()
          return v
        },
        (err: unknown) => {
          s.end(toGatewayError(err))
          return noteFailure(err)
        },
      )
    },
  }
}

// A non-streaming request: call until a target answers, check its usage, answer.
async function answerOnce(ctx: RequestContext, ledger: RequestLedger, plan: CallPlan): Promise<Response> {
  const surface = ctx.surface ?? openAiSurface
  const server = ctx.snapshot.config.file.server
  const limits = { maxBytes: server.max_response_bytes, maxRatio: server.max_decompression_ratio }
  const { budget } = ledger
  ledger.dispatching()
  let served: Dispatched<CompleteResult>
  try {
    served = await dispatch(plan.chain, plan.settings, plan.deps, ledger.signal, ledger.attempts, (r) => {
      ledger.trying(r)
      return plan.attempt(r, (h) => completeChat(guarding(plan, surface.adapterFor(r, budget.requestFor(r))), r.target, budget.requestFor(r), budget.optionsFor(r), ledger.signal, limits, h))
    })
  } catch (err) {
    if (err !== CLIENT_CLOSED) return failed(surface, ledger, err)
    // The provider may finish (and bill) a call whose caller left: the record says what was seen
    // (nothing), the budget books the whole estimate, the most it can cost.
    ledger.end({ kind: 'abandoned' })
    return surface.errorResponse(CLIENT_CLOSED, ledger.headers)
  }
  const { value, route, fellBack } = served
  ledger.serve(route, fellBack)
  ledger.outcome.ttfbMs = performance.now() - ctx.startedAt
  let body = value.completion.body
  const reported = value.completion.usage
  // An answer an output guardrail refused: billed as answered, the caller told why.
  const refusal = value.completion.refusal ?? (plan.outputModeration ? await moderateAnswer(plan.outputModeration, body) : undefined)
  if (refusal) ledger.outcome.error = refusal
  if (reported) {
    const usage = budget.guardFor(route).check(reported)
    // Figures that failed the check never reach the caller either, nor odd extras around sane
    // counts, nor a second usage key (JSON takes the last; the caller's parser may not).
    if (usage !== reported || reported.rewrite || body.indexOf('"usage"') !== body.lastIndexOf('"usage"')) body = surface.withUsage(body, usage)
    ledger.end({ kind: 'answered', usage })
    // Kept for the cache: an answer whose usage passed the check.
    if (plan.cache && usage === reported && !refusal) {
      const answer = answerOfBody(body, usage, { provider_id: route.target.provider.provider_id, upstream_model: route.target.upstreamModel, cost_pico: costPico(route.target.price, usage.input_tokens, usage.output_tokens) })
      if (answer) void plan.cache.store.put(plan.cache.use.key, answer, plan.cache.use.config.ttl_seconds * 1000).catch(() => undefined)
    }
  } else {
    // No usage in the answer: recorded as counted from its text, booked as the whole estimate.
    ledger.end({ kind: 'unreported', seen: { body }, bookWhole: true })
  }
  if (refusal) return surface.errorResponse(refusal, ledger.headers)
  const headers: Record<string, string> = { ...ledger.headers, 'content-type': 'application/json' }
  if (value.upstreamRequestId) headers['x-upstream-request-id'] = value.upstreamRequestId
  return new Response(body, { headers })
}

// A non-streamed answer asked about by the moderation guardrails that check answers: the refusal
// of one that blocks it, else undefined (one that logs is noted).
async function moderateAnswer(m: NonNullable<CallPlan['outputModeration']>, body: string): Promise<GatewayError | undefined> {
  const texts = answerTexts(body)
  for (const g of m.list) {
    const flagged = await moderate(g, texts, m.target(g.provider))
    if (!flagged) continue
    if (g.action === 'block') {
      m.note({ id: g.id, kind: g.kind, action: 'block', stage: 'output' })
      return new GatewayError('content_policy_violation', `The answer was stopped by guardrail '${g.id}' (moderation: ${flagged === 'error' ? 'the moderation service could not be asked' : 'flagged by the moderation service'}).`, { param: `guardrail:${g.id}` })
    }
    m.note({ id: g.id, kind: g.kind, action: 'log', stage: 'output' })
  }
  return undefined
}

// A streaming request: fallback ends once the stream's first bytes are ready; what goes wrong after
// that reaches the client as an SSE error frame. The target's breaker hears how the stream ended.
async function relayStream(ctx: RequestContext, ledger: RequestLedger, plan: CallPlan, req: ChatRequest): Promise<Response> {
  const surface = ctx.surface ?? openAiSurface
  const server = ctx.snapshot.config.file.server
  const { budget } = ledger
  ledger.dispatching()
  let served: Dispatched<OpenedStream>
  try {
    served = await dispatch(
      plan.chain,
      plan.settings,
      plan.deps,
      ledger.signal,
      ledger.attempts,
      (r) => {
        const guard = ledger.trying(r)
        return plan.attempt(r, (h) =>
          openChatStream(moderating(plan, server.max_response_bytes, cacheTap(plan, guarding(plan, surface.adapterFor(r, budget.requestFor(r))))), r.target, budget.requestFor(r), {
            limits: { maxEventBytes: server.max_event_bytes, maxErrorBytes: server.max_response_bytes, maxRatio: server.max_decompression_ratio },
            callerWantsUsage: surface.wantsUsageChunk(req),
            errorFrame: surface.errorFrame,
            checkUsage: guard.check,
            providerOptions: budget.optionsFor(r),
            timeouts: { totalMs: server.stream_timeout_ms, idleMs: server.stream_idle_timeout_ms },
            keepaliveMs: server.stream_keepalive_ms,
            clientSignal: ledger.signal,
            startedAt: ctx.startedAt,
            extraHeaders: h,
            onEnd: (stream) => ledger.end({ kind: 'stream', stream }),
          }),
        )
      },
      true,
    )
  } catch (err) {
    if (err !== CLIENT_CLOSED) return failed(surface, ledger, err)
    // The caller left before the first content: the provider may have been working (thinking).
    ledger.end({ kind: 'abandoned' })
    return surface.errorResponse(CLIENT_CLOSED, ledger.headers)
  }
  const { value: opened, route, fellBack, settle } = served
  ledger.serve(route, fellBack, settle)
  const headers: Record<string, string> = { ...ledger.headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' }
  if (opened.upstreamRequestId) headers['x-upstream-request-id'] = opened.upstreamRequestId
  return new Response(opened.body, { headers })
}

// A streamed answer kept for the cache as it completes, when the request uses it.
function cacheTap(plan: CallPlan, adapter: ProviderAdapter): ProviderAdapter {
  const cache = plan.cache
  if (!cache) return adapter
  return tapStreamForCache(adapter, (answer) => void cache.store.put(cache.use.key, answer, cache.use.config.ttl_seconds * 1000).catch(() => undefined))
}

// A streamed answer held until the moderation guardrails that check answers have judged it whole.
function moderating(plan: CallPlan, maxBytes: number, adapter: ProviderAdapter): ProviderAdapter {
  return plan.outputModeration ? moderatedAdapter(adapter, plan.outputModeration, maxBytes) : adapter
}

// The answer through the rules (the originals of redacted text put back, output guardrails), when any apply.
function guarding(plan: CallPlan, adapter: ProviderAdapter): ProviderAdapter {
  return plan.answerRules ? guardedAdapter(adapter, plan.answerRules) : adapter
}
