// Audit events from the gateway's admin API, kept in ClickHouse (audit_events): POST /v1/audit takes a batch, GET /v1/audit lists them newest first.
import type { ClickHouse } from './clickhouse.ts'
import { sqlString } from './sql.ts'

export interface AuditEvent {
  event_id: string
  at: string
  actor: string
  action: string
  key_id: string
  client_id: string
  team_id: string
}

const FIELDS = ['event_id', 'at', 'actor', 'action', 'key_id', 'client_id', 'team_id'] as const
const MAX_BATCH = 1000

export function readAuditBatch(body: unknown): AuditEvent[] {
  const events = (body as { events?: unknown } | null)?.events
  if (!Array.isArray(events) || events.length === 0 || events.length > MAX_BATCH) throw new RangeError(`events: 1 to ${MAX_BATCH} audit events`)
  return events.map((e: Record<string, unknown>, i) => {
    for (const f of FIELDS) if (typeof e?.[f] !== 'string' || (e[f] as string).length > 256) throw new RangeError(`events[${i}].${f}: a string of at most 256 characters`)
    if (Number.isNaN(Date.parse(e.at as string))) throw new RangeError(`events[${i}].at: a time`)
    return Object.fromEntries(FIELDS.map((f) => [f, e[f]])) as unknown as AuditEvent
  })
}

export async function insertAudit(ch: ClickHouse, events: readonly AuditEvent[]): Promise<void> {
  // DateTime in 18.16 takes 'YYYY-MM-DD hh:mm:ss' (UTC).
  await ch.insertRows('audit_events', events.map((e) => ({ ...e, at: new Date(e.at).toISOString().slice(0, 19).replace('T', ' ') })))
}

export function listAudit(ch: ClickHouse, params: URLSearchParams): Promise<Array<Record<string, unknown>>> {
  const limit = Number(params.get('limit') ?? 100)
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new RangeError('limit: an integer from 1 to 1000')
  const where: string[] = []
  const key = params.get('key_id')
  if (key) where.push(`key_id = ${sqlString(key)}`)
  const client = params.get('client')
  if (client) where.push(`client_id = ${sqlString(client)}`)
  return ch.query(`SELECT event_id, at, actor, action, key_id, client_id, team_id FROM audit_events FINAL${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, event_id LIMIT ${limit}`)
}
