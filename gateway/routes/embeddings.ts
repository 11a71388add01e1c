// POST /v1/embeddings: OpenAI's embeddings API to any target that makes embeddings (OpenAI and OpenAI-compatible as they are, Gemini translated), through the chat pipeline's parts: keys, routing with retries, fallback and breakers, budgets on the input, a usage record per call.
import { authenticate } from '../auth.ts'
import type { Caller, Route } from '../config-store.ts'
import type { ChatRequest } from '../chat-request.ts'
import { errorResponse, GatewayError, toGatewayError } from '../errors.ts'
import { parseGatewayOptions, type GatewayOptions } from '../gateway-options.ts'
import { requestIdHeaders } from '../plugins/request-context.ts'
import { embeddingUsage, withEmbeddingUsage } from '../providers/embeddings.ts'
import type { EmbeddingsRequest, ProviderAdapter, Usage } from '../providers/types.ts'
import { estimateEmbeddings, guessEmbeddingTokens, RequestCounter } from '../quota/estimate.ts'
import { bodyDeadlineMs, readJsonBody } from '../read-body.ts'
import { RequestBudget } from '../request-budget.ts'
import { RequestLedger } from '../request-ledger.ts'
import { routeRequest } from '../routing/router.ts'
import { startRequestTrace, type RequestTrace } from '../tracing.ts'
import { CLIENT_CLOSED, completeChat } from '../upstream/call.ts'
import { dispatch } from '../upstream/dispatch.ts'
import { UsageGuard } from '../usage-check.ts'
import { callPlan, CLOSE_AFTER, enterPlace, guardrailsOf, moderationTarget, noteGuardrails, type ChatDeps, type RequestContext } from './chat-completions.ts'
import { applyGuardrails, type Fired } from '../guardrails/apply.ts'

// OpenAI's own bounds: 2,048 inputs a call.
const MAX_INPUTS = 2048
const KNOWN = new Set(['model', 'input', 'encoding_format', 'dimensions', 'user'])

export async function handleEmbeddings(ctx: RequestContext, deps: ChatDeps): Promise<Response> {
  const baseHeaders = requestIdHeaders(ctx)
  const entered = enterPlace(ctx, deps)
  if (entered instanceof GatewayError) return errorResponse(entered, { ...baseHeaders, connection: 'close' })
  const { place, signal } = entered
  const tr = startRequestTrace(deps.tracer, ctx.request, 'POST /v1/embeddings')
  let accepted: { caller: Caller; req: EmbeddingsRequest; options: GatewayOptions }
  try {
    const { request, snapshot } = ctx
    const caller = authenticate(request.headers.get('authorization'), snapshot)
    const options = parseGatewayOptions(request.headers.get('x-gateway-options'))
    const { server } = snapshot.config.file
    const deadlineMs = bodyDeadlineMs(request.headers.get('content-length'), server.max_body_bytes, server.body_timeout_ms, server.body_timeout_ms_per_mb)
    ctx.connection.bodyDeadline(deadlineMs)
    accepted = { caller, req: parseEmbeddingsRequest(await readJsonBody(request, { limit: server.max_body_bytes, deadlineMs })), options }
    await deps.quota.admitKey(caller.key)
  } catch (err) {
    const e = toGatewayError(err)
    if (e.code === 'internal_error') deps.onInternalError(err, ctx.requestId)
    deps.metrics.rejected.inc([e.code])
    tr.finish(undefined, e)
    place.free()
    return errorResponse(e, CLOSE_AFTER.has(e.code) ? { ...baseHeaders, connection: 'close' } : baseHeaders)
  }
  ctx.connection.hold()
  const { caller, options } = accepted
  const open = (req: EmbeddingsRequest, counter: RequestCounter) => {
    // The pipeline's routing and records know requests by their model: the rest of a chat request is empty.
    const asChat: ChatRequest = { model: req.model, messages: [] }
    const budget = new RequestBudget(deps.quota, ctx.requestId, asChat, caller, ctx.snapshot.config.file.quotas, {}, {
      estimateFor: (route) => {
        embeddingsOf(route).buildRequest(req, route.target)
        return estimateEmbeddings(route, req, counter)
      },
    })
    return new RequestLedger(deps, place, tr, budget, {
      requestId: ctx.requestId,
      clientRequestId: ctx.clientRequestId,
      caller,
      req: asChat,
      stream: false,
      endpoint: 'embeddings',
      startedAt: ctx.startedAt,
      headers: baseHeaders,
      routeOf: (key) => ctx.snapshot.targets.get(key),
      signal,
    })
  }
  // Guardrails on the inputs before any provider sees them (redacted or refused, as for chat), and
  // before the budget, which reserves for what is sent.
  let guarded: { req: EmbeddingsRequest; fired: Fired[] }
  try {
    guarded = await guardInputs(ctx, accepted.req, caller)
  } catch (err) {
    const refused = open(accepted.req, new RequestCounter())
    noteGuardrails(deps, refused, (err as { fired?: Fired[] }).fired)
    return failed(refused, err)
  }
  const counter = new RequestCounter()
  const ledger = open(guarded.req, counter)
  noteGuardrails(deps, ledger, guarded.fired)
  try {
    return await serve(ctx, deps, ledger, guarded.req, options, caller, counter, tr)
  } catch (err) {
    return failed(ledger, err)
  }
}

