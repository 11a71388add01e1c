// Turns anything thrown outside a route's own handling into OpenAI's error shape (Anthropic's under /v1/messages), logged once.
import { Elysia } from 'elysia'
import type { Logger } from '../../shared/log.ts'
import { errorResponse, GatewayError, toGatewayError } from '../errors.ts'
import { requestIdHeaders, requestIdsOf } from './request-context.ts'
import { anthropicErrorResponse } from '../surfaces/anthropic/surface.ts'

export function errorHandler(log: Logger) {
  return new Elysia({ name: 'error-handler' }).onError({ as: 'global' }, function renderError({ code, error, request }) {
    // The caller's x-request-id only when it is short and printable, as on every other answer.
    const headers = requestIdHeaders(requestIdsOf(request))
    const path = pathOf(request)
    const respond = path === '/v1/messages' || path.startsWith('/v1/messages/') ? anthropicErrorResponse : errorResponse
    if (code === 'NOT_FOUND') return respond(new GatewayError('not_found', `Unknown request URL: ${request.method.slice(0, 16)} ${path}.`), headers)
    if (code === 'PARSE') return respond(new GatewayError('invalid_json', 'The request body is not valid JSON.'), headers)
    const err = toGatewayError(error)
    if (err.code === 'internal_error') log.error('unhandled error', { err: error, path })
    return respond(err, headers)
  })
}

// The path a request named, shortened; a Host header that makes its URL unparsable (empty, a
// space, a bad port) must not turn a 404 into a 500.
function pathOf(request: Request): string {
  let path: string
  try {
    path = new URL(request.url).pathname
  } catch {
    path = /^[a-z]+:\/\/[^/]*(\/[^?#]*)/i.exec(request.url)?.[1] ?? '/'
  }
  return path.length > 200 ? `${path.slice(0, 200)}...` : path
}
