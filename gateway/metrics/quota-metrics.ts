// Budget utilization for /metrics: each budget line per entity, used and reserved over its limit (read from the quota store at scrape time).
import type { Snapshot } from '../config-store.ts'
import type { QuotaStore } from '../quota/types.ts'
import { quotaRows } from '../routes/admin.ts'
import { escapeLabel } from './registry.ts'

export async function quotaUtilization(snapshot: Snapshot, store: QuotaStore): Promise<string[]> {
  if (snapshot.config.file.quotas.length === 0) return []
  let rows: Awaited<ReturnType<typeof quotaRows>>
  try {
    rows = await quotaRows(snapshot, store)
  } catch {
    // The store is down: the series go missing for this scrape (absent() can alert on that).
    return []
  }
  const out = [
    '# HELP gateway_quota_used_ratio Budget used plus reserved over its limit, per budget line, entity and kind (tokens or cost).',
    '# TYPE gateway_quota_used_ratio gauge',
  ]
  for (const r of rows) {
    const labels = (kind: string) => `{quota_id="${escapeLabel(r.quota_id)}",entity="${escapeLabel(r.entity)}",kind="${kind}"}`
    if (r.token_limit !== null) out.push(`gateway_quota_used_ratio${labels('tokens')} ${ratio(r.used_tokens + r.reserved_tokens, r.token_limit)}`)
    if (r.cost_limit_usd !== null) out.push(`gateway_quota_used_ratio${labels('cost')} ${ratio(r.used_usd + r.reserved_usd, r.cost_limit_usd)}`)
  }
  return out
}

function ratio(used: number, limit: number): number {
  return limit === 0 ? (used > 0 ? 1 : 0) : used / limit
}
