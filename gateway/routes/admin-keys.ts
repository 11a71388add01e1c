// /admin/keys: virtual keys at runtime (issue, list, show, rotate with a grace period, change, revoke), behind the admin token; every change is an audit event. The secret is returned once, at creation or rotation; only its SHA-256 is kept.
import { createHash, randomBytes } from 'node:crypto'
import { Type as t, type Static } from '@sinclair/typebox'
import { TypeCompiler, type ValueError } from '@sinclair/typebox/compiler'
import type { AuditSink } from '../keys/audit.ts'
import type { Secret } from '../../shared/secret.ts'
import { hashKey } from '../auth.ts'
import type { Snapshot } from '../config-store.ts'
import { GatewayError } from '../errors.ts'
import type { KeyRegistry } from '../keys/registry.ts'
import type { KeyBudget, RuntimeKey } from '../keys/store.ts'
import { requireAdmin } from './admin.ts'

const Id = t.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:@-]+$' })
const Models = t.Array(t.String({ minLength: 1, maxLength: 256 }), { maxItems: 1000 })
const Limit = t.Integer({ minimum: 1, maximum: 1_000_000_000 })
const Budget = t.Object(
  {
    period: t.Union([t.Literal('minute'), t.Literal('day'), t.Literal('month')]),
    window: t.Optional(t.Union([t.Literal('fixed'), t.Literal('sliding')])),
    token_limit: t.Optional(t.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
    cost_limit_usd: t.Optional(t.Number({ minimum: 0, maximum: 1_000_000_000 })),
  },
  { additionalProperties: false },
)

const CreateBody = t.Object(
  {
    client_id: Id,
    team_id: t.Optional(Id),
    name: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
    models: t.Optional(Models),
    expires_at: t.Optional(t.String({ minLength: 1 })),
    rpm_limit: t.Optional(Limit),
    tpm_limit: t.Optional(Limit),
    budgets: t.Optional(t.Array(Budget, { maxItems: 16 })),
  },
  { additionalProperties: false },
)
const PatchBody = t.Object(
  {
    name: t.Optional(t.Union([t.String({ minLength: 1, maxLength: 200 }), t.Null()])),
    models: t.Optional(t.Union([Models, t.Null()])),
    expires_at: t.Optional(t.Union([t.String({ minLength: 1 }), t.Null()])),
    rpm_limit: t.Optional(t.Union([Limit, t.Null()])),
    tpm_limit: t.Optional(t.Union([Limit, t.Null()])),
    budgets: t.Optional(t.Array(Budget, { maxItems: 16 })),
  },
  { additionalProperties: false },
)
const RotateBody = t.Object({ grace_seconds: t.Optional(t.Integer({ minimum: 0, maximum: 30 * 86_400 })) }, { additionalProperties: false })
const checks = { create: TypeCompiler.Compile(CreateBody), patch: TypeCompiler.Compile(PatchBody), rotate: TypeCompiler.Compile(RotateBody) }

export interface AdminKeysDeps {
  keys: KeyRegistry
  audit: AuditSink
  clock?: () => number
}

// The whole of /admin/keys: returns the answer, or throws a GatewayError.
export async function adminKeys(request: Request, snapshot: Snapshot, adminToken: Secret | undefined, deps: AdminKeysDeps): Promise<Response> {
  const url = new URL(request.url)
  const path = url.pathname
  requireAdmin(request.headers.get('authorization'), adminToken, path)
  const actor = `admin:${createHash('sha256').update(adminToken?.reveal() ?? '').digest('hex').slice(0, 8)}`
  const now = (deps.clock ?? Date.now)()
  const m = /^\/admin\/keys(?:\/([^/]+)(\/rotate)?)?$/.exec(path)
  if (!m) throw new GatewayError('not_found', `Unknown request URL: ${request.method.slice(0, 16)} ${path.slice(0, 200)}.`)
  const [, id, rotate] = m
  const audit = (action: string, key: RuntimeKey) => deps.audit.record({ actor, action, key_id: key.key_id, client_id: key.client_id, team_id: key.team_id, at: new Date(now).toISOString() })
  const view = (key: RuntimeKey) => describe(key, deps.keys, now)

  if (!id) {
    if (request.method === 'GET') {
      const client = url.searchParams.get('client_id')
      const team = url.searchParams.get('team_id')
      const status = url.searchParams.get('status')
      const keys = deps.keys.list().filter((k) => (!client || k.client_id === client) && (!team || k.team_id === team) && (!status || deps.keys.status(k, now) === status))
      return Response.json({ object: 'list', data: keys.sort((a, b) => a.created_at.localeCompare(b.created_at)).map(view) })
    }
    if (request.method !== 'POST') throw methodNotAllowed(request, path)
    const body = readBody(await bodyOf(request), checks.create)
    const configured = snapshot.config.file.clients.find((c) => c.client_id === body.client_id)
    if (configured && body.team_id !== undefined && body.team_id !== configured.team_id) throw invalid('team_id', `client '${body.client_id}' belongs to team '${configured.team_id}' in the config`)
    const team = configured?.team_id ?? body.team_id
    if (!team) throw invalid('team_id', `a new client needs its team_id`)
    const secret = newSecret()
    const at = new Date(now).toISOString()
    const key: RuntimeKey = {
      key_id: `key_${randomBytes(8).toString('hex')}`,
      client_id: body.client_id,
      team_id: team,
      name: body.name ?? null,
      prefix: secret.slice(0, 12),
      sha256: hashKey(secret),
      models: body.models ?? null,
      expires_at: readExpiry(body.expires_at, now),
      rpm_limit: body.rpm_limit ?? null,
      tpm_limit: body.tpm_limit ?? null,
      budgets: readBudgets(body.budgets),
      revoked_at: null,
      created_at: at,
      updated_at: at,
      version: 1,
    }
    await save(deps, key, 0)
    audit('key.create', key)
    return Response.json({ ...view(key), key: secret }, { status: 201 })
  }

  const keyId = decodePart(id)
  if (request.method === 'GET' && !rotate) {
    // As stored now, not as this instance last loaded it.
    const known = await fresh(deps, keyId)
    if (!known) throw notFound(keyId)
    return Response.json(view(known))
  }
  // A change is read whole first, then applied to the key as stored now (another instance's
  // change included) and written only if nobody wrote in between: a revocation is never undone.
  const body = request.method === 'DELETE' ? {} : await bodyOf(request, rotate !== undefined)
  const key = await fresh(deps, keyId)
  if (!key) throw notFound(keyId)
  const at = new Date(now).toISOString()
  const next: RuntimeKey = { ...key, updated_at: at, version: key.version + 1 }
  let answer: Record<string, unknown> = {}
  if (rotate) {
    if (request.method !== 'POST') throw methodNotAllowed(request, path)
    const b = readBody(body, checks.rotate)
    if (key.revoked_at) throw invalid('key_id', 'a revoked key cannot be rotated')
    const secret = newSecret()
    const grace = b.grace_seconds ?? 0
    next.prefix = secret.slice(0, 12)
    next.sha256 = hashKey(secret)
    if (grace > 0) next.previous = { sha256: key.sha256, prefix: key.prefix, until: new Date(now + grace * 1000).toISOString() }
    else delete next.previous
    answer = { key: secret }
  } else if (request.method === 'DELETE') {
    next.revoked_at = key.revoked_at ?? at
  } else if (request.method === 'PATCH') {
    const b = readBody(body, checks.patch)
    if (key.revoked_at) throw invalid('key_id', 'a revoked key cannot be changed')
    if (b.name !== undefined) next.name = b.name
    if (b.models !== undefined) next.models = b.models
    if (b.expires_at !== undefined) next.expires_at = b.expires_at === null ? null : readExpiry(b.expires_at, now)
    if (b.rpm_limit !== undefined) next.rpm_limit = b.rpm_limit
    if (b.tpm_limit !== undefined) next.tpm_limit = b.tpm_limit
    if (b.budgets !== undefined) next.budgets = readBudgets(b.budgets)
  } else throw methodNotAllowed(request, path)
  await save(deps, next, key.version)
  audit(rotate ? 'key.rotate' : request.method === 'DELETE' ? 'key.revoke' : 'key.update', next)
  return Response.json({ ...view(next), ...answer })
}

// Admin bodies are small: read under a bound and a deadline, like a request's.
async function bodyOf(request: Request, optional = false): Promise<unknown> {
  const text = await readBodyText(request)
  if (text.trim() === '') return optional ? {} : undefined
  try {
    return JSON.parse(text)
  } catch {
    throw new GatewayError('invalid_json', 'The request body is not valid JSON.')
  }
}

async function readBodyText(request: Request): Promise<string> {
  const declared = Number(request.headers.get('content-length') ?? 0)
  if (declared > MAX_ADMIN_BODY) throw new GatewayError('body_too_large', `An admin request body may be at most ${MAX_ADMIN_BODY} bytes.`)
  const reader = request.body?.getReader()
  if (!reader) return ''
  const parts: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > MAX_ADMIN_BODY) {
      void reader.cancel().catch(() => undefined)
      throw new GatewayError('body_too_large', `An admin request body may be at most ${MAX_ADMIN_BODY} bytes.`)
    }
    parts.push(value)
  }
  return new TextDecoder().decode(Buffer.concat(parts))
}

