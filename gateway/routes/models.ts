// GET /v1/models and /v1/models/{id}: the models this caller may use, in OpenAI's list shape, or in Anthropic's when the request carries anthropic-version (the Anthropic SDK's models.list).
import { authenticate, mayUseModel } from '../auth.ts'
import type { Snapshot } from '../config-store.ts'
import { GatewayError } from '../errors.ts'

export function listModels(authorization: string | null, snapshot: Snapshot, requestId: string, anthropic = false): Response {
  const caller = authenticate(authorization, snapshot)
  const created = Math.floor(snapshot.loadedAt / 1000)
  // Models that cannot be served now (every target's provider without its key, or disabled) are left out.
  const usable = [...snapshot.routes.entries()].filter(([name, plan]) => mayUseModel(caller, name) && plan.targets.some((r) => r.unavailable === undefined))
  const headers = { 'x-request-id': requestId }
  if (anthropic) {
    const createdAt = new Date(created * 1000).toISOString()
    const data = usable.map(([name]) => ({ type: 'model', id: name, display_name: name, created_at: createdAt }))
    return Response.json({ data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null }, { headers })
  }
  const data = usable.map(([name, plan]) => ({ id: name, object: 'model', created, owned_by: plan.targets[0]?.target.provider.provider_id ?? 'gateway' }))
  return Response.json({ object: 'list', data }, { headers })
}

// GET /v1/models/{id}: one model in OpenAI's shape (Anthropic's with anthropic-version); a model the
// key may not use is a 404 exactly like one that does not exist.
export function retrieveModel(authorization: string | null, snapshot: Snapshot, requestId: string, id: string, anthropic = false): Response {
  const caller = authenticate(authorization, snapshot)
  const plan = snapshot.routes.get(id)
  if (!plan || !mayUseModel(caller, id)) throw new GatewayError('model_not_found', `The model '${id}' does not exist or you do not have access to it.`, { param: 'model' })
  const created = Math.floor(snapshot.loadedAt / 1000)
  const headers = { 'x-request-id': requestId }
  if (anthropic) return Response.json({ type: 'model', id, display_name: id, created_at: new Date(created * 1000).toISOString() }, { headers })
  return Response.json({ id, object: 'model', created, owned_by: plan.targets[0]?.target.provider.provider_id ?? 'gateway' }, { headers })
}
