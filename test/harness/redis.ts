// Starts a real redis-server on a free port with a temporary data folder, and stops it.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LineLog } from './line-log.ts'
import type { TestCertificate } from './tls-cert.ts'

export interface RedisServer {
  url: string
  port: number
  // The current redis-server process (changes after restart).
  readonly pid: number
  stop(): Promise<void>
  // Kills the process and starts a new one on the same port: data and script cache are gone.
  restart(): Promise<void>
  // Kills the process; `resume` starts it again on the same port. An outage of the caller's length.
  stopTemporarily(): Promise<{ resume(): Promise<void> }>
}

// Who may connect, and how: the URL a server or cluster hands out carries both.
export interface RedisSecurity {
  // requirepass (and masterauth, for a Cluster's nodes); the URL carries it percent-encoded.
  password?: string
  // Serve TLS only, with this certificate (its own CA); the URL is rediss://. Clients must trust
  // certFile (the gateway: NODE_EXTRA_CA_CERTS).
  tls?: Pick<TestCertificate, 'certFile' | 'keyFile'>
}

export interface RedisServerOptions extends RedisSecurity {
  // Appended to the defaults (no persistence), so they override them: e.g. ['--appendonly', 'yes']. Kept across restarts.
  extraArgs?: string[]
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-test-'))
  const port = freePort()
  const extra = [...securityArgs(port, opts), ...(opts.extraArgs ?? [])]
  let proc = await spawn(port, dir, extra)
  return {
    url: redisUrl(port, opts),
    port,
    get pid() {
      return proc.pid
    },
    async restart() {
      proc.kill('SIGKILL')
      await proc.exited
      proc = await spawn(port, dir, extra)
    },
    async stopTemporarily() {
      proc.kill('SIGKILL')
      await proc.exited
      return {
        resume: async () => {
          proc = await spawn(port, dir, extra)
        },
      }
    },
    async stop() {
      proc.kill('SIGTERM')
      await proc.exited
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function spawn(port: number, dir: string, extra: string[] = []) {
  const proc = Bun.spawn(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'notice', ...extra], {
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const log = new LineLog(proc.stdout)
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([
    log.waitFor((l) => l.includes('Ready to accept connections')),
    proc.exited.then((code) => {
      throw new Error(`redis-server exited with ${code}`)
    }),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('redis-server not ready within 10 s')), 10_000)
    }),
  ]).finally(() => clearTimeout(timer))
  return proc
}

// Later arguments win: with TLS the plain port is closed (0) and the same number serves TLS.
function securityArgs(port: number, sec: RedisSecurity): string[] {
  const args = sec.password ? ['--requirepass', sec.password, '--masterauth', sec.password] : []
  if (sec.tls) {
    const { certFile, keyFile } = sec.tls
    args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', certFile, '--tls-key-file', keyFile, '--tls-ca-cert-file', certFile, '--tls-auth-clients', 'no', '--tls-cluster', 'yes')
  }
  return args
}

function redisUrl(port: number, sec: RedisSecurity): string {
  return `${sec.tls ? 'rediss' : 'redis'}://${sec.password ? `:${encodeURIComponent(sec.password)}@` : ''}127.0.0.1:${port}`
}

// redis-cli against a secured server: the password through the environment (not argv, where ps shows it).
function cli(sec: RedisSecurity, args: string[]) {
  const tls = sec.tls ? ['--tls', '--cacert', sec.tls.certFile] : []
  return Bun.spawn(['redis-cli', ...tls, ...args], { stdout: 'pipe', stderr: 'pipe', env: { ...process.env, ...(sec.password ? { REDISCLI_AUTH: sec.password } : {}) } })
}

function freePort(): number {
  const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response(null) })
  const port = probe.port ?? 0
  probe.stop(true)
  return port
}

export interface RedisCluster {
  // Seed URLs, comma-separated: the form REDIS_URL takes for a cluster.
  url: string
  nodes: Array<{ host: string; port: number }>
  // The master serving the key's slot (an entity's quota keys share one, by their hash tag).
  nodeFor(key: string): Promise<{ host: string; port: number }>
  stop(): Promise<void>
}

export interface RedisClusterOptions extends RedisSecurity {
  // Nodes announce themselves to clients (CLUSTER SLOTS) by this name instead of their IP, as
  // managed TLS clusters do so that certificates name hosts.
  announceHostname?: string
}

// Three masters, no replicas: the smallest real Cluster, its 16384 slots split three ways. With a
// password every node requires it (and uses it towards the others); with TLS every node, and the
// bus between them, speaks only TLS.
export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
  const { announceHostname, ...sec } = opts
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'))
  const ports = clusterPorts(3)
  const announce = announceHostname ? ['--cluster-announce-hostname', announceHostname, '--cluster-preferred-endpoint-type', 'hostname'] : []
  const procs = await Promise.all(
    ports.map((port) =>
      spawn(port, dir, ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000', ...announce, ...securityArgs(port, sec)]),
    ),
  )
  const create = cli(sec, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'])
  const out = await new Response(create.stdout).text()
  if ((await create.exited) !== 0 || !out.includes('All 16384 slots covered')) throw new Error(`redis-cli --cluster create failed:\n${out}${await new Response(create.stderr).text()}`)
  await waitClusterOk(ports, sec)
  return {
    url: ports.map((p) => redisUrl(p, sec)).join(','),
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    async nodeFor(key) {
      const ask = async (args: string[]) => new Response(cli(sec, ['-p', String(ports[0]), ...args]).stdout).text()
      const slot = Number((await ask(['cluster', 'keyslot', key])).trim())
      // CLUSTER NODES: "<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <state> <slot ranges...>"
      for (const line of (await ask(['cluster', 'nodes'])).split('\n')) {
        const fields = line.trim().split(' ')
        const served = fields.slice(8).some((r) => {
          const [lo, hi] = r.split('-').map(Number)
          return lo !== undefined && slot >= lo && slot <= (hi ?? lo)
        })
        const [host = '', port = ''] = (fields[1] ?? '').split('@')[0]?.split(':') ?? []
        if (served) return { host, port: Number(port) }
      }
      throw new Error(`no node serves slot ${slot}`)
    },
    async stop() {
      for (const p of procs) p.kill('SIGTERM')
      await Promise.all(procs.map((p) => p.exited))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

// Every node must agree the cluster is up before clients use it; bounded.
async function waitClusterOk(ports: number[], sec: RedisSecurity): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const states = await Promise.all(
      ports.map(async (p) => {
        const info = cli(sec, ['-p', String(p), 'cluster', 'info'])
        return (await new Response(info.stdout).text()).includes('cluster_state:ok')
      }),
    )
    if (states.every(Boolean)) return
    if (Date.now() > deadline) throw new Error('redis cluster not ok within 15 s')
    await Bun.sleep(100)
  }
}

// Cluster nodes also listen on port + 10000 (the bus): both must be free and below 65536.
function clusterPorts(n: number): number[] {
  const ports: number[] = []
  while (ports.length < n) {
    const p = 20_000 + Math.floor(Math.random() * 20_000)
    if (!ports.includes(p) && isFree(p) && isFree(p + 10_000)) ports.push(p)
  }
  return ports
}

function isFree(port: number): boolean {
  try {
    const probe = Bun.serve({ port, hostname: '127.0.0.1', fetch: () => new Response(null) })
    probe.stop(true)
    return true
  } catch {
    return false
  }
}
