// GET /v1/models: the models this caller may use, in OpenAI's list shape, or in Anthropic's when the request carries anthropic-version (the Anthropic SDK's models.list).
import { authenticate, mayUseModel } from '../auth.ts'
import type { Snapshot } from '../config-store.ts'

export function listModels(authorization: string | null, snapshot: Snapshot, requestId: string, anthropic = false): Response {
  const caller = authenticate(authorization, snapshot)
  const created = Math.floor(snapshot.loadedAt / 1000)
  const usable = [...snapshot.routes.entries()].filter(([name]) => mayUseModel(caller, name))
  const headers = { 'x-request-id': requestId }
  if (anthropic) {
    const createdAt = new Date(created * 1000).toISOString()
    const data = usable.map(([name]) => ({ type: 'model', id: name, display_name: name, created_at: createdAt }))
    return Response.json({ data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null }, { headers })
  }
  const data = usable.map(([name, plan]) => ({ id: name, object: 'model', created, owned_by: plan.targets[0]?.target.provider.provider_id ?? 'gateway' }))
  return Response.json({ object: 'list', data }, { headers })
}
