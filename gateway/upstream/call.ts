// One non-streaming upstream attempt: fetch under a deadline, aborted when the client leaves, normalized errors.
import { GatewayError } from '../errors.ts'
import type { Completion, ProviderAdapter, ProviderOptions, Target, UpstreamRequest } from '../providers/types.ts'
import type { ChatRequest } from '../chat-request.ts'

// The abort reason used when the caller went away; never shown to anyone.
export const CLIENT_CLOSED = new GatewayError('client_closed', 'client closed the request')

export async function sendUpstream(req: UpstreamRequest, signal: AbortSignal, target: Target): Promise<Response> {
  try {
    return await fetch(req.url, { method: req.method, headers: req.headers, body: req.body, signal })
  } catch (err) {
    throw classifyFailure(err, signal, target)
  }
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
  // Added to the provider request (the trace's traceparent).
  extraHeaders?: Record<string, string>,
): Promise<CompleteResult> {
  const ac = new AbortController()
  const timeoutMs = target.provider.timeout_ms
  const timer = setTimeout(
    () => ac.abort(new GatewayError('upstream_timeout', `${target.provider.provider_id}: no complete response within ${timeoutMs} ms`)),
    timeoutMs,
  )
  const onClientAbort = () => ac.abort(CLIENT_CLOSED)
  // A signal that is already aborted fires no event.
  if (clientSignal.aborted) ac.abort(CLIENT_CLOSED)
  clientSignal.addEventListener('abort', onClientAbort, { once: true })
  try {
    const res = await sendUpstream(withHeaders(adapter.buildRequest(req, target, false, options), extraHeaders), ac.signal, target)
    let text: string
    try {
      text = await res.text()
    } catch (err) {
      const reason = classifyFailure(err, ac.signal, target)
      throw res.ok && reason !== CLIENT_CLOSED ? reason.afterAccepted() : reason
    }
    if (!res.ok) throw adapter.readError(res.status, text, res.headers, target)
    return { completion: readAnswer(adapter, text, target), upstreamRequestId: res.headers.get('x-request-id') }
  } finally {
    clearTimeout(timer)
    clientSignal.removeEventListener('abort', onClientAbort)
  }
}

// A 2xx body the adapter cannot read is the provider's fault (upstream_bad_response), whatever
// the reader tripped on, never the gateway's own 500.
function readAnswer(adapter: ProviderAdapter, text: string, target: Target): Completion {
  try {
    return adapter.readCompletion(text, target)
  } catch (err) {
    if (err instanceof GatewayError) throw err.afterAccepted()
    throw new GatewayError('upstream_bad_response', `${target.provider.provider_id}: the provider returned a body the gateway cannot read.`, { cause: err, accepted: true })
  }
}

export function withHeaders(req: UpstreamRequest, extra: Record<string, string> | undefined): UpstreamRequest {
  return extra ? { ...req, headers: { ...req.headers, ...extra } } : req
}

function errorName(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code
  return err instanceof Error ? err.name : 'error'
}
