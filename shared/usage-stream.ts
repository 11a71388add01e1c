// The usage Redis Stream: its keys, and a UsageRecord's encoding as one stream entry (both processes use it).
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { UsageRecord } from './usage-event.ts'

// One hash tag for the stream and its dead letters: on a Redis Cluster both live on one slot.
export const USAGE_STREAM = '{usage}:v1:records'
export const USAGE_DEAD_LETTERS = '{usage}:v1:dead'
export const USAGE_GROUP = 'analytics'
// The entry's one field: the record as JSON.
export const RECORD_FIELD = 'r'

const check = TypeCompiler.Compile(UsageRecord)

export function encodeUsage(record: UsageRecord): string {
  return JSON.stringify(record)
}

// A stream entry's fields ([name, value, ...]) back into a record, or why it is not one.
export function decodeUsage(fields: readonly string[]): UsageRecord | Error {
  const at = fields.indexOf(RECORD_FIELD)
  const text = at % 2 === 0 ? fields[at + 1] : undefined
  if (text === undefined) return new Error(`no '${RECORD_FIELD}' field`)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return new Error('not JSON')
  }
  if (!check.Check(parsed)) {
    const e = check.Errors(parsed).First()
    return new Error(`not a UsageRecord: ${e?.path || '/'} ${e?.message ?? 'is invalid'}`)
  }
  return parsed
}
