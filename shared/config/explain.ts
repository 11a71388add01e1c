// Schema errors in words a newcomer acts on: an unknown key with the nearest known one ("did you mean"), a value outside a set with the set, a union of shapes (guardrails, by kind) with the errors of the shape its kind names.
import type { TSchema } from '@sinclair/typebox'
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value'

export function explainErrors(schema: TSchema, value: unknown): string[] {
  return [...Value.Errors(schema, value)].flatMap((e) => explain(e))
}

function explain(e: ValueError, prefix = ''): string[] {
  const path = prefix + (e.path || '') || '/'
  const s = e.schema as TSchema & { properties?: Record<string, unknown>; anyOf?: TSchema[] }
  if (e.type === ValueErrorType.ObjectAdditionalProperties && s.properties) {
    const key = e.path.split('/').at(-1) ?? ''
    const known = Object.keys(s.properties)
    const near = nearest(key, known)
    return [`${path}: unknown setting "${key}"${near ? ` (did you mean "${near}"?)` : `; known here: ${known.join(', ')}`}`]
  }
  if (e.type === ValueErrorType.Union && Array.isArray(s.anyOf)) {
    const literals = s.anyOf.map((m) => (m as { const?: unknown }).const)
    if (literals.every((l) => typeof l === 'string' || typeof l === 'number' || typeof l === 'boolean')) {
      const got = JSON.stringify(e.value)
      const near = typeof e.value === 'string' ? nearest(e.value, literals as string[]) : undefined
      return [`${path}: ${got} is not one of ${literals.join(', ')}${near ? ` (did you mean "${near}"?)` : ''}`]
    }
    // Shapes told apart by their kind (guardrails): the errors of the one its kind names.
    const kinds = s.anyOf.map((m) => ((m as { properties?: Record<string, { const?: unknown }> }).properties?.kind?.const))
    if (kinds.every((k) => typeof k === 'string') && typeof e.value === 'object' && e.value !== null) {
      const kind = (e.value as { kind?: unknown }).kind
      const i = kinds.indexOf(kind as string)
      if (i < 0) {
        const near = typeof kind === 'string' ? nearest(kind, kinds as string[]) : undefined
        return [`${path}/kind: ${JSON.stringify(kind)} is not one of ${kinds.join(', ')}${near ? ` (did you mean "${near}"?)` : ''}`]
      }
      // Its defaults first, as a valid one gets them.
      const member = s.anyOf[i]!
      const filled = Value.Default(member, structuredClone(e.value))
      return [...Value.Errors(member, filled)].flatMap((inner) => explain(inner, path === '/' ? '' : path))
    }
  }
  return [`${path}: ${e.message}`]
}

// The known word closest to what was typed, when it is close (a typo, not another word).
export function nearest(typed: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  for (const k of known) {
    const d = distance(typed.toLowerCase(), k.toLowerCase())
    if (d < bestD) ((best = k), (bestD = d))
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined
}

// Levenshtein distance with adjacent swaps counted once.
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Infinity
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}
