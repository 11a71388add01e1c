import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { ENGINE_LABEL, ENGINES, openTestEngine, type TestEngine } from '../test/harness/clickhouse-engines.ts'
import { sqlDate, sqlString } from './sql.ts'

const NASTY = [
  '',
  "it's",
  "''",
  '\\',
  "\\'",
  "a\\'; SELECT 1; --",
  "'; DROP TABLE x; --",
  'line\nbreak\r\ttab',
  'nul\0byte',
  '\x01\x1f\x7f',
  '\\x41 is not A',
  '\\n stays two characters',
  'ünïcödé 日本語 🚀 \u200b',
  '`backticks` and "double quotes"',
  '{name:String} ? $1 %s',
]

describe('sqlString', () => {
  it('quotes and escapes backslash, quote and control characters', () => {
    expect(sqlString("it's")).toBe("'it\\'s'")
    expect(sqlString('a\\b')).toBe("'a\\\\b'")
    expect(sqlString('a\nb\0')).toBe("'a\\x0ab\\x00'")
    expect(sqlString('日本')).toBe("'日本'")
  })

  it('never leaves an unescaped quote that could end the literal', () => {
    for (const s of NASTY) {
      const body = sqlString(s).slice(1, -1)
      // Every quote in the body is preceded by an odd number of backslashes.
      for (const m of body.matchAll(/(\\*)'/g)) expect((m[1] ?? '').length % 2).toBe(1)
    }
  })

  it('rejects a lone surrogate instead of sending a different value', () => {
    expect(() => sqlString('a\ud800b')).toThrow(RangeError)
  })
})

describe('sqlDate', () => {
  it('returns a quoted literal for a calendar day', () => {
    expect(sqlDate('2024-02-29')).toBe("'2024-02-29'")
  })

  it('rejects what is not a real day in range', () => {
    for (const bad of ['2023-02-29', '2024-13-01', '2024-1-01', "2024-01-01'", '2024-01-01 00:00:00', '1969-12-31', '2106-01-01', '']) {
      expect(() => sqlDate(bad)).toThrow(RangeError)
    }
  })
})

for (const kind of ENGINES) {
  describe(`literals round-trip on ${ENGINE_LABEL[kind]}`, () => {
    let engine: TestEngine
    beforeAll(async () => {
      engine = await openTestEngine(kind)
    })
    afterAll(async () => {
      await engine?.stop()
    })

    it('selects every nasty string back unchanged', async () => {
      const sql = NASTY.map((s, i) => `SELECT ${i} AS i, ${sqlString(s)} AS s`).join(' UNION ALL ')
      const rows = await engine.ch.query<{ i: number; s: string }>(`SELECT i, s FROM (${sql}) ORDER BY i`)
      expect(rows.map((r) => r.s)).toEqual(NASTY)
    })

    it('keeps an injection attempt inside the literal', async () => {
      await engine.ch.exec('CREATE TABLE IF NOT EXISTS x (s String) ENGINE = MergeTree ORDER BY s')
      await engine.ch.query(`SELECT count() AS n FROM x WHERE s = ${sqlString("'; DROP TABLE x; --")}`)
      expect(await engine.ch.query('EXISTS TABLE x')).toEqual([{ result: 1 }])
    })

    it('selects a date literal back as that Date', async () => {
      const rows = await engine.ch.query<{ d: string }>(`SELECT toDate(${sqlDate('2024-02-29')}) AS d`)
      expect(rows).toEqual([{ d: '2024-02-29' }])
    })
  })
}
