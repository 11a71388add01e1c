// A secret value that refuses to be printed, serialized or logged by accident, and the constant-time check of a presented token.
import { createHash, timingSafeEqual } from 'node:crypto'

const hidden = new WeakMap<Secret, string>()

export class Secret {
  constructor(value: string) {
    hidden.set(this, value)
  }

  reveal(): string {
    return hidden.get(this) ?? ''
  }

  toString(): string {
    return '[redacted]'
  }

  toJSON(): string {
    return '[redacted]'
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return 'Secret([redacted])'
  }
}

// Compares digests: equal length whatever was sent, so the time taken says nothing about the token.
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}
