// One non-streaming upstream attempt: fetch under a deadline, aborted when the client leaves, normalized errors.
import { GatewayError } from '../errors.ts'
import type { Completion, ProviderAdapter, ProviderOptions, Target, UpstreamRequest } from '../providers/types.ts'
import type { ChatRequest } from '../chat-request.ts'
import { readBodyText, type BodyLimits } from './bounded-body.ts'
import { decodedJson } from '../../shared/redact.ts'

// The abort reason used when the caller went away; never shown to anyone.
export const CLIENT_CLOSED = new GatewayError('client_closed', 'client closed the request')

// Why a request's own signal aborted: the caller left, or the gateway is shutting down.
export function abortReasonOf(signal: AbortSignal): GatewayError {
  return signal.reason instanceof GatewayError ? signal.reason : CLIENT_CLOSED
}

// Every call to a provider: redirects are never followed (Bun's fetch drops Authorization across
// origins but not x-api-key or x-goog-api-key, and a 3xx answer must not pass for the provider's),
// and bodies come as sent, asked to be plain, so that their decoded size can be bounded.
export function fetchUpstream(req: UpstreamRequest, signal: AbortSignal): Promise<Response> {
  return fetch(req.url, {
    method: req.method,
    headers: { ...req.headers, 'accept-encoding': 'identity' },
    body: req.body,
    signal,
    redirect: 'manual',
    decompress: false,
  } as RequestInit)
}

export async function sendUpstream(req: UpstreamRequest, signal: AbortSignal, target: Target): Promise<Response> {
  let res: Response
  try {
    res = await fetchUpstream(req, signal)
  } catch (err) {
    throw classifyFailure(err, signal, target)
  }
  if (res.status >= 300 && res.status < 400) {
    // Its body is neither read nor relayed.
    void res.body?.cancel().catch(() => undefined)
    throw new GatewayError('upstream_bad_response', `${target.provider.provider_id}: the provider answered with a redirect (${res.status}), which the gateway does not follow.`, { upstreamStatus: res.status })
  }
  return res
}

// A failed fetch or body read: our own abort reasons win, anything else is the network.
export function classifyFailure(err: unknown, signal: AbortSignal, target: Target): GatewayError {
  if (signal.aborted && signal.reason instanceof GatewayError) return signal.reason
  if (err instanceof GatewayError) return err
  return new GatewayError('upstream_unreachable', `${target.provider.provider_id}: cannot reach the provider (${errorName(err)})`, { cause: err })
}

export interface CompleteResult {
  completion: Completion
  upstreamRequestId: string | null
}

export async function completeChat(
  adapter: ProviderAdapter,
  target: Target,
  req: ChatRequest,
  options: ProviderOptions,
  clientSignal: AbortSignal,
  // How large (decoded) and how compressed the answer may be.
  limits: BodyLimits,
  // Added to the provider request (the trace's traceparent).
  extraHeaders?: Record<string, string>,
): Promise<CompleteResult> {
  const ac = new AbortController()
  const timeoutMs = target.provider.timeout_ms
  const timer = setTimeout(
    () => ac.abort(new GatewayError('upstream_timeout', `${target.provider.provider_id}: no complete response within ${timeoutMs} ms`)),
    timeoutMs,
  )
  const onClientAbort = () => ac.abort(abortReasonOf(clientSignal))
  // A signal that is already aborted fires no event.
  if (clientSignal.aborted) ac.abort(abortReasonOf(clientSignal))
  clientSignal.addEventListener('abort', onClientAbort, { once: true })
  try {
    const res = await sendUpstream(withHeaders(adapter.buildRequest(req, target, false, options), extraHeaders), ac.signal, target)
    let text: string
    try {
      text = await readBodyText(res, limits, target.provider.provider_id)
    } catch (err) {
      const reason = classifyFailure(err, ac.signal, target)
      throw res.ok && reason !== CLIENT_CLOSED ? reason.afterAccepted() : reason
    }
    if (!res.ok) throw readErrorAnswer(adapter, res, text, target)
    return { completion: readAnswer(adapter, text, target), upstreamRequestId: upstreamRequestIdOf(res, target) }
  } finally {
    clearTimeout(timer)
    clientSignal.removeEventListener('abort', onClientAbort)
  }
}

// An error answer as the gateway's error; one the adapter trips over is still the provider's error
// (its status kept), never a 500 of the gateway's.
export function readErrorAnswer(adapter: ProviderAdapter, res: Response, text: string, target: Target): GatewayError {
  try {
    return adapter.readError(res.status, text, res.headers, target)
  } catch (err) {
    return new GatewayError('upstream_error', `${target.provider.provider_id}: upstream error (${res.status})`, { upstreamStatus: res.status, cause: err })
  }
}

// The provider's request id, passed on in x-upstream-request-id only when it is a short printable
// token and not a key it echoed.
const UPSTREAM_ID = /^[A-Za-z0-9._:\-]{1,128}$/
export function upstreamRequestIdOf(res: Response, target: Target): string | null {
  const id = res.headers.get('x-request-id') ?? res.headers.get('request-id')
  if (id === null || !UPSTREAM_ID.test(id)) return null
  // Not a key, nor key-shaped, nor a key with a character changed.
  return target.redactor.text(id) === id && !target.redactor.hasPart(id) ? id : null
}

// A 2xx body the adapter cannot read is the provider's fault (upstream_bad_response), whatever
// the reader tripped on, never the gateway's own 500.
function readAnswer(adapter: ProviderAdapter, text: string, target: Target): Completion {
  try {
    const completion = adapter.readCompletion(text, target)
    // Exact keys only: a key-shaped example in a model's answer is the caller's content. A body
    // with \u escapes is looked at as a parser will read it, so escapes cannot hide a key.
    const seen = completion.body.includes('\\u') ? decodedJson(completion.body) : completion.body
    return target.redactor.has(seen) ? { ...completion, body: new TextDecoder().decode(target.redactor.bytes(new TextEncoder().encode(seen))) } : completion
  } catch (err) {
    if (err instanceof GatewayError) throw err.afterAccepted()
    throw new GatewayError('upstream_bad_response', `${target.provider.provider_id}: the provider returned a body the gateway cannot read.`, { cause: err, accepted: true })
  }
}

export function withHeaders(req: UpstreamRequest, extra: Record<string, string> | undefined): UpstreamRequest {
  return extra ? { ...req, headers: { ...req.headers, ...extra } } : req
}

// A network error's code (ECONNRESET) when it has one, else its name.
export function errorName(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code
  return err instanceof Error ? err.name : 'error'
}
