// REDIS_URL read into ioredis options: one node, or a Cluster's seeds and the options every node of it connects with.
import { isIP } from 'node:net'
import type { ConnectionOptions } from 'node:tls'
import type { RedisOptions } from 'ioredis'

// What both kinds share: who we are and how the bytes travel. ioredis copies a Cluster's
// redisOptions to every node it learns of from CLUSTER SLOTS, not only to the seeds, so the
// credentials and TLS live here rather than in the seed list.
type NodeOptions = Pick<RedisOptions, 'username' | 'password' | 'tls'>

export type RedisTarget =
  | { kind: 'single'; options: Pick<RedisOptions, 'host' | 'port' | 'db'> & NodeOptions }
  | { kind: 'cluster'; seeds: ClusterSeed[]; nodeOptions: NodeOptions }

export interface ClusterSeed {
  host: string
  port: number
  tls?: ConnectionOptions
}

// The message names seeds by position and host:port, never the URL itself: it may hold a password.
export class RedisUrlError extends Error {
  override name = 'RedisUrlError'
}

interface ParsedSeed {
  // "host:port", for messages.
  address: string
  host: string
  port: number
  db: number | undefined
  username: string | undefined
  password: string | undefined
  tls: boolean
}

// One redis:// or rediss:// URL is a single node; several, comma-separated, are the seeds of a
// Cluster. Throws RedisUrlError when the text cannot be used as it stands: nothing is dropped silently.
export function redisConnectionOptions(url: string): RedisTarget {
  const parts = url
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean)
  if (parts.length === 0) throw new RedisUrlError('no Redis URL given')
  const seeds = parts.map((u, i) => parseSeed(u, parts.length === 1 ? 'the URL' : `seed ${i + 1}`))
  const [first, ...rest] = seeds
  if (!first) throw new RedisUrlError('no Redis URL given')
  if (rest.length === 0) {
    const tls = first.tls ? { tls: tlsFor(first.host) } : {}
    return { kind: 'single', options: { host: first.host, port: first.port, ...(first.db === undefined ? {} : { db: first.db }), ...credentials(first), ...tls } }
  }
  // A Cluster has database 0 only (SELECT is refused); ignoring /N would let two deployments that
  // meant to keep apart share every key.
  const withDb = seeds.findIndex((s) => s.db !== undefined && s.db !== 0)
  if (withDb >= 0) throw new RedisUrlError(`seed ${withDb + 1} (${seeds[withDb]?.address}) names database ${seeds[withDb]?.db}, but a Redis Cluster has only database 0: drop the /${seeds[withDb]?.db}`)
  // Every node, seed or discovered, gets the same credentials and transport: seeds that disagree
  // would leave the nodes found later with whichever one we picked.
  rest.forEach((s, i) => {
    const which = `seeds 1 (${first.address}) and ${i + 2} (${s.address})`
    if (s.tls !== first.tls) throw new RedisUrlError(`${which} mix redis:// and rediss://: every node of a Cluster is reached the same way`)
    if (s.username !== first.username) throw new RedisUrlError(`${which} have different user names: every node of a Cluster is reached with the same credentials`)
    if (s.password !== first.password) throw new RedisUrlError(`${which} have different passwords: every node of a Cluster is reached with the same credentials`)
  })
  return {
    kind: 'cluster',
    // A seed's own servername outlives ioredis' DNS lookup of it (it connects to the address);
    // nodes found through CLUSTER SLOTS are checked against the host or IP the Cluster announces.
    seeds: seeds.map((s) => ({ host: s.host, port: s.port, ...(s.tls ? { tls: tlsFor(s.host) } : {}) })),
    nodeOptions: { ...credentials(first), ...(first.tls ? { tls: {} } : {}) },
  }
}

function credentials(s: ParsedSeed): Pick<RedisOptions, 'username' | 'password'> {
  return {
    ...(s.username === undefined ? {} : { username: s.username }),
    ...(s.password === undefined ? {} : { password: s.password }),
  }
}

// The certificate is checked against the URL's host name; Node refuses an IP as servername
// (an IP is checked against the certificate's IP addresses without one).
function tlsFor(host: string): ConnectionOptions {
  return isIP(host) ? {} : { servername: host }
}

function parseSeed(text: string, which: string): ParsedSeed {
  const encodeHint = 'percent-encode special characters such as "@", ":", "/", "?" and "#" in the user name and password'
  let u: URL
  try {
    u = new URL(text)
  } catch {
    throw new RedisUrlError(`${which} is not a URL (${encodeHint})`)
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new RedisUrlError(`${which} has scheme "${u.protocol}": use redis:// or rediss:// (TLS)`)
  // An unencoded "/", "?" or "#" in a password ends the host early and pushes the rest of the
  // password (and the real host) past it: nothing from there on may be echoed.
  const tail = u.pathname + u.search + u.hash
  const host = u.hostname.replace(/^\[|\]$/g, '')
  if (!host || tail.includes('@')) throw new RedisUrlError(`${which} has no usable host (${encodeHint})`)
  const port = u.port ? Number(u.port) : 6379
  const address = `${host}:${port}`
  if (u.search || u.hash) throw new RedisUrlError(`${which} (${address}) has a query or fragment, which is not supported (${encodeHint})`)
  let db: number | undefined
  if (u.pathname && u.pathname !== '/') {
    const m = /^\/(\d+)$/.exec(u.pathname)
    if (!m) throw new RedisUrlError(`${which} (${address}) has a path other than a database number (/0, /1, ...)`)
    db = Number(m[1])
  }
  const hasAuth = Boolean(u.username || u.password)
  return {
    address,
    host,
    port,
    db,
    username: u.username ? decode(u.username, which, address, 'user name') : undefined,
    // "user@host" is AUTH user "" (a user without a password), as ioredis reads such a URL.
    password: hasAuth ? decode(u.password, which, address, 'password') : undefined,
    tls: u.protocol === 'rediss:',
  }
}

function decode(part: string, which: string, address: string, what: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new RedisUrlError(`${which} (${address}) has a ${what} that is not valid percent-encoding`)
  }
}
