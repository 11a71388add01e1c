// The worker's HTTP API: cost queries over the daily rollups, the request log, rollup on demand, health and metrics.
import { sameSecret } from '../shared/secret.ts'
import type { Logger } from '../shared/log.ts'
import type { ClickHouse } from './clickhouse.ts'
import { CostDimension, queryCosts, type CostQuery } from './query.ts'
import { rollupDay } from './rollup.ts'
import { requestSearchOf, searchRequests } from './requests.ts'
import { insertAudit, listAudit, readAuditBatch } from './audit.ts'

export interface ApiDeps {
  ch: ClickHouse
  log: Logger
  adminToken: string | undefined
  // Prometheus lines about the pipeline (lag, inserted, dead letters), from whoever runs it.
  metrics(): Promise<string[]>
  // Writes the records taken but not yet stored (the in-process sink), before a rollup on demand.
  flush?: () => Promise<void>
}

const DIMENSIONS = new Set<string>(['client', 'team', 'provider', 'model', 'key', 'day'])
const MAX_ROLLUP_DAYS = 62

export function analyticsApi(deps: ApiDeps): (req: Request) => Promise<Response> {
  return async function handle(req) {
    const url = new URL(req.url)
    try {
      if (req.method === 'GET' && url.pathname === '/healthz') return Response.json({ status: 'ok' })
      if (req.method === 'GET' && url.pathname === '/metrics') {
        return new Response(`${(await deps.metrics()).join('\n')}\n`, { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' } })
      }
      if (!authorized(req, deps.adminToken)) return error(401, 'invalid_api_key', 'This endpoint needs the admin token.')
      if (req.method === 'GET' && url.pathname === '/v1/costs') {
        const q = costQueryOf(url.searchParams)
        return Response.json({ query: q, rows: await queryCosts(deps.ch, q) })
      }
      if (req.method === 'POST' && url.pathname === '/v1/audit') {
        const events = readAuditBatch(await req.json().catch(() => undefined))
        await insertAudit(deps.ch, events)
        return Response.json({ stored: events.length })
      }
      if (req.method === 'GET' && url.pathname === '/v1/audit') return Response.json({ rows: await listAudit(deps.ch, url.searchParams) })
      if (req.method === 'GET' && url.pathname === '/v1/requests') {
        const q = requestSearchOf(url.searchParams)
        return Response.json({ query: q, rows: await searchRequests(deps.ch, q) })
      }
      if (req.method === 'POST' && url.pathname === '/v1/rollups') {
        const days = daysBetween(required(url.searchParams, 'from'), url.searchParams.get('to') ?? required(url.searchParams, 'from'))
        await deps.flush?.()
        for (const day of days) await rollupDay(deps.ch, day)
        return Response.json({ recomputed: days })
      }
      return error(404, 'not_found', `Unknown request URL: ${req.method} ${url.pathname}.`)
    } catch (err) {
      if (err instanceof RangeError) return error(400, 'invalid_parameter', err.message)
      deps.log.error('analytics api error', { path: url.pathname, err })
      return error(500, 'internal_error', 'internal error')
    }
  }
}

function costQueryOf(params: URLSearchParams): CostQuery {
  const by = (params.get('by') ?? '').split(',').filter(Boolean)
  for (const d of by) if (!DIMENSIONS.has(d)) throw new RangeError(`by: unknown dimension "${d}" (client, team, provider, model, key, day)`)
  const q: CostQuery = { from: required(params, 'from'), to: required(params, 'to'), by: by as CostDimension[] }
  for (const f of ['client', 'team', 'provider', 'model', 'key'] as const) {
    const v = params.get(f)
    if (v !== null) q[f] = v
  }
  return q
}

// Every UTC day from..to inclusive, bounded.
export function daysBetween(from: string, to: string): string[] {
  const start = Date.parse(`${from}T00:00:00Z`)
  const end = Date.parse(`${to}T00:00:00Z`)
  if (!/^\d{4}-\d{2}-\d{2}$/.test(from) || !/^\d{4}-\d{2}-\d{2}$/.test(to) || Number.isNaN(start) || Number.isNaN(end)) throw new RangeError('from and to must be YYYY-MM-DD')
  if (end < start) throw new RangeError(`from ${from} is after to ${to}`)
  const n = (end - start) / 86_400_000 + 1
  if (n > MAX_ROLLUP_DAYS) throw new RangeError(`at most ${MAX_ROLLUP_DAYS} days at a time`)
  return Array.from({ length: n }, (_, i) => new Date(start + i * 86_400_000).toISOString().slice(0, 10))
}

function required(params: URLSearchParams, name: string): string {
  const v = params.get(name)
  if (!v) throw new RangeError(`${name} is required (YYYY-MM-DD)`)
  return v
}

function authorized(req: Request, token: string | undefined): boolean {
  if (!token) return true
  return sameSecret((req.headers.get('authorization') ?? '').replace(/^Bearer\s+/i, ''), token)
}

function error(status: number, code: string, message: string): Response {
  return Response.json({ error: { message, type: status === 401 ? 'auth_error' : 'invalid_request', param: null, code } }, { status })
}
