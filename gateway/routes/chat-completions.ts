// POST /v1/chat/completions: authenticate, read and check the body, route, call with retries and fallback, record usage.
import type { Caller, Route, Snapshot } from '../config-store.ts'
import { authenticate } from '../auth.ts'
import { parseChatRequest, wantsStream, wantsUsageChunk, type ChatRequest } from '../chat-request.ts'
import { errorResponse, toGatewayError } from '../errors.ts'
import type { Usage } from '../providers/types.ts'
import { CLIENT_CLOSED, completeChat } from '../upstream/call.ts'
import { openChatStream, type StreamOutcome } from '../upstream/relay.ts'
import { buildUsageRecord, sentAttempts, type RequestOutcome, type UsageSink } from '../usage.ts'
import { readJsonBody } from '../read-body.ts'
import { parseGatewayOptions, type GatewayOptions } from '../gateway-options.ts'
import { estimateRequest, withOutputCap, type Estimate } from '../quota/estimate.ts'
import { planFor, type QuotaService, type Reservation } from '../quota/quota.ts'
import { routeRequest, type RoutingDecision, type RoutingState } from '../routing/router.ts'
import { dispatch, type Attempt, type DispatchDeps, type Verdict } from '../upstream/dispatch.ts'
import type { GatewayMetrics } from '../metrics/request-metrics.ts'
import { startRequestTrace } from '../tracing.ts'
import { SpanKind, type Tracer } from '@opentelemetry/api'

export interface ChatDeps {
  usage: UsageSink
  quota: QuotaService
  metrics: GatewayMetrics
  // Absent when tracing is off: then no span is created at all.
  tracer?: Tracer
  routing: RoutingState & { sleep: DispatchDeps['sleep'] }
  onInternalError(err: unknown, requestId: string): void
}

export interface RequestContext {
  request: Request
  requestId: string
  // The caller's x-client-request-id (or x-request-id), echoed back and recorded.
  clientRequestId?: string
  snapshot: Snapshot
  startedAt: number
}

