// Structured JSON logs, one object per line, with secret-bearing fields redacted and errors written whole (stack, causes) but cleaned of keys.
import type { LogLevel } from './config/schema.ts'
import { Redactor } from './redact.ts'

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }
const REDACTED_KEYS = new Set(['authorization', 'api_key', 'apikey', 'x-api-key', 'x-goog-api-key', 'key', 'password', 'secret'])

export type LogFields = Record<string, unknown>

export interface Logger {
  level: LogLevel
  debug(msg: string, fields?: LogFields): void
  info(msg: string, fields?: LogFields): void
  warn(msg: string, fields?: LogFields): void
  error(msg: string, fields?: LogFields): void
  // Start and stop lines: written at every level but silent, so tools can wait for them.
  lifecycle(msg: string, fields?: LogFields): void
}

export type LogWrite = (line: string) => void

// Cleans text that may hold a key (an error's message or stack) before it is written.
export type LogRedact = (text: string) => string

// Key-shaped text only: a process that knows its configured secrets passes a redactor holding them.
const KEY_SHAPES = new Redactor([])
const redactKeyShapes: LogRedact = (text) => KEY_SHAPES.text(text)

// Lines written in one turn of the event loop go out in one write: under load that is one
// syscall per batch instead of one per request. One buffer for every logger of the process, so
// their lines keep their order.
let pending = ''
let scheduled = false
// Resolves once the last write was taken by the OS: on a pipe, a write still queued when the
// process exits is lost (a usage record, when records are log lines).
let written: Promise<void> = Promise.resolve()

function flushPending(): void {
  scheduled = false
  if (!pending) return
  const out = pending
  pending = ''
  written = new Promise((resolve) => process.stdout.write(out, () => resolve()))
}

function bufferedStdout(): LogWrite {
  return (line) => {
    pending += line
    if (!scheduled) {
      scheduled = true
      setImmediate(flushPending)
    }
  }
}

// Writes what the loggers hold and resolves once stdout took all of it: await it before
// process.exit.
export function flushLogs(): Promise<void> {
  flushPending()
  return written
}

process.on('exit', () => {
  if (pending) process.stdout.write(pending)
})

