// Starts a real redis-server on a free port with a temporary data folder, and stops it.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LineLog } from './line-log.ts'

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

export interface RedisServerOptions {
  // Appended to the defaults (no persistence), so they override them: e.g. ['--appendonly', 'yes']. Kept across restarts.
  extraArgs?: string[]
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-test-'))
  const port = freePort()
  const extra = opts.extraArgs ?? []
  let proc = await spawn(port, dir, extra)
  return {
    url: `redis://127.0.0.1:${port}`,
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
  stop(): Promise<void>
}

// Three masters, no replicas: the smallest real Cluster, its 16384 slots split three ways.
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'))
  const ports = clusterPorts(3)
  const procs = await Promise.all(
    ports.map((port) => spawn(port, dir, ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000'])),
  )
  const create = Bun.spawn(['redis-cli', '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { stdout: 'pipe', stderr: 'pipe' })
  const out = await new Response(create.stdout).text()
  if ((await create.exited) !== 0 || !out.includes('All 16384 slots covered')) throw new Error(`redis-cli --cluster create failed:\n${out}`)
  await waitClusterOk(ports)
  return {
    url: ports.map((p) => `redis://127.0.0.1:${p}`).join(','),
    nodes: ports.map((port) => ({ host: '127.0.0.1', port })),
    async stop() {
      for (const p of procs) p.kill('SIGTERM')
      await Promise.all(procs.map((p) => p.exited))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

// Every node must agree the cluster is up before clients use it; bounded.
async function waitClusterOk(ports: number[]): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const states = await Promise.all(
      ports.map(async (p) => {
        const cli = Bun.spawn(['redis-cli', '-p', String(p), 'cluster', 'info'], { stdout: 'pipe' })
        return (await new Response(cli.stdout).text()).includes('cluster_state:ok')
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
