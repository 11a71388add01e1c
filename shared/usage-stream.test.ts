import { describe, expect, it } from 'bun:test'
import { decodeUsage, encodeUsage, RECORD_FIELD } from './usage-stream.ts'
import { usageRecord } from '../test/harness/usage-fixture.ts'

describe('usage stream encoding', () => {
  it('round-trips a record', () => {
    const r = usageRecord({ attempt_log: [{ target: 'p/m', provider_id: 'p', upstream_model: 'm-up', outcome: 'success', error_code: null, http_status: null, latency_ms: 1 }] })
    expect(decodeUsage([RECORD_FIELD, encodeUsage(r)])).toEqual(r)
  })

  it('says why an entry is not a record', () => {
    expect(decodeUsage(['x', '1'])).toBeInstanceOf(Error)
    expect(String(decodeUsage([RECORD_FIELD, '{not json']))).toContain('not JSON')
    expect(String(decodeUsage([RECORD_FIELD, JSON.stringify({ ...usageRecord(), cost_pico: -1 })]))).toContain('/cost_pico')
    // A value that happens to equal the field name is not the field.
    expect(decodeUsage(['x', RECORD_FIELD])).toBeInstanceOf(Error)
  })
})
