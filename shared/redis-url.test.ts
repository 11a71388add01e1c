import { describe, expect, it } from 'bun:test'
import { redisConnectionOptions, RedisUrlError } from './redis-url.ts'

// The error a URL gets, checked never to contain the secret it holds.
function refusal(url: string, secret: string): string {
  try {
    redisConnectionOptions(url)
  } catch (err) {
    expect(err).toBeInstanceOf(RedisUrlError)
    const message = (err as Error).message
    expect(message).not.toContain(secret)
    expect(message).not.toContain(encodeURIComponent(secret))
    return message
  }
  throw new Error(`accepted: ${url}`)
}

describe('redisConnectionOptions: one node', () => {
  it('keeps host, port and the default port', () => {
    expect(redisConnectionOptions('redis://127.0.0.1:6380')).toEqual({ kind: 'single', options: { host: '127.0.0.1', port: 6380 } })
    expect(redisConnectionOptions('redis://cache.internal')).toEqual({ kind: 'single', options: { host: 'cache.internal', port: 6379 } })
  })

  it('keeps user name and password', () => {
    expect(redisConnectionOptions('redis://gateway:s3cret@10.0.0.5:6379')).toEqual({
      kind: 'single',
      options: { host: '10.0.0.5', port: 6379, username: 'gateway', password: 's3cret' },
    })
  })

  it('keeps a password given without a user name (AUTH password, the default user)', () => {
    const target = redisConnectionOptions('redis://:s3cret@10.0.0.5')
    expect(target).toEqual({ kind: 'single', options: { host: '10.0.0.5', port: 6379, password: 's3cret' } })
  })

  it('reads user@host as that user with an empty password, as ioredis does', () => {
    expect(redisConnectionOptions('redis://reader@10.0.0.5')).toEqual({ kind: 'single', options: { host: '10.0.0.5', port: 6379, username: 'reader', password: '' } })
  })

  it('decodes percent-encoded characters in the user name and password', () => {
    const password = 'p@ss:w/rd?#%é'
    const target = redisConnectionOptions(`redis://ops%40team:${encodeURIComponent(password)}@10.0.0.5:7000`)
    expect(target).toEqual({ kind: 'single', options: { host: '10.0.0.5', port: 7000, username: 'ops@team', password } })
  })

  it('keeps the database number', () => {
    expect(redisConnectionOptions('redis://:pw@10.0.0.5:6379/3')).toEqual({ kind: 'single', options: { host: '10.0.0.5', port: 6379, db: 3, password: 'pw' } })
    expect(redisConnectionOptions('redis://10.0.0.5/0')).toEqual({ kind: 'single', options: { host: '10.0.0.5', port: 6379, db: 0 } })
  })

  it('turns TLS on for rediss://, checking the certificate against the host name', () => {
    expect(redisConnectionOptions('rediss://default:pw@redis.example.com:6380')).toEqual({
      kind: 'single',
      options: { host: 'redis.example.com', port: 6380, username: 'default', password: 'pw', tls: { servername: 'redis.example.com' } },
    })
  })

  it('sends no servername to an IP address (Node refuses one; the certificate IP is checked)', () => {
    expect(redisConnectionOptions('rediss://127.0.0.1:6380')).toEqual({ kind: 'single', options: { host: '127.0.0.1', port: 6380, tls: {} } })
    expect(redisConnectionOptions('rediss://[::1]:6380')).toEqual({ kind: 'single', options: { host: '::1', port: 6380, tls: {} } })
  })
})

