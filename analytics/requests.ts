// The request log: usage_raw searched by request id, client, team, model, status and time, newest first, for the console (GET /v1/requests).
import type { ClickHouse } from './clickhouse.ts'
import { sqlString } from './sql.ts'

export interface RequestSearch {
  request_id?: string
  client?: string
  team?: string
  model?: string
  status?: 'success' | 'error' | 'fallback'
  // Inclusive UTC days, YYYY-MM-DD; the last 7 days when absent.
  from?: string
  to?: string
  limit: number
}

const STATUSES = new Set(['success', 'error', 'fallback'])
const DAY = /^\d{4}-\d{2}-\d{2}$/
const MAX_LIMIT = 500

export function requestSearchOf(params: URLSearchParams, now = Date.now()): RequestSearch {
  const s: RequestSearch = { limit: 50 }
  for (const key of ['request_id', 'client', 'team', 'model'] as const) {
    const v = params.get(key)
    if (v !== null && v !== '') {
      if (v.length > 256) throw new RangeError(`${key}: at most 256 characters`)
      s[key] = v
    }
  }
  const status = params.get('status')
  if (status !== null && status !== '') {
    if (!STATUSES.has(status)) throw new RangeError('status: success, error or fallback')
    s.status = status as RequestSearch['status']
  }
  for (const key of ['from', 'to'] as const) {
    const v = params.get(key)
    if (v !== null && v !== '') {
      if (!DAY.test(v) || Number.isNaN(Date.parse(`${v}T00:00:00Z`))) throw new RangeError(`${key}: YYYY-MM-DD`)
      s[key] = v
    }
  }
  s.from ??= new Date(now - 6 * 86_400_000).toISOString().slice(0, 10)
  s.to ??= new Date(now).toISOString().slice(0, 10)
  const limit = params.get('limit')
  if (limit !== null) {
    const n = Number(limit)
    if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT) throw new RangeError(`limit: an integer from 1 to ${MAX_LIMIT}`)
    s.limit = n
  }
  return s
}

export function requestSearchSql(s: RequestSearch): string {
  const where = [`toDate(created_at) >= toDate(${sqlString(s.from ?? '')})`, `toDate(created_at) <= toDate(${sqlString(s.to ?? '')})`]
  if (s.request_id) where.push(`request_id = ${sqlString(s.request_id)}`)
  if (s.client) where.push(`client_id = ${sqlString(s.client)}`)
  if (s.team) where.push(`team_id = ${sqlString(s.team)}`)
  if (s.model) where.push(`model = ${sqlString(s.model)}`)
  if (s.status) where.push(`status = ${sqlString(s.status)}`)
  return `SELECT request_id, client_id, team_id, provider_id, model, status, http_status, error_code, input_tokens, output_tokens, cost_pico, latency_ms, created_at FROM usage_raw FINAL WHERE ${where.join(' AND ')} ORDER BY created_at DESC, request_id LIMIT ${s.limit}`
}

export function searchRequests(ch: ClickHouse, s: RequestSearch): Promise<Array<Record<string, unknown>>> {
  return ch.query(requestSearchSql(s))
}
