// Per-request context: the gateway's request id, the caller's own id, the config snapshot the request will finish on, its start time.
import { Elysia } from 'elysia'
import type { ConfigStore } from '../config-store.ts'

const CLIENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

export function requestContext(store: ConfigStore) {
  return new Elysia({ name: 'request-context' }).derive({ as: 'global' }, function deriveRequestContext({ request }) {
    const given = request.headers.get('x-client-request-id') ?? request.headers.get('x-request-id')
    return {
      startedAt: performance.now(),
      // Always the gateway's own: budgets and usage records are keyed by it, so a caller reusing an
      // id (retries, a fixed header) must not merge two requests.
      requestId: `req_${crypto.randomUUID().replaceAll('-', '')}`,
      // The caller's id, kept when it is a sane token, so its logs and ours line up.
      clientRequestId: given && CLIENT_ID_PATTERN.test(given) ? given : undefined,
      snapshot: store.current,
    }
  })
}