const MAX_ADMIN_BODY = 64 * 1024

async function fresh(deps: AdminKeysDeps, keyId: string): Promise<RuntimeKey | undefined> {
  try {
    return await deps.keys.fresh(keyId)
  } catch (err) {
    throw new GatewayError('dependency_unavailable', 'The key store is unavailable; nothing was changed.', { cause: err })
  }
}

async function save(deps: AdminKeysDeps, key: RuntimeKey, expected: number): Promise<void> {
  let saved: boolean
  try {
    saved = await deps.keys.save(key, expected)
  } catch (err) {
    throw new GatewayError('dependency_unavailable', 'The key store is unavailable; nothing was changed.', { cause: err })
  }
  if (!saved) throw new GatewayError('conflict', `Key '${key.key_id}' was changed by another request meanwhile; read it again and retry.`, { param: 'key_id' })
}

function decodePart(raw: string): string {
  try {
    return decodeURIComponent(raw)
  } catch {
    return raw
  }
}

function notFound(keyId: string): GatewayError {
  return new GatewayError('not_found', `No key '${keyId.slice(0, 128)}'.`, { param: 'key_id' })
}

// What a list shows of a key: never the secret or its hash, only its first characters.
function describe(key: RuntimeKey, keys: KeyRegistry, now: number) {
  const used = keys.lastUsed(key.key_id)
  return {
    key_id: key.key_id,
    client_id: key.client_id,
    team_id: key.team_id,
    name: key.name,
    prefix: key.prefix,
    status: keys.status(key, now),
    models: key.models,
    expires_at: key.expires_at,
    rpm_limit: key.rpm_limit,
    tpm_limit: key.tpm_limit,
    budgets: key.budgets,
    rotation: key.previous ? { previous_prefix: key.previous.prefix, previous_valid_until: key.previous.until } : null,
    created_at: key.created_at,
    updated_at: key.updated_at,
    revoked_at: key.revoked_at,
    // Where this process saw it last (each instance knows its own).
    last_used_at: used === undefined ? null : new Date(used).toISOString(),
  }
}