// The request with its inputs through the guardrails of the defaults, the model's route and the
// client (each input read as what a user says). Token ids cannot be read: a request of them is
// refused when guardrails apply. What fired is recorded; nothing is restored (an embedding has no text).
async function guardInputs(ctx: RequestContext, req: EmbeddingsRequest, caller: Caller): Promise<{ req: EmbeddingsRequest; fired: Fired[] }> {
  const list = guardrailsOf(ctx, req.model, caller).filter((g) => g.kind === 'prompt_injection' || g.applies_to !== 'output')
  if (list.length === 0) return { req, fired: [] }
  // What an OpenAI-format target gets is the body as it came: a field the gateway does not read
  // would reach the provider unchecked.
  const unread = req.extra[0]
  if (unread !== undefined) throw new GatewayError('invalid_parameter', `Unrecognized request argument supplied: '${unread}'. Guardrails apply to this request, and only the fields they check are sent.`, { param: unread })
  if (req.input.some((v) => typeof v !== 'string')) {
    const g = list[0]!
    throw Object.assign(new GatewayError('content_policy_violation', `The request was refused by guardrail '${g.id}' (${g.kind}: token ids cannot be checked; send text).`, { param: `guardrail:${g.id}` }), { fired: [{ id: g.id, kind: g.kind, action: 'block' }] })
  }
  const texts = req.input as string[]
  const run = await applyGuardrails({ model: req.model, messages: texts.map((t) => ({ role: 'user' as const, content: t })) }, list.map((g) => (g.kind === 'pii' ? { ...g, restore: false } : g)), (id) => moderationTarget(ctx, id))
  if (!run.fired.some((f) => f.action === 'redact')) return { req, fired: run.fired }
  const redacted = run.req.messages.map((m) => m.content as string)
  // What an OpenAI-format target gets as it came: its input redacted too, in the caller's shape.
  const raw = { ...req.raw, input: typeof req.raw.input === 'string' ? redacted[0] : redacted }
  return { req: { ...req, input: redacted, raw }, fired: run.fired }
}

async function serve(ctx: RequestContext, deps: ChatDeps, ledger: RequestLedger, req: EmbeddingsRequest, options: GatewayOptions, caller: Caller, counter: RequestCounter, tr: RequestTrace): Promise<Response> {
  const decision = routeRequest(ctx.snapshot, caller, { model: req.model, messages: [] }, options, deps.routing)
  ledger.routed(decision.chain[0])
  // Only targets that make embeddings, and can take this request (Gemini takes no token ids).
  let refusal: unknown
  let chain = decision.chain.filter((r) => {
    try {
      embeddingsOf(r).buildRequest(req, r.target)
      return true
    } catch (err) {
      refusal ??= err
      return false
    }
  })
  if (chain.length === 0) throw refusal ?? new GatewayError('invalid_parameter', `No target of '${req.model}' makes embeddings.`, { param: 'model' })
  if (ledger.budget.budgeted) {
    const reserving = tr.step('quota.reserve')
    try {
      chain = [...(await ledger.budget.reserve(chain, ctx.snapshot.config.file.quota))]
      Object.assign(ledger.headers, ledger.budget.headers)
      reserving.end()
    } catch (err) {
      reserving.end(toGatewayError(err))
      throw err
    }
  }
  const plan = callPlan(ctx, deps, ledger, { ...decision, chain }, tr)
  const server = ctx.snapshot.config.file.server
  const limits = { maxBytes: server.max_response_bytes, maxRatio: server.max_decompression_ratio }
  ledger.dispatching()
  let served
  try {
    served = await dispatch(plan.chain, plan.settings, plan.deps, ledger.signal, ledger.attempts, (r) => {
      ledger.trying(r)
      return plan.attempt(r, (h) => completeChat(embeddingCall(r, req), r.target, { model: req.model, messages: [] }, {}, ledger.signal, limits, h))
    })
  } catch (err) {
    if (err !== CLIENT_CLOSED) return failed(ledger, err)
    ledger.end({ kind: 'abandoned' })
    return errorResponse(CLIENT_CLOSED, ledger.headers)
  }
  const { value, route, fellBack } = served
  ledger.serve(route, fellBack)
  ledger.outcome.ttfbMs = performance.now() - ctx.startedAt
  // What the provider reports is checked against what the input can be; none reported (Gemini), or
  // a report that fails, is replaced by the gateway's count, in the record and in the answer.
  const est = await estimateEmbeddings(route, req, counter)
  const counted = (): Usage => embeddingUsage(est.inputGuess, true)
  const guard = new UsageGuard({ maxInput: est.inputBound, maxOutput: 0 }, () => ({ maxInput: est.inputBound, maxOutput: 0 }), counted)
  const reported = value.completion.usage
  const usage = reported ? guard.check(reported) : counted()
  const body = usage === reported ? value.completion.body : withEmbeddingUsage(value.completion.body, usage)
  ledger.end({ kind: 'answered', usage })
  const headers: Record<string, string> = { ...ledger.headers, 'content-type': 'application/json' }
  if (value.upstreamRequestId) headers['x-upstream-request-id'] = value.upstreamRequestId
  return new Response(body, { headers })
}

