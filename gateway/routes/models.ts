// GET /v1/models: the models this caller may use, in OpenAI's list shape.
import { authenticate, mayUseModel } from '../auth.ts'
import type { Snapshot } from '../config-store.ts'

export function listModels(authorization: string | null, snapshot: Snapshot, requestId: string): Response {
  const caller = authenticate(authorization, snapshot)
  const created = Math.floor(snapshot.loadedAt / 1000)
  const data = [...snapshot.routes.entries()]
    .filter(([name]) => mayUseModel(caller, name))
    .map(([name, plan]) => ({ id: name, object: 'model', created, owned_by: plan.targets[0]?.target.provider.provider_id ?? 'gateway' }))
  return Response.json({ object: 'list', data }, { headers: { 'x-request-id': requestId } })
}