// `redact` is called for every error text written; the gateway's reads its current config
// snapshot, so a key added by a reload is cleaned from the next line on.
// base: fields every line carries (a worker's id when several share a port).
export function createLogger(level: LogLevel, write: LogWrite = bufferedStdout(), redact: LogRedact = redactKeyShapes, base?: LogFields): Logger {
  const min = RANK[level]
  const emit = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void => {
    write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...base, ...(fields && sanitize(fields, redact)) })}\n`)
  }
  return {
    level,
    debug: (m, f) => {
      if (RANK.debug >= min) emit('debug', m, f)
    },
    info: (m, f) => {
      if (RANK.info >= min) emit('info', m, f)
    },
    warn: (m, f) => {
      if (RANK.warn >= min) emit('warn', m, f)
    },
    error: (m, f) => {
      if (RANK.error >= min) emit('error', m, f)
    },
    lifecycle: (m, f) => {
      if (min < RANK.silent) emit('info', m, f)
    },
  }
}

// Top-level fields only: callers log flat records (a stringify replacer walking every value
// cost more than the rest of the request path). Only an error is walked, down its causes.
function sanitize(fields: LogFields, redact: LogRedact): LogFields {
  let out: LogFields | undefined
  for (const k in fields) {
    const v = fields[k]
    if (v === undefined || v === null) continue
    const redacted = REDACTED_KEYS.has(k.toLowerCase())
    // `err` holding something thrown that is not an Error (a string, an object) is cleaned as well.
    if (redacted || v instanceof Error || k === 'err') {
      out ??= { ...fields }
      out[k] = redacted ? '[redacted]' : renderThrown(v, { redact, seen: new Set(), depth: 0 })
    }
  }
  return out ?? fields
}

// How much of an error a line carries: its chain ends after MAX_CAUSES causes, and each text is cut,
// so one line stays within about (MAX_CAUSES + 1) * (MAX_MESSAGE_CHARS + MAX_STACK_CHARS) characters.
export const MAX_CAUSES = 5
export const MAX_MESSAGE_CHARS = 1_000
export const MAX_STACK_CHARS = 3_000
const MAX_FIELD_CHARS = 200
// Own properties worth a line: what Node, Bun and ioredis network errors carry, and the gateway's
// own. Never the others: ioredis keeps a failed command's arguments (AUTH's password among them).
const ERROR_FIELDS = ['code', 'errno', 'syscall', 'address', 'port', 'status', 'upstreamStatus'] as const

interface Walk {
  redact: LogRedact
  // Errors already written in this chain: a cause that loops back is named, not followed.
  seen: Set<unknown>
  // How many causes down from the logged error.
  depth: number
}

// An error as { name, message, code..., stack, cause }, every text cleaned; anything else thrown as
// cleaned text (or the number, boolean or null it is).
function renderThrown(v: unknown, walk: Walk): unknown {
  try {
    if (v instanceof Error) return renderError(v, walk)
    if (v === null || typeof v === 'number' || typeof v === 'boolean') return v
    if (typeof v === 'string') return cleaned(v, MAX_MESSAGE_CHARS, walk.redact)
    return cleaned(describeValue(v), MAX_MESSAGE_CHARS, walk.redact)
  } catch {
    // A getter that throws, a Proxy: the line is still written.
    return '[an error that could not be read]'
  }
}

function renderError(err: Error, walk: Walk): Record<string, unknown> {
  walk.seen.add(err)
  const out: Record<string, unknown> = { name: cleaned(String(err.name), MAX_FIELD_CHARS, walk.redact), message: cleaned(String(err.message), MAX_MESSAGE_CHARS, walk.redact) }
  const own = err as unknown as Record<string, unknown>
  for (const f of ERROR_FIELDS) {
    const v = own[f]
    if (typeof v === 'number' || typeof v === 'boolean') out[f] = v
    else if (typeof v === 'string') out[f] = cleaned(v, MAX_FIELD_CHARS, walk.redact)
  }
  // Bun's fetch errors have none.
  if (typeof err.stack === 'string' && err.stack !== '') out.stack = cleaned(err.stack, MAX_STACK_CHARS, walk.redact)
  const cause: unknown = err.cause
  if (cause !== undefined) {
    if (walk.depth >= MAX_CAUSES) out.cause = '[further causes left out]'
    else if (walk.seen.has(cause)) out.cause = '[circular: a cause written above]'
    else out.cause = renderThrown(cause, { ...walk, depth: walk.depth + 1 })
  }
  return out
}

// JSON when the value has one (secret-named fields withheld), else its type.
function describeValue(v: unknown): string {
  if (typeof v !== 'object' || v === null) return typeof v === 'symbol' || typeof v === 'bigint' ? String(v) : `[${typeof v}]`
  try {
    const json = JSON.stringify(v, (k, x: unknown) => (k !== '' && REDACTED_KEYS.has(k.toLowerCase()) && x !== undefined && x !== null ? '[redacted]' : x))
    if (json !== undefined) return json
  } catch {
    // A cycle or a BigInt inside: the type says enough.
  }
  return Object.prototype.toString.call(v)
}

// Any run of these at a cut may be the head of a key no rule recognises once cut: it goes too.
const TOKEN_CHAR = /[A-Za-z0-9_\-.~+/=%]/

// A password in a URL ("redis://default:pw@host", a ClickHouse URL): no key shape catches it.
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@]*:)[^\s/@]+@/gi

function cleaned(text: string, max: number, redact: LogRedact): string {
  let end = text.length
  if (end > max) {
    end = max
    if (TOKEN_CHAR.test(text[max] ?? '')) while (end > 0 && TOKEN_CHAR.test(text[end - 1] ?? '')) end--
  }
  const out = redact(text.slice(0, end)).replace(URL_PASSWORD, '$1[redacted]@')
  return end === text.length ? out : `${out}...[cut: ${text.length} chars]`
}
