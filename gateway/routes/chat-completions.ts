// POST /v1/chat/completions: authenticate, read and check the body, route, call with retries and fallback, record usage.
import type { Caller, Route, Snapshot } from '../config-store.ts'
import { authenticate } from '../auth.ts'
import { askedOutputCap, MAX_OUTPUT_TOKENS, parseChatRequest, wantsStream, wantsUsageChunk, type ChatRequest } from '../chat-request.ts'
import { errorResponse, GatewayError, toGatewayError } from '../errors.ts'
import type { Usage } from '../providers/types.ts'
import { CLIENT_CLOSED, completeChat } from '../upstream/call.ts'
import { openChatStream, type StreamOutcome } from '../upstream/relay.ts'
import { buildUsageRecord, sentAttempts, type RequestOutcome, type UsageSink } from '../usage.ts'
import { bodyDeadlineMs, readJsonBody } from '../read-body.ts'
import type { Connection } from '../connection.ts'
import { requestIdHeaders } from '../plugins/request-context.ts'
import type { RequestGate } from '../request-gate.ts'
import type { PendingWork } from '../pending-work.ts'
import { parseGatewayOptions, type GatewayOptions } from '../gateway-options.ts'
import { estimateRequest, guessInputTokens, RequestCounter, withOutputCap, type Estimate } from '../quota/estimate.ts'
import { costPico } from '../../shared/money.ts'
import { inputBound } from '../providers/billable.ts'
import { countTokens } from '../providers/tokenize.ts'
import { toOpenAiUsage } from '../providers/openai-format.ts'
import { QUICK_INPUT_BOUND, UsageGuard, type UsageBounds } from '../usage-check.ts'
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
  // How many requests the process holds at once.
  gate: RequestGate
  // Work left running after a response (settles, records waiting on a count): tracked for shutdown.
  pending: PendingWork
  onInternalError(err: unknown, requestId: string): void
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
}

// Refusals after which the socket is closed rather than kept for another request: the caller is
// unknown, or sent too much or too slowly, or the process is full.
const CLOSE_AFTER = new Set(['missing_api_key', 'invalid_api_key', 'body_too_large', 'request_timeout', 'client_closed', 'server_busy'])

