// POST /v1/chat/completions: authenticate, read and check the body, pick the target, call it, record usage.
import type { Caller, Route, Snapshot } from '../config-store.ts'
import { authenticate, mayUseModel } from '../auth.ts'
import { parseChatRequest, wantsStream, wantsUsageChunk, type ChatRequest } from '../chat-request.ts'
import { errorResponse, GatewayError, toGatewayError } from '../errors.ts'
import type { Usage } from '../providers/types.ts'
import { CLIENT_CLOSED, completeChat } from '../upstream/call.ts'
import { openChatStream, type StreamOutcome } from '../upstream/relay.ts'
import { buildUsageRecord, type RequestOutcome, type UsageSink } from '../usage.ts'
import { readJsonBody } from '../read-body.ts'
import { parseGatewayOptions, type GatewayOptions } from '../gateway-options.ts'
import { estimateRequest, withOutputCap } from '../quota/estimate.ts'
import { planFor, type QuotaService, type Reservation } from '../quota/quota.ts'

export interface ChatDeps {
  usage: UsageSink
  quota: QuotaService
  onInternalError(err: unknown, requestId: string): void
}

export interface RequestContext {
  request: Request
  requestId: string
  snapshot: Snapshot
  startedAt: number
}

export async function handleChatCompletions(ctx: RequestContext, deps: ChatDeps): Promise<Response> {
  const { request, requestId, snapshot } = ctx
  const baseHeaders: Record<string, string> = { 'x-request-id': requestId }
  let caller: Caller
  let req: ChatRequest
  let options: GatewayOptions
  try {
    caller = authenticate(request.headers.get('authorization'), snapshot)
    options = parseGatewayOptions(request.headers.get('x-gateway-options'))
    req = parseChatRequest(await readJsonBody(request, snapshot.config.file.server.max_body_bytes))
  } catch (err) {
    return errorResponse(toGatewayError(err), baseHeaders)
  }

  const outcome: RequestOutcome = {
    requestId,
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
    attempts: 0,
  }
  let reservation: Reservation | undefined
  // Called once per request, whatever its outcome: the usage record, then the budget booking.
  const record = () => {
    const rec = buildUsageRecord(outcome, performance.now())
    deps.usage.append(rec)
    if (!reservation) return
    if (outcome.usage) reservation.settle(rec.input_tokens + rec.output_tokens, rec.cost_pico)
    else reservation.release()
  }
  // A failure after the request was accepted: logged if unexpected, recorded, answered in OpenAI's shape.
  const fail = (err: unknown, headers: Record<string, string>): Response => {
    outcome.error = toGatewayError(err)
    if (outcome.error.code === 'internal_error') deps.onInternalError(err, requestId)
    record()
    return errorResponse(outcome.error, headers)
  }

  let route: Route
  try {
    route = await pickRoute(snapshot, caller, req.model, deps.quota, requestId)
  } catch (err) {
    return fail(err, baseHeaders)
  }
  const { target, adapter } = route
  outcome.target = target
  outcome.attempts = 1
  // Counting tokens may load a tokenizer: the record is written when it is done, off the response path.
  const recordEstimated = (contentChunks: number) => {
    estimateUsage(route, req, contentChunks)
      .then((u) => {
        outcome.usage = u
      })
      .catch((err) => deps.onInternalError(err, requestId))
      .finally(record)
  }
  const headers: Record<string, string> = { ...baseHeaders, 'x-gateway-provider': target.provider.provider_id, 'x-gateway-model': target.upstreamModel }
  const plan = planFor(snapshot.config.file.quotas, caller)
  if (plan.length > 0) {
    try {
      const est = await estimateRequest(route, req, snapshot.config.file.quota)
      if (est.capApplied) {
        req = withOutputCap(req, est.maxOutput, target.provider.kind)
        headers['x-gateway-max-tokens'] = String(est.maxOutput)
      }
      reservation = await deps.quota.reserve(plan, requestId, est)
      if (reservation) Object.assign(headers, reservation.headers)
    } catch (err) {
      return fail(err, headers)
    }
  }

  if (!outcome.stream) {
    try {
      const { completion, upstreamRequestId } = await completeChat(adapter, target, req, options.provider_options ?? {}, request.signal)
      outcome.usage = completion.usage ?? (await estimateUsage(route, req, undefined))
      outcome.ttfbMs = performance.now() - ctx.startedAt
      record()
      if (upstreamRequestId) headers['x-upstream-request-id'] = upstreamRequestId
      return new Response(completion.body, { headers: { ...headers, 'content-type': 'application/json' } })
    } catch (err) {
      if (err !== CLIENT_CLOSED) return fail(err, headers)
      // The provider may still bill the prompt: record what we can count.
      outcome.error = CLIENT_CLOSED
      outcome.clientClosed = true
      recordEstimated(0)
      return errorResponse(CLIENT_CLOSED, headers)
    }
  }

  const onEnd = (s: StreamOutcome) => {
    outcome.ttfbMs = s.ttfbMs
    outcome.clientClosed = s.clientClosed
    outcome.error = s.error
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
    const opened = await openChatStream(adapter, target, req, {
      callerWantsUsage: wantsUsageChunk(req),
      providerOptions: options.provider_options ?? {},
      timeouts: { totalMs: server.stream_timeout_ms, idleMs: server.stream_idle_timeout_ms },
      clientSignal: request.signal,
      startedAt: ctx.startedAt,
      onEnd,
    })
    if (opened.upstreamRequestId) headers['x-upstream-request-id'] = opened.upstreamRequestId
    return new Response(opened.body, {
      headers: { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
    })
  } catch (err) {
    return fail(err, headers)
  }
}

// Explicit routing: the first available provider serving the model, in config order, skipping
// providers at their rate_limit_rpm; when every one is at its limit, a 429.
async function pickRoute(snapshot: Snapshot, caller: Caller, model: string, quota: QuotaService, requestId: string): Promise<Route> {
  const routes = snapshot.routes.get(model)
  if (!routes || !mayUseModel(caller, model)) {
    throw new GatewayError('model_not_found', `The model '${model}' does not exist or you do not have access to it.`, { param: 'model' })
  }
  let soonest: number | undefined
  for (const route of routes) {
    if (route.unavailable !== undefined) continue
    const wait = await quota.admitProvider(route.target.provider, requestId)
    if (wait === undefined) return route
    soonest = Math.min(soonest ?? wait, wait)
  }
  if (soonest !== undefined) {
    const seconds = Math.max(1, Math.ceil(soonest / 1000))
    throw new GatewayError('rate_limit_exceeded', `Every provider serving '${model}' is at its requests-per-minute limit. Retry in ${seconds} s.`, { retryAfterSeconds: seconds })
  }
  const reasons = routes.map((r) => `${r.target.provider.provider_id}: ${r.unavailable}`).join('; ')
  throw new GatewayError('provider_unavailable', `No provider can serve '${model}' now (${reasons}).`)
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
