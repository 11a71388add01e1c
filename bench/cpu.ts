// Reads a process's CPU time (user + system) from /proc/<pid>/stat, to price a phase per request.
import { readFileSync } from 'node:fs'

export interface CpuMeter {
  pid: number
  // Ticks consumed since the meter was created.
  readTicks(): number
}

export function readClockTicksPerSecond(): number {
  try {
    const out = Bun.spawnSync(['getconf', 'CLK_TCK']).stdout.toString().trim()
    const n = Number(out)
    return Number.isFinite(n) && n > 0 ? n : 100
  } catch {
    return 100
  }
}

export function readProcessCpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may contain spaces and parentheses; fields after the last ')' are fixed.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // rest[0] is field 3 (state), so utime (field 14) is rest[11] and stime (field 15) is rest[12].
  return Number(rest[11]) + Number(rest[12])
}

export function createCpuMeter(pid: number): CpuMeter {
  const start = readProcessCpuTicks(pid)
  return { pid, readTicks: () => readProcessCpuTicks(pid) - start }
}

export function computeMicrosPerRequest(ticks: number, requests: number, ticksPerSecond: number): number {
  if (requests === 0) return Number.NaN
  return (ticks / ticksPerSecond / requests) * 1e6
}

// Polls until `pid` spent at most `maxTicks` in one `windowMs` window, giving up after `timeoutMs`; true if it went quiet.
// The quota gateway loads its tokenizers in the background after it listens: that must not land in the idle baseline.
export async function waitForQuietCpu(pid: number, o: { windowMs: number; maxTicks: number; timeoutMs: number }): Promise<boolean> {
  const deadline = performance.now() + o.timeoutMs
  while (performance.now() < deadline) {
    const before = readProcessCpuTicks(pid)
    await Bun.sleep(o.windowMs)
    if (readProcessCpuTicks(pid) - before <= o.maxTicks) return true
  }
  return false
}
