import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { startClickHouse, type ClickHouseServer } from '../test/harness/clickhouse.ts'
import { ENGINE_LABEL, ENGINES, openTestEngine, type TestEngine } from '../test/harness/clickhouse-engines.ts'
import { connectClickHouse, type ClickHouse } from './clickhouse.ts'

for (const kind of ENGINES) {
  describe(`ClickHouse interface on ${ENGINE_LABEL[kind]}`, () => {
    let engine: TestEngine
    beforeAll(async () => {
      engine = await openTestEngine(kind)
    })
    afterAll(async () => {
      await engine?.stop()
    })

    it('inserts JSONEachRow rows and reads them back, 64-bit integers as strings', async () => {
      await engine.ch.exec('CREATE TABLE t (s String, n UInt64, f Float64, x Nullable(String)) ENGINE = MergeTree ORDER BY s')
      await engine.ch.insertRows('t', [
        { s: 'a', n: 1, f: 0.5, x: null },
        { s: 'b', n: 2 ** 53, f: 1, x: 'y' },
      ])
      await engine.ch.insertRows('t', [])
      expect(await engine.ch.query('SELECT * FROM t ORDER BY s')).toEqual([
        { s: 'a', n: '1', f: 0.5, x: null },
        { s: 'b', n: '9007199254740992', f: 1, x: 'y' },
      ])
    })

    it('rejects a bad statement with the ClickHouse message', async () => {
      await expect(engine.ch.exec('CREATE TABLE broken (')).rejects.toThrow(/Syntax error/)
      await expect(engine.ch.query('SELECT no_such_column FROM t')).rejects.toThrow(/no_such_column/)
      await expect(engine.ch.insertRows('no_such_table', [{ a: 1 }])).rejects.toThrow(/no_such_table/)
    })
  })
}

describe('clickhouse-server outage', () => {
  let server: ClickHouseServer
  let ch: ClickHouse
  beforeAll(async () => {
    server = await startClickHouse()
    ch = connectClickHouse(server.url)
  })
  afterAll(async () => {
    await ch?.close()
    await server?.stop()
  })

  it('fails while the server is down and works again after it resumes, data kept', async () => {
    await ch.exec('CREATE TABLE kept (n UInt8) ENGINE = MergeTree ORDER BY n')
    await ch.insertRows('kept', [{ n: 7 }])
    const outage = await server.stopTemporarily()
    await expect(ch.query('SELECT n FROM kept')).rejects.toThrow()
    await outage.resume()
    expect(await ch.query('SELECT n FROM kept')).toEqual([{ n: 7 }])
  })
})
