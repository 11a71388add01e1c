// Turns anything thrown outside a route's own handling into OpenAI's error shape, logged once.
import { Elysia } from 'elysia'
import type { Logger } from '../../shared/log.ts'
import { errorResponse, GatewayError, toGatewayError } from '../errors.ts'
import { requestIdHeaders, requestIdsOf } from './request-context.ts'

export function errorHandler(log: Logger) {
  return new Elysia({ name: 'error-handler' }).onError({ as: 'global' }, function renderError({ code, error, request }) {
    // The caller's x-request-id only when it is short and printable, as on every other answer.
    const headers = requestIdHeaders(requestIdsOf(request))
    if (code === 'NOT_FOUND') {
      const url = new URL(request.url)
      return errorResponse(new GatewayError('not_found', `Unknown request URL: ${request.method} ${url.pathname}.`), headers)
    }
    if (code === 'PARSE') return errorResponse(new GatewayError('invalid_json', 'The request body is not valid JSON.'), headers)
    const err = toGatewayError(error)
    if (err.code === 'internal_error') log.error('unhandled error', { err: error, path: new URL(request.url).pathname })
    return errorResponse(err, headers)
  })
}
