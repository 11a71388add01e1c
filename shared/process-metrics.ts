// Process metrics both processes serve, read when scraped: CPU, resident memory, the JavaScript heap, open file descriptors and sockets (Linux /proc), and the event-loop lag.
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs'
import type { EventLoopLag } from './event-loop-lag.ts'

// What the figures are read from; tests give their own.
export interface ProcessSource {
  memory(): { rss: number; heapUsed: number; heapTotal: number }
  cpuSeconds(): number
  startSeconds(): number
  // undefined where there is no /proc (the series is then left out, not reported as 0).
  openFds(): number | undefined
  maxFds(): number | undefined
  // The entries of /proc/self/fd, and what one points to (`socket:[inode]` for a socket).
  fdNames(): string[] | undefined
  fdTarget(name: string): string | undefined
}

// readlink costs ~4.5 µs a descriptor: the scan yields to the event loop after each slice (~1.2
// ms), so 5,000 sockets cost a scrape ~25 ms but other requests at most the listing (one call,
// ~0.75 µs a descriptor) plus a slice, not one 25 ms stall.
const SCAN_SLICE = 256

const STARTED = Date.now() / 1000 - process.uptime()

export const linuxProcess: ProcessSource = {
  memory: () => process.memoryUsage(),
  cpuSeconds() {
    const u = process.cpuUsage()
    return (u.user + u.system) / 1e6
  },
  startSeconds: () => STARTED,
  openFds() {
    try {
      // Linux 6.2+ reports the number of open descriptors as the directory's size, without listing it.
      const size = statSync('/proc/self/fd').size
      // Older kernels report 0: list it (the listing holds its own descriptor, hence - 1).
      return size > 0 ? size : readdirSync('/proc/self/fd').length - 1
    } catch {
      return undefined
    }
  },
  maxFds() {
    try {
      const soft = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]
      return soft === undefined ? undefined : Number(soft)
    } catch {
      return undefined
    }
  },
  fdNames() {
    try {
      return readdirSync('/proc/self/fd')
    } catch {
      return undefined
    }
  },
  fdTarget(name) {
    try {
      return readlinkSync(`/proc/self/fd/${name}`)
    } catch {
      // Closed since the listing.
      return undefined
    }
  },
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

// Sockets among the process's descriptors: callers' connections, provider and Redis connections,
// listening sockets. Bun has no connection hook, and server.pendingRequests counts requests being
// handled, not sockets (idle keep-alive connections and half-sent headers are not in it).
export async function countSockets(source: ProcessSource, yieldTurn: () => Promise<void> = nextTurn): Promise<number | undefined> {
  const names = source.fdNames()
  if (!names) return undefined
  let sockets = 0
  for (let i = 0; i < names.length; i++) {
    if (source.fdTarget(names[i] ?? '')?.startsWith('socket:')) sockets++
    if ((i + 1) % SCAN_SLICE === 0) await yieldTurn()
  }
  return sockets
}

export class ProcessMetrics {
  #scan: Promise<number | undefined> | undefined

  constructor(
    private readonly lag?: EventLoopLag,
    private readonly source: ProcessSource = linuxProcess,
  ) {}

  // Scrapes that arrive during a scan share it.
  sockets(): Promise<number | undefined> {
    if (!this.#scan) {
      this.#scan = countSockets(this.source).finally(() => {
        this.#scan = undefined
      })
    }
    return this.#scan
  }

  async lines(): Promise<string[]> {
    const sockets = await this.sockets()
    const out: string[] = []
    const metric = (name: string, type: 'gauge' | 'counter', help: string, value: number | undefined) => {
      if (value !== undefined) out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`)
    }
    const m = this.source.memory()
    metric('process_cpu_seconds_total', 'counter', 'User and system CPU time of the process.', this.source.cpuSeconds())
    metric('process_start_time_seconds', 'gauge', 'When the process started, seconds since the Unix epoch.', this.source.startSeconds())
    metric('process_resident_memory_bytes', 'gauge', 'Resident set size.', m.rss)
    metric('process_heap_used_bytes', 'gauge', "JavaScript heap in use (Bun: JavaScriptCore's figure, as process.memoryUsage() reports it).", m.heapUsed)
    metric('process_heap_total_bytes', 'gauge', "JavaScript heap size (Bun: JavaScriptCore's figure, as process.memoryUsage() reports it).", m.heapTotal)
    metric('process_open_fds', 'gauge', 'Open file descriptors.', this.source.openFds())
    metric('process_max_fds', 'gauge', 'The open-file limit (soft).', this.source.maxFds())
    metric('process_open_sockets', 'gauge', 'Open socket descriptors (client, provider, Redis and listening sockets), counted in /proc/self/fd when scraped.', sockets)
    this.lag?.render(out)
    return out
  }
}