export async function handleChatCompletions(ctx: RequestContext, deps: ChatDeps): Promise<Response> {
  const { request, requestId, snapshot } = ctx
  const baseHeaders: Record<string, string> = ctx.clientRequestId ? { 'x-request-id': requestId, 'x-client-request-id': ctx.clientRequestId } : { 'x-request-id': requestId }
  const tr = startRequestTrace(deps.tracer, request, 'POST /v1/chat/completions')
  let caller: Caller
  let req: ChatRequest
  let options: GatewayOptions
  try {
    const auth = tr.step('auth')
    try {
      caller = authenticate(request.headers.get('authorization'), snapshot)
    } catch (err) {
      auth.end(toGatewayError(err))
      throw err
    }
    auth.end()
    options = parseGatewayOptions(request.headers.get('x-gateway-options'))
    req = parseChatRequest(await readJsonBody(request, snapshot.config.file.server.max_body_bytes))
  } catch (err) {
    const e = toGatewayError(err)
    deps.metrics.rejected.inc([e.code])
    tr.finish(undefined, e)
    return errorResponse(e, baseHeaders)
  }

  const attempts: Attempt[] = []
  const outcome: RequestOutcome = {
    requestId,
    clientRequestId: ctx.clientRequestId,
    caller,
    model: req.model,
    target: undefined,
    usage: undefined,
    error: undefined,
    startedAt: ctx.startedAt,
    createdAt: new Date(),
    ttfbMs: undefined,
    stream: wantsStream(req),
    clientClosed: false,
    attempts,
    fellBack: false,
  }
  let reservation: Reservation | undefined
  // Called once per request, whatever its outcome: the usage record, then the budget booking.
  const record = () => {
    const rec = buildUsageRecord(outcome, performance.now())
    deps.usage.append(rec)
    if (reservation) {
      const settle = tr.step('quota.settle')
      if (outcome.usage) reservation.settle(rec.input_tokens + rec.output_tokens, rec.cost_pico)
      else reservation.release()
      settle.end()
    }
    forward?.end(outcome.error)
    tr.finish(rec)
  }
  // From the answer's first byte to its last (a stream's whole relay).
  let forward: ReturnType<typeof tr.step> | undefined
  const headers: Record<string, string> = { ...baseHeaders }
  // A failure after the request was accepted: logged if unexpected, recorded, answered in OpenAI's shape.
  const fail = (err: unknown): Response => {
    outcome.error = toGatewayError(err)
    if (outcome.error.code === 'internal_error') deps.onInternalError(err, requestId)
    // The target that gave the final answer, if one was tried.
    const last = attempts.findLast((a) => a.outcome === 'error')
    const route = last && snapshot.targets.get(last.target)
    if (route) {
      outcome.target = route.target
      headers['x-gateway-provider'] = route.target.provider.provider_id
      headers['x-gateway-model'] = route.target.upstreamModel
    }
    record()
    if (attempts.length > 0) headers['x-gateway-attempts'] = String(sentAttempts(attempts))
    return errorResponse(outcome.error, headers)
  }

  let decision: RoutingDecision
  const routing = tr.step('route')
  try {
    decision = routeRequest(snapshot, caller, req, options, deps.routing)
  } catch (err) {
    routing.end(toGatewayError(err))
    return fail(err)
  }
  routing.setAttributes({ 'gateway.policy': decision.policy, 'gateway.chain': decision.chain.map((r) => r.key).join(',') })
  routing.end()
  // Until a target answers, the record names the first one chosen.
  outcome.target = decision.chain[0]?.target

  // Budgets reserve for the dearest target the chain may reach, so a fallback cannot overspend.
  const plan = planFor(snapshot.config.file.quotas, caller)
  const estimates = new Map<Route, Estimate>()
  if (plan.length > 0) {
    const reserving = tr.step('quota.reserve')
    try {
      const settings = snapshot.config.file.quota
      for (const route of decision.chain) estimates.set(route, await estimateRequest(route, req, settings))
      const all = [...estimates.values()]
      const worst = { tokens: Math.max(...all.map((e) => e.tokens)), micro: Math.max(...all.map((e) => e.micro)) }
      reservation = await deps.quota.reserve(plan, requestId, { ...(all[0] as Estimate), ...worst })
      if (reservation) Object.assign(headers, reservation.headers)
      reserving.end()
    } catch (err) {
      reserving.end(toGatewayError(err))
      return fail(err)
    }
  }
  // The request as one target gets it: with the reserved output cap when the caller set none.
  const requestFor = (route: Route): ChatRequest => {
    const est = estimates.get(route)
    return est?.capApplied ? withOutputCap(req, est.maxOutput, route.target.provider.kind) : req
  }
  const routingSettings = snapshot.config.file.routing
  const dispatchDeps: DispatchDeps = {
    ...deps.routing,
    // One admission per upstream call: retries count against the provider's limit too.
    admit: (route, n) => deps.quota.admitProvider(route.target.provider, `${requestId}:${n}`),
  }
  const dispatchSettings = {
    ...routingSettings,
    retries: decision.plan.retries,
    breakers: routingSettings.breaker.enabled,
    deadline: ctx.startedAt + routingSettings.max_total_ms,
  }
  // Each provider call as a client span whose traceparent goes upstream.
  const attempt = <T>(r: Route, call: (headers: Record<string, string> | undefined) => Promise<T>): Promise<T> => {
    if (!deps.tracer) return call(undefined)
    const s = tr.step('provider.attempt', { 'gateway.target': r.key, 'gateway.provider_id': r.target.provider.provider_id, 'gen_ai.request.model': r.target.upstreamModel }, SpanKind.CLIENT)
    return call(tr.headersFor(s)).then(
      (v) => {
        s.end()
        return v
      },
      (err: unknown) => {
        s.end(toGatewayError(err))
        throw err
      },
    )
  }
  // Headers naming the target that answered, and how many tries it took.
  const served = (route: Route, fellBack: boolean) => {
    outcome.target = route.target
    outcome.fellBack = fellBack
    headers['x-gateway-provider'] = route.target.provider.provider_id
    headers['x-gateway-model'] = route.target.upstreamModel
    headers['x-gateway-attempts'] = String(sentAttempts(attempts))
    const est = estimates.get(route)
    if (est?.capApplied) headers['x-gateway-max-tokens'] = String(est.maxOutput)
  }
  // Provider-specific fields are for the kind of provider the request is meant for (the first
  // target's): a fallback of another kind gets the request without them.
  const firstKind = decision.chain[0]?.target.provider.kind
  const providerOptionsFor = (route: Route) => (route.target.provider.kind === firstKind ? (options.provider_options ?? {}) : {})

  if (!outcome.stream) {
    try {
      const { value, route, fellBack } = await dispatch(decision.chain, dispatchSettings, dispatchDeps, request.signal, attempts, (r) =>
        attempt(r, (h) => completeChat(r.adapter, r.target, requestFor(r), providerOptionsFor(r), request.signal, h)),
      )
      forward = tr.step('response.forward')
      served(route, fellBack)
      outcome.usage = value.completion.usage ?? (await estimateUsage(route, req, undefined))
      outcome.ttfbMs = performance.now() - ctx.startedAt
      record()
      if (value.upstreamRequestId) headers['x-upstream-request-id'] = value.upstreamRequestId
      return new Response(value.completion.body, { headers: { ...headers, 'content-type': 'application/json' } })
    } catch (err) {
      if (err !== CLIENT_CLOSED) return fail(err)
      // The provider may still bill the prompt: record what we can count.
      outcome.error = CLIENT_CLOSED
      outcome.clientClosed = true
      recordEstimated(0)
      return errorResponse(CLIENT_CLOSED, headers)
    }
  }

  // Counting tokens may load a tokenizer: the record is written when it is done, off the response path.
  function recordEstimated(contentChunks: number) {
    // The target the request was with when it ended: the last one called.
    const last = attempts.findLast((a) => a.outcome !== 'skipped')
    const route = (last && snapshot.targets.get(last.target)) ?? decision.chain[0]
    if (!route) return record()
    outcome.target = route.target
    estimateUsage(route, req, contentChunks)
      .then((u) => {
        outcome.usage = u
      })
      .catch((err) => deps.onInternalError(err, requestId))
      .finally(record)
  }

  // Fallback ends once the stream's first bytes are ready: what goes wrong after that reaches the
  // client as an SSE error frame. The target's breaker hears how the stream ended.
  let settleStream: ((v: Verdict) => void) | undefined
  let endVerdict: Verdict | undefined
  let streamOpen = false
  const onEnd = (s: StreamOutcome) => {
    if (streamOpen) deps.metrics.streamClosed()
    streamOpen = false
    outcome.ttfbMs = s.ttfbMs
    outcome.clientClosed = s.clientClosed
    outcome.error = s.error
    endVerdict = s.clientClosed ? 'abandon' : s.error ? 'failure' : 'success'
    settleStream?.(endVerdict)
    if (s.usage) {
      outcome.usage = s.usage
      record()
      return
    }
    // No usage chunk (the stream was cut, or the server ignores include_usage): count it ourselves.
    recordEstimated(s.contentChunks)
  }
  try {
    const { server } = snapshot.config.file
    const dispatched = await dispatch(
      decision.chain,
      dispatchSettings,
      dispatchDeps,
      request.signal,
      attempts,
      (r) =>
        attempt(r, (h) =>
          openChatStream(r.adapter, r.target, requestFor(r), {
            callerWantsUsage: wantsUsageChunk(req),
            providerOptions: providerOptionsFor(r),
            timeouts: { totalMs: server.stream_timeout_ms, idleMs: server.stream_idle_timeout_ms },
            clientSignal: request.signal,
            startedAt: ctx.startedAt,
            extraHeaders: h,
            onEnd,
          }),
        ),
      true,
    )
    if (endVerdict === undefined) forward = tr.step('response.forward', { 'gateway.stream': true })
    const { value: opened, route, fellBack } = dispatched
    settleStream = dispatched.settle
    if (endVerdict) settleStream(endVerdict)
    served(route, fellBack)
    if (endVerdict === undefined) {
      streamOpen = true
      deps.metrics.streamOpened()
    }
    if (opened.upstreamRequestId) headers['x-upstream-request-id'] = opened.upstreamRequestId
    return new Response(opened.body, {
      headers: { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
    })
  } catch (err) {
    if (err !== CLIENT_CLOSED) return fail(err)
    outcome.error = CLIENT_CLOSED
    outcome.clientClosed = true
    record()
    return errorResponse(CLIENT_CLOSED, headers)
  }
}

// Input counted locally; output from the chunks relayed (about one token each), or zero.
async function estimateUsage(route: Route, req: ChatRequest, contentChunks: number | undefined): Promise<Usage> {
  return {
    input_tokens: await route.adapter.countTokens(req, route.target),
    output_tokens: contentChunks ?? 0,
    cached_input_tokens: 0,
    cache_write_input_tokens: 0,
    reasoning_tokens: 0,
    estimated: true,
  }
}