export async function handleChatCompletions(ctx: RequestContext, deps: ChatDeps): Promise<Response> {
  const { request, requestId, snapshot } = ctx
  const baseHeaders = requestIdHeaders(ctx)
  if (!deps.gate.enter()) {
    deps.metrics.rejected.inc(['server_busy'])
    const busy = new GatewayError('server_busy', 'The gateway holds as many requests as it can; retry shortly.', { retryAfterSeconds: 1 })
    return errorResponse(busy, { ...baseHeaders, connection: 'close' })
  }
  // Once per request, when it is answered (a stream: when it ends): its place and socket go back.
  let done = false
  const finished = () => {
    if (done) return
    done = true
    deps.gate.leave()
    ctx.connection.release()
  }
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
    const { server } = snapshot.config.file
    const deadlineMs = bodyDeadlineMs(request.headers.get('content-length'), server.max_body_bytes, server.body_timeout_ms, server.body_timeout_ms_per_mb)
    ctx.connection.bodyDeadline(deadlineMs)
    req = parseChatRequest(await readJsonBody(request, { limit: server.max_body_bytes, deadlineMs }))
  } catch (err) {
    const e = toGatewayError(err)
    if (e.code === 'internal_error') deps.onInternalError(err, requestId)
    deps.metrics.rejected.inc([e.code])
    tr.finish(undefined, e)
    finished()
    return errorResponse(e, CLOSE_AFTER.has(e.code) ? { ...baseHeaders, connection: 'close' } : baseHeaders)
  }
  ctx.connection.hold()

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
  // The first reservation pays for one call; every call after one that may have been billed (it
  // timed out, or broke once the provider had it) needs one more (see topUp).
  const reservations: Reservation[] = []
  const billedFailures: Route[] = []
  // Set when the answer's usage is unknown but the provider may have billed it all (a stream cut
  // before its usage, a call the caller left): that target's whole estimate is booked.
  let bookEstimateOf: Route | undefined
  // Called once per request, whatever its outcome: the usage record, then the budget booking.
  const record = () => {
    const rec = buildUsageRecord(outcome, performance.now())
    deps.usage.append(rec)
    if (reservations.length > 0) {
      const settle = tr.step('quota.settle')
      // Each call that may have been billed books its estimate, then the answer its usage (as
      // reported and checked, or estimated); a reservation left over is released.
      const charges = billedFailures.map(chargeOf)
      if (bookEstimateOf) charges.push(chargeOf(bookEstimateOf))
      else if (outcome.usage) charges.push({ tokens: rec.input_tokens + rec.output_tokens, pico: rec.cost_pico })
      reservations.forEach((r, i) => {
        const c = charges[i]
        if (c) r.settle(c.tokens, c.pico)
        else r.release()
      })
      settle.end()
    }
    forward?.end(outcome.error)
    tr.finish(rec)
    finished()
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

  // Provider-specific fields are for the kind of provider the request is meant for (the first
  // target's): a fallback of another kind gets the request without them.
  const firstKind = decision.chain[0]?.target.provider.kind
  const providerOptionsFor = (route: Route) => (route.target.provider.kind === firstKind ? (options.provider_options ?? {}) : {})

  // Budgets reserve for the dearest target the chain may reach, so a fallback cannot overspend.
  const plan = planFor(snapshot.config.file.quotas, caller)
  const estimates = new Map<Route, Estimate>()
  let worst = { tokens: 0, micro: 0 }
  const counter = new RequestCounter()
  if (plan.length > 0) {
    const reserving = tr.step('quota.reserve')
    try {
      const settings = snapshot.config.file.quota
      // A target that cannot take this request (a parameter it refuses, an image it cannot price)
      // leaves the chain, as dispatch would skip it; the first refusal is the answer if none can.
      const chain: Route[] = []
      let refusal: unknown
      for (const route of decision.chain) {
        try {
          const started = performance.now()
          estimates.set(route, await estimateRequest(route, req, providerOptionsFor(route), settings, counter))
          chain.push(route)
          // Measuring a huge request for each target of a long chain: others get a turn between.
          if (performance.now() - started > 1) await new Promise((resolve) => setImmediate(resolve))
        } catch (err) {
          if (!(err instanceof GatewayError) || err.status >= 500) throw err
          refusal ??= err
        }
      }
      if (chain.length === 0) throw refusal
      decision = { ...decision, chain }
      const all = [...estimates.values()]
      worst = { tokens: Math.max(...all.map((e) => e.tokens)), micro: Math.max(...all.map((e) => e.micro)) }
      const reservation = await deps.quota.reserve(plan, requestId, worst)
      if (reservation) {
        reservations.push(reservation)
        Object.assign(headers, reservation.headers)
      }
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
  // Before a call that follows a call that may have been billed, reserve for it too: a budget that
  // cannot pay for both ends the request (its 429) instead of letting retries overspend.
  const topUp = async () => {
    while (reservations.length > 0 && billedFailures.length >= reservations.length) {
      const extra = await deps.quota.reserve(plan, `${requestId}#${reservations.length}`, worst)
      if (!extra) return
      reservations.push(extra)
    }
  }
  // A call the provider may have billed although it failed: it timed out, or broke once sent.
  const noteFailure = (route: Route) => (err: unknown) => {
    if (err instanceof GatewayError && mayHaveBilled(err)) billedFailures.push(route)
    throw err
  }
  // What the provider reports is checked against what the request as sent can bill; a report that
  // fails is replaced by the estimate (the reservation's, when there is one).
  // The figures that stand in for a report that failed, or an answer that could not be read: the
  // reservation's estimate (nothing to go by without a budget).
  const chargeOf = (route: Route) => {
    const u = estimateOf(route)
    return { tokens: u.input_tokens + u.output_tokens, pico: costPico(route.target.price, u.input_tokens, u.output_tokens) }
  }
  const estimateOf = (route: Route): Usage => {
    const est = estimates.get(route)
    return {
      input_tokens: est?.input ?? 0,
      output_tokens: est ? est.maxOutput * est.outputs + est.extraOutput : 0,
      cached_input_tokens: 0,
      cache_write_input_tokens: 0,
      reasoning_tokens: 0,
      estimated: true,
    }
  }
  const guardFor = (route: Route): UsageGuard => {
    const est = estimates.get(route)
    const cap = est ? est.maxOutput * est.outputs + est.extraOutput : (askedOutputCap(req) ?? route.target.model.max_output_tokens ?? MAX_OUTPUT_TOKENS) * (req.n ?? 1)
    return new UsageGuard(
      { maxInput: est?.inputBound ?? QUICK_INPUT_BOUND, maxOutput: cap },
      () => usageBounds(route, req, providerOptionsFor(route), est),
      () => estimateOf(route),
    )
  }
  const routingSettings = snapshot.config.file.routing
  const dispatchDeps: DispatchDeps = {
    ...deps.routing,
    // One admission per upstream call: retries count against the provider's limit too, and a call
    // after one that may have been billed must first be paid for.
    admit: async (route, n) => {
      await topUp()
      return deps.quota.admitProvider(route.target.provider, `${requestId}:${n}`)
    },
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
  const answerLimits = { maxBytes: snapshot.config.file.server.max_response_bytes, maxRatio: snapshot.config.file.server.max_decompression_ratio }
  if (!outcome.stream) {
    try {
      const { value, route, fellBack } = await dispatch(decision.chain, dispatchSettings, dispatchDeps, request.signal, attempts, (r) =>
        attempt(r, (h) => completeChat(r.adapter, r.target, requestFor(r), providerOptionsFor(r), request.signal, answerLimits, h)).catch(noteFailure(r)),
      )
      forward = tr.step('response.forward')
      served(route, fellBack)
      let body = value.completion.body
      const reported = value.completion.usage
      if (reported) {
        outcome.usage = guardFor(route).check(reported)
        // Figures that failed the check never reach the caller either, nor odd extras around sane
        // counts, nor a second usage key (JSON takes the last; the caller's parser may not).
        if (outcome.usage !== reported || reported.rewrite || body.indexOf('"usage"') !== body.lastIndexOf('"usage"')) body = withUsage(body, outcome.usage)
      } else {
        // No usage in the answer: recorded as counted from its text, booked as the whole estimate.
        outcome.usage = await estimateUsage(route, req, providerOptionsFor(route), estimates.get(route), counter, { body })
        bookEstimateOf = route
      }
      outcome.ttfbMs = performance.now() - ctx.startedAt
      record()
      if (value.upstreamRequestId) headers['x-upstream-request-id'] = value.upstreamRequestId
      return new Response(body, { headers: { ...headers, 'content-type': 'application/json' } })
    } catch (err) {
      if (err !== CLIENT_CLOSED) return fail(err)
      // The provider may finish (and bill) a call whose caller left: the record says what was seen
      // (nothing), the budget books the whole estimate, the most it can cost.
      outcome.error = CLIENT_CLOSED
      outcome.clientClosed = true
      finished()
      recordEstimated({ abandoned: true })
      return errorResponse(CLIENT_CLOSED, headers)
    }
  }

  // Counting tokens may load a tokenizer: the record is written when it is done, off the response path.
  function recordEstimated(answer: { chunks: number; bytes: number } | { abandoned: true }) {
    // The target the request was with when it ended: the last one called. None called: nothing billed.
    const last = attempts.findLast((a) => a.outcome !== 'skipped')
    const route = last && snapshot.targets.get(last.target)
    if (!route) return record()
    outcome.target = route.target
    // The caller left while a call ran (not during a backoff after one that failed): it may be billed.
    if ('abandoned' in answer && last.error_code === 'client_closed') bookEstimateOf = route
    estimateUsage(route, req, providerOptionsFor(route), estimates.get(route), counter, answer)
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
  // The guard and target of the attempt that served the stream (each attempt checks its own report).
  let streamGuard: UsageGuard | undefined
  let streamRoute: Route | undefined
  // A stream can end inside openChatStream (a provider that sent everything before its first
  // content): its end is handled once dispatch has logged the attempt and named the target.
  let dispatchReturned = false
  let endedEarly: StreamOutcome | undefined
  const onEnd = (s: StreamOutcome) => {
    if (dispatchReturned) endStream(s)
    else endedEarly = s
  }
  const endStream = (s: StreamOutcome) => {
    // The socket and the place go back now, while the response is still live: the record may wait
    // on a tokenizer, and once the response is over its socket's idle timeout can no longer be set.
    finished()
    if (streamOpen) deps.metrics.streamClosed()
    streamOpen = false
    outcome.ttfbMs = s.ttfbMs
    outcome.clientClosed = s.clientClosed
    outcome.error = s.error
    endVerdict = s.clientClosed ? 'abandon' : s.error ? 'failure' : 'success'
    settleStream?.(endVerdict)
    if (s.usage) {
      outcome.usage = streamGuard ? streamGuard.check(s.usage) : s.usage
      // A sane final report after an insane one mid-stream is kept, and the record still says so.
      if (streamGuard?.anomaly && !outcome.usage.anomaly) outcome.usage = { ...outcome.usage, anomaly: streamGuard.anomaly }
      record()
      return
    }
    // No usage report: the record gets what was seen; the budget books the whole estimate, since
    // the provider may have generated, and billed, more than was relayed (cut short, thinking
    // hidden, or a server that reports nothing).
    bookEstimateOf = streamRoute
    recordEstimated({ chunks: s.contentChunks, bytes: s.outputBytes })
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
        attempt(r, (h) => {
          const guard = guardFor(r)
          streamRoute = r
          streamGuard = guard
          return openChatStream(r.adapter, r.target, requestFor(r), {
            limits: { maxEventBytes: server.max_event_bytes, maxErrorBytes: server.max_response_bytes, maxRatio: server.max_decompression_ratio },
            callerWantsUsage: wantsUsageChunk(req),
            checkUsage: guard.check,
            providerOptions: providerOptionsFor(r),
            timeouts: { totalMs: server.stream_timeout_ms, idleMs: server.stream_idle_timeout_ms },
            clientSignal: request.signal,
            startedAt: ctx.startedAt,
            extraHeaders: h,
            onEnd,
          })
        }).catch(noteFailure(r)),
      true,
    )
    dispatchReturned = true
    const { value: opened, route, fellBack } = dispatched
    settleStream = dispatched.settle
    served(route, fellBack)
    if (endedEarly) endStream(endedEarly)
    else {
      forward = tr.step('response.forward', { 'gateway.stream': true })
      streamOpen = true
      deps.metrics.streamOpened()
    }
    if (opened.upstreamRequestId) headers['x-upstream-request-id'] = opened.upstreamRequestId
    return new Response(opened.body, {
      headers: { ...headers, 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
    })
  } catch (err) {
    if (err !== CLIENT_CLOSED) return fail(err)
    // The caller left before the first content: the provider may have been working (thinking).
    outcome.error = CLIENT_CLOSED
    outcome.clientClosed = true
    finished()
    recordEstimated({ abandoned: true })
    return errorResponse(CLIENT_CLOSED, headers)
  }
}

// Failures after which the provider may still bill the call: anything after it accepted the call
// (an error inside a 200 stream, a body that broke or could not be read), a call that ran past our
// deadline, and a connection that failed other than before the request could leave.
function mayHaveBilled(err: GatewayError): boolean {
  if (err.accepted || err.code === 'upstream_timeout' || err.code === 'stream_timeout') return true
  if (err.code !== 'upstream_unreachable') return false
  const code = (err.cause as { code?: unknown } | undefined)?.code
  return !(typeof code === 'string' && NOT_SENT.test(code))
}

// Network failures that happen before a request leaves: refused, unresolvable, unroutable, TLS.
const NOT_SENT = /^(ECONNREFUSED|ConnectionRefused|FailedToOpenSocket|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|CERT_|ERR_TLS|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)/

// What a request used when the provider did not say: input counted locally (the reservation's
// count when there is one), output from the answer itself (a completion's text, or what a stream
// generated; nothing for a call the caller left), never above the cap sent.
async function estimateUsage(
  route: Route,
  req: ChatRequest,
  options: Record<string, unknown>,
  est: Estimate | undefined,
  counter: RequestCounter,
  answer: { body: string } | { chunks: number; bytes: number } | { abandoned: true },
): Promise<Usage> {
  const input = est?.inputGuess ?? (await guessInputTokens(route, req, options, counter))
  const cap = est ? est.maxOutput * est.outputs + est.extraOutput : undefined
  const produced =
    'body' in answer
      ? await countTokens([answer.body], route.adapter.encoding(route.target))
      : 'chunks' in answer
        ? // About a token a chunk, or four bytes a token where chunks carry more (a provider sending
          // whole sentences, or text the caller never saw, as thinking).
          Math.max(answer.chunks, Math.ceil(answer.bytes / 4))
        : 0
  return {
    input_tokens: input,
    output_tokens: cap === undefined ? produced : Math.min(cap, produced),
    cached_input_tokens: 0,
    cache_write_input_tokens: 0,
    reasoning_tokens: 0,
    estimated: true,
  }
}

// The most a provider can report for this request as sent to this target.
function usageBounds(route: Route, req: ChatRequest, options: Record<string, unknown>, est: Estimate | undefined): UsageBounds {
  if (est) return { maxInput: est.inputBound, maxOutput: est.maxOutput * est.outputs + est.extraOutput }
  const billable = route.adapter.measure(req, route.target, options)
  const cap = askedOutputCap(req) ?? route.target.model.max_output_tokens ?? MAX_OUTPUT_TOKENS
  let predicted = 0
  for (const t of billable.outputTexts) predicted += t.length * 3
  // Without a budget a request may carry what the gateway cannot bound (a provider's server tools
  // add search results to the input): then only absurd figures are refused.
  const maxInput = billable.unbounded.length > 0 ? MAX_REPORTED_INPUT : inputBound(billable) + JSON.stringify(options).length * 3
  return { maxInput, maxOutput: cap * billable.outputs + predicted }
}

// More input than any model's context window holds.
const MAX_REPORTED_INPUT = 100_000_000

// An OpenAI-format completion body with its usage replaced.
function withUsage(body: string, usage: Usage): string {
  try {
    const parsed = JSON.parse(body) as Record<string, unknown>
    return JSON.stringify({ ...parsed, usage: toOpenAiUsage(usage) })
  } catch {
    return body
  }
}
