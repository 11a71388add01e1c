import { describe, expect, it } from 'bun:test'
import { persistenceWarning, readPersistence, weakestPersistence } from './redis-persistence.ts'

const info = (aof: 0 | 1) => `# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\naof_enabled:${aof}\r\naof_rewrite_in_progress:0\r\n`

describe('readPersistence', () => {
  it('reads AOF from INFO and RDB from non-empty save rules', () => {
    expect(readPersistence(info(1), ['save', ''])).toBe('aof')
    expect(readPersistence(info(0), ['save', '3600 1 300 100 60 10000'])).toBe('rdb')
    expect(readPersistence(info(1), ['save', '900 1'])).toBe('aof+rdb')
    expect(readPersistence(info(0), ['save', ''])).toBe('none')
    expect(readPersistence(info(0), ['save', '  '])).toBe('none')
  })

  it('accepts the RESP3 map form of CONFIG GET', () => {
    expect(readPersistence(info(0), { save: '3600 1' })).toBe('rdb')
    expect(readPersistence(info(0), { save: '' })).toBe('none')
  })

  it('says unknown when CONFIG is refused and AOF is off, since RDB cannot be ruled out', () => {
    expect(readPersistence(info(0), undefined)).toBe('unknown')
    // A hidden parameter answers an empty list.
    expect(readPersistence(info(0), [])).toBe('unknown')
  })

  it('still knows AOF is on when CONFIG is refused', () => {
    expect(readPersistence(info(1), undefined)).toBe('aof')
  })

  it('says unknown when INFO is refused or lacks aof_enabled, unless save rules prove RDB', () => {
    expect(readPersistence(undefined, ['save', ''])).toBe('unknown')
    expect(readPersistence('# Persistence\r\nloading:0\r\n', ['save', ''])).toBe('unknown')
    expect(readPersistence(undefined, ['save', '60 1'])).toBe('rdb')
  })
})

describe('weakestPersistence', () => {
  it('takes the least safe master of a Cluster', () => {
    expect(weakestPersistence(['aof', 'none', 'aof'])).toBe('none')
    expect(weakestPersistence(['aof', 'unknown', 'rdb'])).toBe('unknown')
    expect(weakestPersistence(['aof+rdb', 'rdb', 'aof'])).toBe('rdb')
    expect(weakestPersistence(['aof', 'aof'])).toBe('aof')
  })

  it('says unknown when there is no master to ask', () => {
    expect(weakestPersistence([])).toBe('unknown')
  })
})

describe('persistenceWarning', () => {
  it('names the risk and the fix when nothing persists or it cannot be verified', () => {
    for (const kind of ['none', 'unknown'] as const) {
      const w = persistenceWarning(kind) ?? ''
      expect(w).toContain("spend a whole period's budget again")
      expect(w).toContain('appendonly yes')
      expect(w).toContain('appendfsync everysec')
    }
    expect(persistenceWarning('unknown')).toContain('Could not verify')
  })

  it('has nothing to say when Redis persists', () => {
    expect(persistenceWarning('aof')).toBeUndefined()
    expect(persistenceWarning('rdb')).toBeUndefined()
    expect(persistenceWarning('aof+rdb')).toBeUndefined()
  })
})