function failed(ledger: RequestLedger, err: unknown): Response {
  const error = toGatewayError(err)
  ledger.end({ kind: 'failed', error })
  return errorResponse(error, ledger.headers)
}

function embeddingsOf(route: Route) {
  const e = route.adapter.embeddings
  if (!e) throw new GatewayError('unsupported_parameter', `${route.target.provider.provider_id} (${route.target.provider.kind}) does not make embeddings.`, { param: 'model' })
  return e
}

// The call as completeChat makes any: its deadline, the caller's signal, bounded body, the
// provider's errors read by its adapter, keys removed from what comes back.
function embeddingCall(route: Route, req: EmbeddingsRequest): ProviderAdapter {
  const e = embeddingsOf(route)
  return {
    ...route.adapter,
    buildRequest: (_chat, target) => e.buildRequest(req, target),
    readCompletion: (text, target) => e.readAnswer(text, target, req),
  }
}

export function parseEmbeddingsRequest(body: unknown): EmbeddingsRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GatewayError('invalid_parameter', 'The request body must be a JSON object.')
  const b = body as Record<string, unknown>
  if (typeof b.model !== 'string' || b.model === '') throw new GatewayError('invalid_parameter', "Missing required parameter: 'model'.", { param: 'model' })
  if (b.input === undefined) throw new GatewayError('invalid_parameter', "Missing required parameter: 'input'.", { param: 'input' })
  const input = readInput(b.input)
  const format = b.encoding_format
  if (format !== undefined && format !== null && format !== 'float' && format !== 'base64') throw new GatewayError('invalid_parameter', "Invalid value for 'encoding_format': expected one of 'float', 'base64'.", { param: 'encoding_format' })
  const dims = b.dimensions
  if (dims !== undefined && dims !== null && !(Number.isInteger(dims) && (dims as number) >= 1 && (dims as number) <= 65_536)) throw new GatewayError('invalid_parameter', "Invalid value for 'dimensions': expected an integer from 1 to 65536.", { param: 'dimensions' })
  if (b.user !== undefined && b.user !== null && typeof b.user !== 'string') throw new GatewayError('invalid_parameter', "Invalid value for 'user': expected a string.", { param: 'user' })
  const req: EmbeddingsRequest = { model: b.model, input, raw: b, extra: Object.keys(b).filter((k) => !KNOWN.has(k) && b[k] !== undefined && b[k] !== null) }
  if (format === 'float' || format === 'base64') req.encoding_format = format
  if (typeof dims === 'number') req.dimensions = dims
  if (typeof b.user === 'string') req.user = b.user
  return req
}

// A string, a list of strings, a list of token ids, or a list of such lists: one embedding each.
function readInput(input: unknown): EmbeddingsRequest['input'] {
  const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((n) => Number.isSafeInteger(n) && n >= 0)
  let items: EmbeddingsRequest['input']
  if (typeof input === 'string') items = [input]
  else if (isIds(input)) items = [input]
  else if (Array.isArray(input) && input.length > 0 && input.every((v) => typeof v === 'string')) items = input as string[]
  else if (Array.isArray(input) && input.length > 0 && input.every(isIds)) items = input as number[][]
  else throw new GatewayError('invalid_parameter', "Invalid value for 'input': expected a non-empty string, array of strings, array of token ids, or array of token-id arrays.", { param: 'input' })
  if (items.length > MAX_INPUTS) throw new GatewayError('invalid_parameter', `Invalid 'input': at most ${MAX_INPUTS} inputs a request, got ${items.length}.`, { param: 'input' })
  const empty = items.findIndex((v) => typeof v === 'string' && v === '')
  if (empty !== -1) throw new GatewayError('invalid_parameter', `Invalid 'input[${empty}]': an input may not be empty.`, { param: `input[${empty}]` })
  return items
}
