// Starts a real clickhouse-server (Debian's 18.16) on free ports with a temporary data folder, and stops it.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Subprocess } from 'bun'

const START_TIMEOUT_MS = 20_000

export interface ClickHouseServer {
  // http://127.0.0.1:<http port>, what connectClickHouse takes.
  url: string
  // The HTTP port.
  port: number
  stop(): Promise<void>
  // Kills the process but keeps its data; `resume` starts it again on the same ports with that data.
  stopTemporarily(): Promise<{ resume(): Promise<void> }>
}

interface Ports {
  http: number
  tcp: number
  interserver: number
}

type ServerProcess = Subprocess<'ignore', 'pipe', 'pipe'>

// Processes still running when the test process exits (a failed test that never reached stop()):
// an orphaned server would keep running and hold its ports.
const running = new Set<ServerProcess>()
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL')
})

export async function startClickHouse(): Promise<ClickHouseServer> {
  const dir = mkdtempSync(join(tmpdir(), 'clickhouse-test-'))
  let config: Ports
  let proc: ServerProcess
  // A free port can be taken by someone else between the probe and the server's bind: pick anew.
  for (let attempt = 1; ; attempt++) {
    const ports = freePorts(3)
    config = writeConfig(dir, { http: ports[0] ?? 0, tcp: ports[1] ?? 0, interserver: ports[2] ?? 0 })
    try {
      proc = await spawn(config, dir)
      break
    } catch (err) {
      if (attempt < 3 && String(err).includes('Address already in use')) continue
      rmSync(dir, { recursive: true, force: true })
      throw err
    }
  }
  const url = `http://127.0.0.1:${config.http}`
  return {
    url,
    port: config.http,
    async stopTemporarily() {
      await kill(proc)
      return {
        resume: async () => {
          proc = await spawn(config, dir)
        },
      }
    },
    // SIGKILL: the data is deleted anyway, and on SIGTERM 18.16 waits ~10 s for idle keep-alive
    // connections (the HTTP client's pool) before it exits.
    async stop() {
      await kill(proc)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

// A minimal config: loopback only, everything (data, tmp, logs) inside the folder, UTC, small caches.
function writeConfig(dir: string, ports: Ports): Ports {
  mkdirSync(join(dir, 'data'), { recursive: true })
  writeFileSync(
    join(dir, 'config.xml'),
    `<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>${dir}/server.log</log>
    <errorlog>${dir}/server.err.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>${ports.http}</http_port>
  <tcp_port>${ports.tcp}</tcp_port>
  <interserver_http_port>${ports.interserver}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/data/tmp/</tmp_path>
  <user_files_path>${dir}/data/user_files/</user_files_path>
  <format_schema_path>${dir}/data/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
`,
  )
  writeFileSync(
    join(dir, 'users.xml'),
    `<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
`,
  )
  return ports
}

// Debian installs the server in /usr/sbin, which a non-root PATH often lacks.
function serverBinary(): string {
  return existsSync('/usr/sbin/clickhouse-server') ? '/usr/sbin/clickhouse-server' : 'clickhouse-server'
}

// CI runs the tests as root: checked that 18.16 starts as root with this root-owned folder, with
// nothing to configure (the Debian service would run it as `clickhouse`; the tests never use it).
async function spawn(ports: Ports, dir: string): Promise<ServerProcess> {
  const proc = Bun.spawn([serverBinary(), `--config-file=${dir}/config.xml`], {
    cwd: dir,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  running.add(proc)
  const stderr = new Response(proc.stderr).text()
  void new Response(proc.stdout).text()
  const failure = async (why: string) =>
    new Error(`clickhouse-server ${why}\nstderr:\n${tail(await Promise.race([stderr, Bun.sleep(500).then(() => '')]))}\nlog:\n${tail(readLog(dir))}`)

  const deadline = Date.now() + START_TIMEOUT_MS
  let exited: number | null = null
  void proc.exited.then((code) => {
    exited = code
  })
  for (;;) {
    if (exited !== null) {
      running.delete(proc)
      throw await failure(`exited with ${exited} before answering /ping`)
    }
    if (await pings(ports.http)) return proc
    if (Date.now() > deadline) {
      await kill(proc)
      throw await failure(`did not answer /ping on port ${ports.http} within ${START_TIMEOUT_MS} ms`)
    }
    await Bun.sleep(50)
  }
}

async function pings(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/ping`, { signal: AbortSignal.timeout(1_000) })
    return (await res.text()).trim() === 'Ok.'
  } catch {
    return false
  }
}

async function kill(proc: ServerProcess): Promise<void> {
  proc.kill('SIGKILL')
  await proc.exited
  running.delete(proc)
}

function readLog(dir: string): string {
  const parts: string[] = []
  for (const name of ['server.err.log', 'server.log']) {
    try {
      parts.push(readFileSync(join(dir, name), 'utf8'))
    } catch {
      // Not written yet: the server failed before opening its log.
    }
  }
  return parts.join('\n')
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}

// Holds all probes open until every port is chosen, so the same port is never handed out twice.
function freePorts(n: number): number[] {
  const probes = Array.from({ length: n }, () => Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response(null) }))
  const ports = probes.map((p) => p.port ?? 0)
  for (const p of probes) p.stop(true)
  return ports
}
