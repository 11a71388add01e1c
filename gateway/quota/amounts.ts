// The bounds on what a quota store accepts, and the checks both stores run before they change anything (quota.lua repeats them).
import type { QuotaMode, QuotaPeriod } from './types.ts'

// 1e13 (tokens, or $10M in micro-dollars, per request): every integer up to it has at most 14
// significant digits, all that Lua's number printing (%.14g) and cjson keep, so quota.lua
// stores and reads back every allowed amount exactly.
export const MAX_AMOUNT = 10_000_000_000_000
// Limits are only compared in quota.lua, never stored, so the bound is what a double holds exactly.
export const MAX_LIMIT = Number.MAX_SAFE_INTEGER
export const NO_LIMIT = -1
// Longer than any request; a longer TTL only keeps a dead gateway's reservation counting.
export const MAX_TTL_MS = 31 * 86_400_000
// The end of Date's range: windows are computed with Date.UTC.
export const MAX_NOW_MS = 8_640_000_000_000_000
// In UTF-8 bytes, as quota.lua measures it: request ids and qids become hash fields and JSON keys.
export const MAX_NAME_BYTES = 200

// Records, not arrays, so the compiler rejects a mode or period added to types.ts but not here.
const MODES: Record<QuotaMode, true> = { fixed: true, sliding: true }
const PERIODS: Record<QuotaPeriod, true> = { minute: true, day: true, month: true }

// C0, DEL and C1: they would end up in Redis keys, fields and logs.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

// Callers validate first, so a bad argument here is a bug upstream: throw, and let the store
// change nothing. Parameters are `unknown` because such bugs arrive through casts and JSON.
export function checkReserveArgs(entity: unknown, lines: unknown, input: unknown, now: unknown): void {
  checkEntity(entity)
  checkNow(now)
  if (typeof input !== 'object' || input === null) fail('input', 'an object', input)
  const { requestId, ttlMs, tokens, micro } = input as Record<string, unknown>
  checkName('input.requestId', requestId)
  checkInteger('input.ttlMs', ttlMs, 1, MAX_TTL_MS)
  checkInteger('input.tokens', tokens, 0, MAX_AMOUNT)
  checkInteger('input.micro', micro, 0, MAX_AMOUNT)
  checkLines(lines)
}

export function checkSettleArgs(entity: unknown, requestId: unknown, tokens: unknown, micro: unknown, now: unknown): void {
  checkEntity(entity)
  checkNow(now)
  checkName('requestId', requestId)
  checkInteger('tokens', tokens, 0, MAX_AMOUNT)
  checkInteger('micro', micro, 0, MAX_AMOUNT)
}

export function checkReleaseArgs(entity: unknown, requestId: unknown, now: unknown): void {
  checkEntity(entity)
  checkNow(now)
  checkName('requestId', requestId)
}

export function checkStatusArgs(entity: unknown, lines: unknown, now: unknown): void {
  checkEntity(entity)
  checkNow(now)
  checkLines(lines)
}

export function checkCountArgs(entity: unknown, line: unknown, amount: unknown, now: unknown): void {
  checkEntity(entity)
  checkNow(now)
  checkLines([line])
  checkInteger('amount', amount, 1, MAX_AMOUNT)
}

// Line lists already found valid, and frozen then: the gateway passes the same ones, built once
// per config and caller, with every request.
const validLines = new WeakSet<object>()

function checkLines(lines: unknown): void {
  if (typeof lines === 'object' && lines !== null && validLines.has(lines)) return
  if (!Array.isArray(lines)) fail('lines', 'an array', lines)
  lines.forEach((line: unknown, i) => {
    const at = `lines[${i}]`
    if (typeof line !== 'object' || line === null) fail(at, 'an object', line)
    const { qid, mode, period, token_limit, micro_limit } = line as Record<string, unknown>
    checkName(`${at}.qid`, qid)
    if (typeof mode !== 'string' || !Object.hasOwn(MODES, mode)) fail(`${at}.mode`, Object.keys(MODES).join(' or '), mode)
    if (typeof period !== 'string' || !Object.hasOwn(PERIODS, period)) fail(`${at}.period`, Object.keys(PERIODS).join(', '), period)
    checkInteger(`${at}.token_limit`, token_limit, NO_LIMIT, MAX_LIMIT)
    checkInteger(`${at}.micro_limit`, micro_limit, NO_LIMIT, MAX_LIMIT)
  })
  // Only a frozen list (and frozen lines) cannot change after the check.
  if (Object.isFrozen(lines) && lines.every((l) => Object.isFrozen(l))) validLines.add(lines)
}

function checkEntity(entity: unknown): void {
  if (typeof entity !== 'string' || entity === '') fail('entity', 'a non-empty string', entity)
}

// Undefined means the store's own clock.
function checkNow(now: unknown): void {
  if (now !== undefined) checkInteger('now', now, 0, MAX_NOW_MS)
}

function checkInteger(argument: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) fail(argument, `an integer in [${min}, ${max}]`, value)
}

const NAME_RULE = `a non-empty string of at most ${MAX_NAME_BYTES} UTF-8 bytes without control characters`

function checkName(argument: string, value: unknown): void {
  // A lone surrogate would reach Redis as U+FFFD, making two ids one there but not in memory.
  // A UTF-16 unit is one to three UTF-8 bytes: the bytes are counted only when that can matter.
  if (typeof value !== 'string' || value === '' || value.length > MAX_NAME_BYTES || !value.isWellFormed()) fail(argument, NAME_RULE, value)
  if ((value.length * 3 > MAX_NAME_BYTES && Buffer.byteLength(value, 'utf8') > MAX_NAME_BYTES) || CONTROL.test(value)) fail(argument, NAME_RULE, value)
}

function fail(argument: string, rule: string, value: unknown): never {
  throw new RangeError(`quota: ${argument} invalid: must be ${rule}, got ${show(value)}`)
}

// Short, so a runaway string does not flood the log line.
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' || value == null) return String(value)
  return typeof value
}
