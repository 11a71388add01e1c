// A secret value that refuses to be printed, serialized or logged by accident.
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
