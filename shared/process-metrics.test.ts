import { describe, expect, it } from 'bun:test'
import { EventLoopLag } from './event-loop-lag.ts'
import { countSockets, linuxProcess, ProcessMetrics, type ProcessSource } from './process-metrics.ts'

function values(lines: readonly string[]): Map<string, number> {
  return new Map(lines.filter((l) => !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]))
}

// n descriptors, every third a socket.
function fakeSource(n: number, over: Partial<ProcessSource> = {}): ProcessSource & { reads: number } {
  const src = {
    reads: 0,
    memory: () => ({ rss: 50e6, heapUsed: 10e6, heapTotal: 20e6 }),
    cpuSeconds: () => 1.5,
    startSeconds: () => 1_700_000_000,
    openFds: () => n,
    maxFds: () => 1024,
    fdNames: () => Array.from({ length: n }, (_, i) => String(i)),
    fdTarget(name: string) {
      src.reads++
      return Number(name) % 3 === 0 ? `socket:[${name}]` : '/dev/null'
    },
    ...over,
  }
  return src
}

describe('ProcessMetrics', () => {
  it('reports memory, CPU, descriptors, sockets and the lag histogram', async () => {
    const lag = new EventLoopLag()
    lag.observe(0.2)
    const v = values(await new ProcessMetrics(lag, fakeSource(9)).lines())
    expect(v.get('process_resident_memory_bytes')).toBe(50e6)
    expect(v.get('process_heap_used_bytes')).toBe(10e6)
    expect(v.get('process_heap_total_bytes')).toBe(20e6)
    expect(v.get('process_cpu_seconds_total')).toBe(1.5)
    expect(v.get('process_start_time_seconds')).toBe(1_700_000_000)
    expect(v.get('process_open_fds')).toBe(9)
    expect(v.get('process_max_fds')).toBe(1024)
    expect(v.get('process_open_sockets')).toBe(3)
    expect(v.get('process_event_loop_lag_seconds_count')).toBe(1)
  })

  it('leaves out what the platform cannot tell, rather than reporting 0', async () => {
    const lines = await new ProcessMetrics(undefined, fakeSource(0, { openFds: () => undefined, maxFds: () => undefined, fdNames: () => undefined })).lines()
    const names = [...values(lines).keys()]
    expect(names).not.toContain('process_open_fds')
    expect(names).not.toContain('process_open_sockets')
    expect(names).toContain('process_resident_memory_bytes')
    expect(names.some((n) => n.startsWith('process_event_loop_lag'))).toBe(false)
  })

  it('shares one socket scan between scrapes that arrive during it', async () => {
    const src = fakeSource(1000)
    const m = new ProcessMetrics(undefined, src)
    const [a, b] = await Promise.all([m.sockets(), m.sockets()])
    expect(a).toBe(334)
    expect(b).toBe(334)
    expect(src.reads).toBe(1000)
    // A later scrape scans again.
    await m.sockets()
    expect(src.reads).toBe(2000)
  })
})

describe('countSockets', () => {
  it('yields to the event loop between slices of descriptors', async () => {
    let turns = 0
    expect(await countSockets(fakeSource(1000), async () => void turns++)).toBe(334)
    // 1,000 descriptors in slices of 256.
    expect(turns).toBe(3)
  })

  it('skips a descriptor closed since the listing', async () => {
    expect(await countSockets(fakeSource(6, { fdTarget: (name) => (name === '3' ? undefined : 'socket:[1]') }))).toBe(5)
  })
})

describe('linuxProcess (this process, Linux)', () => {
  it('counts the sockets and descriptors this process opens', async () => {
    const server = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
    const clients: Array<{ end(): void }> = []
    try {
      const before = { sockets: (await countSockets(linuxProcess)) ?? -1, fds: linuxProcess.openFds() ?? -1 }
      for (let i = 0; i < 20; i++) clients.push(await Bun.connect({ hostname: '127.0.0.1', port: server.port, socket: { data() {} } }))
      // Each connection is two sockets here: the client's and the one the server accepted (once it has).
      expect((await countSockets(linuxProcess)) ?? -1).toBeGreaterThanOrEqual(before.sockets + 20)
      expect(linuxProcess.openFds() ?? -1).toBeGreaterThanOrEqual(before.fds + 20)
      expect(linuxProcess.maxFds()).toBeGreaterThan(0)
      const v = values(await new ProcessMetrics().lines())
      expect(v.get('process_resident_memory_bytes')).toBeGreaterThan(0)
      expect(v.get('process_heap_used_bytes')).toBeGreaterThan(0)
      expect(v.get('process_open_sockets')).toBeGreaterThanOrEqual(20)
    } finally {
      for (const c of clients) c.end()
      server.stop(true)
    }
  })
})