describe('redisConnectionOptions: Cluster seeds', () => {
  it('puts the seeds’ shared credentials in the options of every node, discovered ones too', () => {
    const target = redisConnectionOptions('redis://:pw@10.0.0.1:7000, redis://:pw@10.0.0.2:7001,redis://:pw@10.0.0.3:7002')
    expect(target).toEqual({
      kind: 'cluster',
      seeds: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '10.0.0.3', port: 7002 },
      ],
      nodeOptions: { password: 'pw' },
    })
  })

  it('keeps user name and an encoded password for every node', () => {
    const password = 'a/b:c@d'
    const seed = (port: number) => `redis://gw:${encodeURIComponent(password)}@10.0.0.1:${port}`
    const target = redisConnectionOptions(`${seed(7000)},${seed(7001)}`)
    expect(target.kind === 'cluster' && target.nodeOptions).toEqual({ username: 'gw', password })
  })

  it('with rediss://, gives each seed its own servername and every node TLS', () => {
    const target = redisConnectionOptions('rediss://:pw@a.redis.example.com:7000,rediss://:pw@10.0.0.2:7001')
    expect(target).toEqual({
      kind: 'cluster',
      seeds: [
        { host: 'a.redis.example.com', port: 7000, tls: { servername: 'a.redis.example.com' } },
        { host: '10.0.0.2', port: 7001, tls: {} },
      ],
      nodeOptions: { password: 'pw', tls: {} },
    })
  })

  it('refuses seeds with different passwords, without showing either', () => {
    const message = refusal('redis://:first-secret@10.0.0.1:7000,redis://:other-secret@10.0.0.2:7001', 'first-secret')
    expect(message).not.toContain('other-secret')
    expect(message).toBe('seeds 1 (10.0.0.1:7000) and 2 (10.0.0.2:7001) have different passwords: every node of a Cluster is reached with the same credentials')
  })

  it('refuses a seed without the password the others have', () => {
    expect(refusal('redis://:secret-pw@10.0.0.1:7000,redis://10.0.0.2:7001', 'secret-pw')).toContain('different passwords')
  })

  it('refuses seeds with different user names', () => {
    expect(refusal('redis://a:secret-pw@10.0.0.1:7000,redis://b:secret-pw@10.0.0.2:7001', 'secret-pw')).toContain('different user names')
  })

  it('refuses a mix of redis:// and rediss://', () => {
    expect(refusal('rediss://:secret-pw@10.0.0.1:7000,redis://:secret-pw@10.0.0.2:7001', 'secret-pw')).toContain('mix redis:// and rediss://')
  })

  it('refuses a database other than 0: a Cluster has only database 0', () => {
    const message = refusal('redis://:secret-pw@10.0.0.1:7000/2,redis://:secret-pw@10.0.0.2:7001/2', 'secret-pw')
    expect(message).toBe('seed 1 (10.0.0.1:7000) names database 2, but a Redis Cluster has only database 0: drop the /2')
  })

  it('accepts /0 on a Cluster seed', () => {
    const target = redisConnectionOptions('redis://10.0.0.1:7000/0,redis://10.0.0.2:7001')
    expect(target.kind).toBe('cluster')
  })
})

describe('redisConnectionOptions: refusals never show the password', () => {
  it('refuses other schemes', () => {
    expect(refusal('http://:secret-pw@10.0.0.1:6379', 'secret-pw')).toContain('use redis:// or rediss://')
  })

  it('refuses text that is not a URL', () => {
    expect(refusal('10.0.0.1:6379', 'nothing')).toContain('not a URL')
    expect(refusal('redis://:secret-pw@10.0.0.1:notaport', 'secret-pw')).toContain('not a URL')
  })

  it('refuses a password whose "/" or "#" was not encoded, echoing none of it', () => {
    expect(refusal('redis://user:12/secret-pw@10.0.0.1:6379', 'secret-pw')).toContain('percent-encode')
    expect(refusal('redis://:pa#secret-pw@10.0.0.1:6379', 'secret-pw')).toContain('percent-encode')
    // The part before the "/" looks like host:port; it must not be echoed either.
    expect(refusal('redis://user:1234/secret-pw@10.0.0.1:6379', '1234')).toContain('no usable host')
  })

  it('refuses query parameters rather than ignoring them', () => {
    expect(refusal('redis://:secret-pw@10.0.0.1:6379?db=2', 'secret-pw')).toContain('query or fragment')
  })

  it('refuses a path that is not a database number', () => {
    expect(refusal('redis://:secret-pw@10.0.0.1:6379/cache', 'secret-pw')).toContain('database number')
  })

  it('refuses a password that is not valid percent-encoding', () => {
    expect(refusal('redis://:secret%zz@10.0.0.1:6379', 'secret%zz')).toContain('password that is not valid percent-encoding')
  })

  it('refuses an empty list', () => {
    expect(() => redisConnectionOptions(' , ')).toThrow(RedisUrlError)
  })
})
