// POST /v1/messages/count_tokens: the input tokens of an Anthropic Messages request for the model it names: the provider's own count when the first target is Anthropic and answers, the gateway's estimate otherwise (said in x-gateway-token-count). Nothing is reserved or billed.
import { authenticate } from '../auth.ts'
import { askedOutputCap, nativeOf } from '../chat-request.ts'
import type { Route } from '../config-store.ts'
import { GatewayError, toGatewayError } from '../errors.ts'
import { parseGatewayOptions } from '../gateway-options.ts'
import { guessInputTokens, RequestCounter } from '../quota/estimate.ts'
import { bodyDeadlineMs, readJsonBody } from '../read-body.ts'
import { routeRequest, type RoutingState } from '../routing/router.ts'
import { fromMessagesRequest } from '../surfaces/anthropic/request.ts'
import { anthropicErrorResponse, anthropicSurface } from '../surfaces/anthropic/surface.ts'
import { fetchUpstream } from '../upstream/call.ts'
import { readBodyText } from '../upstream/bounded-body.ts'
import { guardrailsOf, type RequestContext } from './chat-completions.ts'
import type { RequestGate } from '../request-gate.ts'
import type { QuotaService } from '../quota/quota.ts'

export async function countMessageTokens(ctx: RequestContext, routing: RoutingState, gate: RequestGate, quota: QuotaService): Promise<Response> {
  const headers: Record<string, string> = { 'x-request-id': ctx.requestId }
  // Counting a large prompt is work like a request's: it takes a place among them.
  if (!gate.enter()) return anthropicErrorResponse(new GatewayError('server_busy', 'The gateway holds as many requests as it can; retry shortly.', { retryAfterSeconds: 1 }), { ...headers, connection: 'close' })
  try {
    const { request, snapshot } = ctx
    const caller = authenticate(anthropicSurface.credentials(request), snapshot)
    const options = parseGatewayOptions(request.headers.get('x-gateway-options'))
    const { server } = snapshot.config.file
    const deadlineMs = bodyDeadlineMs(request.headers.get('content-length'), server.max_body_bytes, server.body_timeout_ms, server.body_timeout_ms_per_mb)
    const req = fromMessagesRequest(await readJsonBody(request, { limit: server.max_body_bytes, deadlineMs }), request.headers, true)
    await quota.admitKey(caller.key)
    const route = routeRequest(snapshot, caller, req, options, routing).chain[0]
    if (!route) throw new GatewayError('provider_unavailable', `No target can serve '${req.model}' now.`)
    // Anthropic's count is a call with the gateway's key: it counts against the provider's
    // rate_limit_rpm like any other, and at the limit the estimate answers instead.
    // With guardrails on the request, the prompt does not leave the gateway to be counted: the
    // estimate answers (nothing is sent, so nothing needs redacting or refusing).
    const guarded = guardrailsOf(ctx, req.model, caller).some((g) => g.kind === 'prompt_injection' || g.applies_to !== 'output')
    const counted = !guarded && route.adapter.kind === 'anthropic' && (await quota.admitProvider(route.target.provider).catch(() => 0)) === undefined ? await providerCount(route, req, ctx.request.signal) : undefined
    if (counted !== undefined) return Response.json({ input_tokens: counted }, { headers: { ...headers, 'x-gateway-token-count': 'provider' } })
    const estimate = await guessInputTokens(route, req, options.provider_options ?? {}, new RequestCounter())
    return Response.json({ input_tokens: estimate }, { headers: { ...headers, 'x-gateway-token-count': 'estimate' } })
  } catch (err) {
    return anthropicErrorResponse(toGatewayError(err), headers)
  } finally {
    gate.leave()
  }
}

// Anthropic's own count (its count_tokens endpoint, free), or undefined when it cannot be had in
// time or in a sane shape: the estimate answers then.
async function providerCount(route: Route, req: Parameters<typeof nativeOf>[0], signal: AbortSignal): Promise<number | undefined> {
  const native = nativeOf(req, 'anthropic')
  if (!native) return undefined
  const built = route.adapter.buildRequest({ ...req, max_tokens: askedOutputCap(req) ?? 1 }, route.target, false, {})
  const body = JSON.parse(built.body ?? '{}') as Record<string, unknown>
  // count_tokens takes the prompt, not the output settings.
  for (const key of ['max_tokens', 'stream', 'stop_sequences', 'temperature', 'top_p', 'top_k', 'metadata', 'service_tier']) delete body[key]
  const timeout = AbortSignal.timeout(Math.min(route.target.provider.timeout_ms, 10_000))
  try {
    const res = await fetchUpstream({ ...built, url: built.url.replace(/\/v1\/messages$/, '/v1/messages/count_tokens'), body: JSON.stringify(body) }, AbortSignal.any([signal, timeout]))
    const text = await readBodyText(res, { maxBytes: 65_536, maxRatio: 100 }, route.target.provider.provider_id)
    if (!res.ok) return undefined
    const n = (JSON.parse(text) as { input_tokens?: unknown }).input_tokens
    return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined
  } catch {
    return undefined
  }
}
