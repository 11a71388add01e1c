// Structured JSON logs, one object per line, with secret-bearing fields redacted.
import type { LogLevel } from './config/schema.ts'

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

// Lines written in one turn of the event loop go out in one write: under load that is one
// syscall per batch instead of one per request.
function bufferedStdout(): LogWrite {
  let pending = ''
  let scheduled = false
  const flush = () => {
    scheduled = false
    const out = pending
    pending = ''
    process.stdout.write(out)
  }
  process.on('exit', () => {
    if (pending) process.stdout.write(pending)
  })
  return (line) => {
    pending += line
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  }
}

export function createLogger(level: LogLevel, write: LogWrite = bufferedStdout()): Logger {
  const min = RANK[level]
  const emit = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void => {
    write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...(fields && sanitize(fields)) })}\n`)
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
// cost more than the rest of the request path).
function sanitize(fields: LogFields): LogFields {
  let out: LogFields | undefined
  for (const k in fields) {
    const v = fields[k]
    const redact = REDACTED_KEYS.has(k.toLowerCase()) && v !== undefined && v !== null
    if (redact || v instanceof Error) {
      out ??= { ...fields }
      out[k] = redact ? '[redacted]' : { name: (v as Error).name, message: (v as Error).message }
    }
  }
  return out ?? fields
}
