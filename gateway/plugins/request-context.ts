// Per-request context: the request id, the config snapshot the request will finish on, its start time.
import { Elysia } from 'elysia'
import type { ConfigStore } from '../config-store.ts'

const CLIENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

export function requestContext(store: ConfigStore) {
  return new Elysia({ name: 'request-context' }).derive({ as: 'global' }, function deriveRequestContext({ request }) {
    const given = request.headers.get('x-request-id')
    return {
      startedAt: performance.now(),
      // A caller's own id is kept when it is a sane token, so its logs and ours line up.
      requestId: given && CLIENT_ID_PATTERN.test(given) ? given : `req_${crypto.randomUUID().replaceAll('-', '')}`,
      snapshot: store.current,
    }
  })
}
