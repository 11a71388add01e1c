// createApp(deps): mounts the plugins and routes, nothing else.
import { Elysia } from 'elysia'
import type { Logger } from '../shared/log.ts'
import type { ConfigStore } from './config-store.ts'
import { errorResponse, toGatewayError } from './errors.ts'
import { errorHandler } from './plugins/error-handler.ts'
import { requestContext } from './plugins/request-context.ts'
import { handleChatCompletions } from './routes/chat-completions.ts'
import { healthRoutes } from './routes/health.ts'
import { listModels } from './routes/models.ts'
import type { QuotaService } from './quota/quota.ts'
import type { QuotaStore } from './quota/types.ts'
import { quotaStatus } from './routes/admin.ts'
import type { UsageSink } from './usage.ts'

export interface AppDeps {
  store: ConfigStore
  log: Logger
  usage: UsageSink
  quota: QuotaService
  quotaStore: QuotaStore
  // Readiness of what the gateway depends on beyond its config (Redis when configured).
  ready?: () => Promise<boolean>
}

export function createApp(deps: AppDeps) {
  const chatDeps = {
    usage: deps.usage,
    quota: deps.quota,
    onInternalError: (err: unknown, requestId: string) => deps.log.error('internal error', { request_id: requestId, err }),
  }
  return new Elysia({ name: 'gateway' })
    .use(errorHandler(deps.log))
    .use(healthRoutes(deps.store, deps.ready))
    .use(requestContext(deps.store))
    .post('/v1/chat/completions', function chatCompletions({ request, requestId, snapshot, startedAt }) {
      return handleChatCompletions({ request, requestId, snapshot, startedAt }, chatDeps)
    })
    .get('/admin/quotas', async function adminQuotas({ request, requestId, snapshot }) {
      try {
        return await quotaStatus(request.headers.get('authorization'), snapshot.config.adminToken, snapshot, deps.quotaStore)
      } catch (err) {
        return errorResponse(toGatewayError(err), { 'x-request-id': requestId })
      }
    })
    .get('/v1/models', function models({ request, requestId, snapshot }) {
      try {
        return listModels(request.headers.get('authorization'), snapshot, requestId)
      } catch (err) {
        return errorResponse(toGatewayError(err), { 'x-request-id': requestId })
      }
    })
}

export type App = ReturnType<typeof createApp>
