// Per-request context: the gateway's request id, the caller's own id, the config snapshot the request will finish on, its start time.
import { Elysia } from 'elysia'
import type { ConfigStore } from '../config-store.ts'

const CLIENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

// The gateway's id for a request and the caller's own, when it sent a sane one: every answer, an
// error handler's too, carries these and never the caller's raw header.
export function requestIdsOf(request: Request): { requestId: `req_${string}`; clientRequestId: string | undefined } {
  const given = request.headers.get('x-client-request-id') ?? request.headers.get('x-request-id')
  return {
    // Always the gateway's own: budgets and usage records are keyed by it, so a caller reusing an
    // id (retries, a fixed header) must not merge two requests.
    requestId: `req_${crypto.randomUUID().replaceAll('-', '')}`,
    // The caller's id, kept when it is a sane token, so its logs and ours line up.
    clientRequestId: given && CLIENT_ID_PATTERN.test(given) ? given : undefined,
  }
}

// Headers naming a request: the gateway's id, and the caller's when sane.
export function requestIdHeaders(ids: { requestId: string; clientRequestId?: string | undefined }): Record<string, string> {
  return ids.clientRequestId ? { 'x-request-id': ids.requestId, 'x-client-request-id': ids.clientRequestId } : { 'x-request-id': ids.requestId }
}

export function requestContext(store: ConfigStore) {
  return new Elysia({ name: 'request-context' }).derive({ as: 'global' }, function deriveRequestContext({ request }) {
    return { startedAt: performance.now(), ...requestIdsOf(request), snapshot: store.current }
  })
}