function newSecret(): string {
  return `sk-gw-${randomBytes(24).toString('base64url')}`
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i

function readExpiry(value: string | undefined, now: number): string | null {
  if (value === undefined) return null
  const m = RFC3339.exec(value)
  const t = Date.parse(value)
  // A date that does not exist (Feb 30) is refused, not rolled over; the offset is required.
  const real = m && new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))).toISOString().slice(0, 10) === `${m[1]}-${m[2]}-${m[3]}`
  if (!m || !real || Number.isNaN(t)) throw invalid('expires_at', 'expected an RFC 3339 time with its offset, e.g. 2027-01-31T00:00:00Z')
  if (t <= now) throw invalid('expires_at', 'must be in the future')
  return new Date(t).toISOString()
}

function readBudgets(budgets: Array<Static<typeof Budget>> | undefined): KeyBudget[] {
  return (budgets ?? []).map((b, i) => {
    if (b.token_limit === undefined && b.cost_limit_usd === undefined) throw invalid(`budgets[${i}]`, 'a budget needs token_limit or cost_limit_usd')
    return { period: b.period, window: b.window ?? 'fixed', ...(b.token_limit === undefined ? {} : { token_limit: b.token_limit }), ...(b.cost_limit_usd === undefined ? {} : { cost_limit_usd: b.cost_limit_usd }) }
  })
}

function readBody<T>(body: unknown, check: { Check(v: unknown): v is T; Errors(v: unknown): Iterable<ValueError> }): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GatewayError('invalid_parameter', 'The request body must be a JSON object.')
  if (check.Check(body)) return body
  let best: ValueError | undefined
  for (const e of check.Errors(body)) if (!best || e.path.length > best.path.length) best = e
  const param = (best?.path ?? '').split('/').filter(Boolean).map((seg, i) => (/^\d+$/.test(seg) ? `[${seg}]` : i === 0 ? seg : `.${seg}`)).join('')
  if (best && best.message.startsWith('Unexpected property')) throw invalid(param, 'unknown field')
  if (best && param && !(param.split(/[.[]/)[0]! in (body as object))) throw invalid(param, 'required')
  throw invalid(param || 'body', best ? best.message.charAt(0).toLowerCase() + best.message.slice(1) : 'invalid')
}

function invalid(param: string, message: string): GatewayError {
  return new GatewayError('invalid_parameter', `Invalid '${param}': ${message}.`, { param })
}

function methodNotAllowed(request: Request, path: string): GatewayError {
  return new GatewayError('not_found', `Unknown request URL: ${request.method.slice(0, 16)} ${path.slice(0, 200)}.`)
}
