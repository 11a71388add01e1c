// Admin endpoints for operators holding ADMIN_TOKEN: budgets (GET /admin/quotas), routing, breakers and retry budgets (GET /admin/routing).
import type { QuotaRecord } from '../../shared/config/schema.ts'
import { sameSecret, type Secret } from '../../shared/secret.ts'
import type { Snapshot } from '../config-store.ts'
import { GatewayError } from '../errors.ts'
import { linesOf } from '../quota/quota.ts'
import type { QuotaStore } from '../quota/types.ts'
import type { RoutingState } from '../routing/router.ts'

export function requireAdmin(authorization: string | null, adminToken: Secret | undefined, path: string): void {
  // Without ADMIN_TOKEN the admin surface does not exist.
  if (!adminToken) throw new GatewayError('not_found', `Unknown request URL: GET ${path}.`)
  if (!authorization || !sameSecret(authorization.replace(/^Bearer\s+/i, ''), adminToken.reveal())) {
    throw new GatewayError('invalid_api_key', 'This endpoint needs the admin token.')
  }
}

export async function quotaStatus(snapshot: Snapshot, store: QuotaStore): Promise<Response> {
  return Response.json({ quotas: await quotaRows(snapshot, store) })
}

// Every budget line per entity it applies to, with what is used and reserved now.
export async function quotaRows(snapshot: Snapshot, store: QuotaStore) {
  const file = snapshot.config.file
  // Clients made by runtime keys count as clients too, and each key's own lines are listed.
  const runtime = snapshot.runtimeKeys?.list().filter((k) => !k.revoked_at) ?? []
  const clients = [...file.clients, ...runtime.map((k) => ({ client_id: k.client_id, team_id: k.team_id }))]
  const keyRows = runtime.flatMap((k) =>
    k.budgets.map((b, i) => ({ quota_id: `budget-${i}`, entity: `key:${k.key_id}`, record: { quota_id: `budget-${i}`, entity_type: 'user', period: b.period, window: b.window, token_limit: b.token_limit, cost_limit_usd: b.cost_limit_usd } as QuotaRecord }))
      .concat(k.tpm_limit === null ? [] : [{ quota_id: 'tpm', entity: `key:${k.key_id}`, record: { quota_id: 'tpm', entity_type: 'user', period: 'minute', window: 'sliding', token_limit: k.tpm_limit } as QuotaRecord }]),
  )
  const seen = new Set<string>()
  const entries = [...entitiesOf(file.quotas, clients), ...keyRows].filter(({ record, entity }) => {
    const id = `${record.quota_id}\u0000${entity}`
    if (seen.has(id)) return false
    seen.add(id)
    return true
  })
  return Promise.all(
    entries.map(async ({ record, entity }) => {
      const [line] = linesOf([record])
      const [s] = line ? await store.status(entity, [line]) : []
      return {
        quota_id: record.quota_id,
        entity,
        period: record.period,
        window: record.window,
        token_limit: record.token_limit ?? null,
        cost_limit_usd: record.cost_limit_usd ?? null,
        used_tokens: s ? s.tokens - s.reserved_tokens : 0,
        reserved_tokens: s?.reserved_tokens ?? 0,
        used_usd: s ? (s.micro - s.reserved_micro) / 1e6 : 0,
        reserved_usd: s ? s.reserved_micro / 1e6 : 0,
        resets_in_seconds: s ? Math.ceil(s.reset_ms / 1000) : null,
      }
    }),
  )
}

// Each route's policy and targets, and each target's breaker, retry budget and latency figures.
export function routingStatus(snapshot: Snapshot, state: RoutingState): Response {
  const now = state.now()
  const window = snapshot.config.file.routing.latency
  const targets = [...snapshot.targets.values()].map((r) => {
    const b = state.breakers.get(r.key)
    const s = b.state(now)
    const lat = state.latency.figure(r.key, window)
    return {
      target: r.key,
      provider_id: r.target.provider.provider_id,
      upstream_model: r.target.upstreamModel,
      unavailable: r.unavailable ?? null,
      breaker: {
        state: s.kind,
        since: s.kind === 'closed' ? null : new Date(s.since).toISOString(),
        half_open_at: s.kind === 'open' ? new Date(s.until).toISOString() : null,
        window: b.counts(now),
      },
      // Over retry_budget.window_ms: first calls and retries, the retries allowed; refusals so far.
      retry_budget: state.retryBudgets.get(r.key).status(now),
      latency: { p95_ms: lat.p95 === undefined ? null : Math.round(lat.p95 * 1000) / 1000, samples: lat.samples, source: lat.source },
    }
  })
  const routes = [...snapshot.routes.values()].map((p) => ({
    name: p.name,
    policy: p.policy,
    targets: p.targets.map((r, i) => ({ target: r.key, weight: p.policy === 'ab' ? p.weights[i] : undefined })),
    fallback: p.fallback,
    retries: p.retries,
  }))
  return Response.json({ config_loaded_at: new Date(snapshot.loadedAt).toISOString(), routes, targets })
}

// Every entity each record applies to: one for global, the named one, or every client / team.
function entitiesOf(records: readonly QuotaRecord[], clients: ReadonlyArray<{ client_id: string; team_id: string }>) {
  const out: Array<{ record: QuotaRecord; entity: string }> = []
  for (const record of records) {
    if (record.entity_type === 'global') {
      out.push({ record, entity: 'global' })
      continue
    }
    const ids = record.entity_id !== undefined ? [record.entity_id] : [...new Set(clients.map((c) => (record.entity_type === 'user' ? c.client_id : c.team_id)))]
    for (const id of ids) out.push({ record, entity: `${record.entity_type}:${id}` })
  }
  return out
}
