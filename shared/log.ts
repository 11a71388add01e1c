// Structured JSON logs, one object per line, with known secret-bearing fields redacted.
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
}

export type LogWrite = (line: string) => void

const writeStdout: LogWrite = (line) => {
  process.stdout.write(line)
}

export function createLogger(level: LogLevel, write: LogWrite = writeStdout): Logger {
  const min = RANK[level]
  const emit = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void => {
    if (RANK[lvl] < min) return
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }, redact) + '\n')
  }
  return {
    level,
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  }
}

function redact(key: string, value: unknown): unknown {
  if (REDACTED_KEYS.has(key.toLowerCase()) && value !== undefined && value !== null) return '[redacted]'
  if (value instanceof Error) return { name: value.name, message: value.message }
  return value
}
