// GET /admin/quotas: every budget's used, reserved and limit per entity, for operators holding ADMIN_TOKEN.
import { timingSafeEqual, createHash } from 'node:crypto'
import type { QuotaRecord } from '../../shared/config/schema.ts'
import type { Secret } from '../../shared/secret.ts'
import type { Snapshot } from '../config-store.ts'
import { GatewayError } from '../errors.ts'
import { linesOf } from '../quota/quota.ts'
import type { QuotaStore } from '../quota/types.ts'

export async function quotaStatus(authorization: string | null, adminToken: Secret | undefined, snapshot: Snapshot, store: QuotaStore): Promise<Response> {
  // Without ADMIN_TOKEN the admin surface does not exist.
  if (!adminToken) throw new GatewayError('not_found', 'Unknown request URL: GET /admin/quotas.')
  if (!authorization || !sameSecret(authorization.replace(/^Bearer\s+/i, ''), adminToken.reveal())) {
    throw new GatewayError('invalid_api_key', 'This endpoint needs the admin token.')
  }
  const file = snapshot.config.file
  const rows = await Promise.all(
    entitiesOf(file.quotas, file.clients).map(async ({ record, entity }) => {
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
  return Response.json({ quotas: rows })
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

function sameSecret(given: string, expected: string): boolean {
  // Compare digests: equal length, so the comparison time says nothing about the token.
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}
