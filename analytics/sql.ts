// The only way values enter SQL text: quoted, escaped ClickHouse literals (18.16 has no {name:Type} parameters).

// Inside a quoted literal ClickHouse treats backslash as an escape and a quote as the end, so
// both are escaped; control characters (NUL included) go as \xHH so a statement stays one line
// of printable text in logs and nothing depends on how a client transports raw bytes.
export function sqlString(s: string): string {
  // A lone UTF-16 surrogate would be sent as U+FFFD: a different value than the caller meant.
  if (!s.isWellFormed()) throw new RangeError('string is not well-formed UTF-16 (lone surrogate)')
  let out = "'"
  for (const ch of s) {
    const code = ch.codePointAt(0) ?? 0
    if (ch === '\\') out += '\\\\'
    else if (ch === "'") out += "\\'"
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`
    else out += ch
  }
  return `${out}'`
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/

// A calendar day as a quoted literal; wrap it in toDate() where the SQL needs a Date.
export function sqlDate(d: string): string {
  assertDate(d)
  return `'${d}'`
}

// Real calendar days inside ClickHouse's Date range (1970-01-01..2105-12-31 is what both engines
// store); out-of-range days would wrap around silently instead of failing.
export function assertDate(d: string): void {
  const m = DATE.exec(d)
  if (!m) throw new RangeError(`date ${JSON.stringify(d)} is not YYYY-MM-DD`)
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])]
  const t = new Date(Date.UTC(year, month - 1, day))
  if (t.getUTCFullYear() !== year || t.getUTCMonth() !== month - 1 || t.getUTCDate() !== day) {
    throw new RangeError(`date ${d} is not a calendar day`)
  }
  if (year < 1970 || year > 2105) throw new RangeError(`date ${d} is outside 1970..2105`)
}
