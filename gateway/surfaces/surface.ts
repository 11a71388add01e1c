// An API surface the gateway serves chat on: how a caller's key and body are read, how answers, streams and errors are written. Everything between (routing, budgets, calls, records) is one pipeline, on one internal request: the OpenAI chat request.
import { parseChatRequest, wantsUsageChunk, type ChatRequest } from '../chat-request.ts'
import type { Caller, Route } from '../config-store.ts'
import { errorFrame, errorResponse, type GatewayError } from '../errors.ts'
import { toOpenAiUsage } from '../providers/openai-format.ts'
import type { ProviderAdapter, Usage } from '../providers/types.ts'
import type { Endpoint } from '../../shared/usage-event.ts'

export interface Surface {
  // The route, as spans and logs name it.
  readonly name: string
  // As usage records name it.
  readonly endpoint: Endpoint
  // The caller's key as an Authorization header value (null when it sent none).
  credentials(request: Request): string | null
  // The body as the internal request; a 400 GatewayError for what this surface refuses. `caller`:
  // whose request it is (what the surface keeps between requests is the caller's own).
  parse(body: unknown, request: Request, caller: Caller): ChatRequest | Promise<ChatRequest>
  errorResponse(err: GatewayError, headers?: Record<string, string>): Response
  // An error after a stream's headers went out.
  errorFrame(err: GatewayError): string
  // What a call of this request to this route goes through: the route's adapter, its answers in
  // this surface's format.
  adapterFor(route: Route, req: ChatRequest): ProviderAdapter
  // An answer body (this surface's format) with its usage replaced by the figures the gateway keeps.
  withUsage(body: string, usage: Usage): string
  // The caller asked for the usage at the end of a stream.
  wantsUsageChunk(req: ChatRequest): boolean
}

export const openAiSurface: Surface = {
  name: 'POST /v1/chat/completions',
  endpoint: 'chat.completions',
  credentials: (request) => request.headers.get('authorization'),
  parse: (body) => parseChatRequest(body),
  errorResponse,
  errorFrame,
  adapterFor: (route) => route.adapter,
  withUsage(body, usage) {
    try {
      const parsed = JSON.parse(body) as Record<string, unknown>
      return JSON.stringify({ ...parsed, usage: toOpenAiUsage(usage) })
    } catch {
      return body
    }
  },
  wantsUsageChunk,
}
