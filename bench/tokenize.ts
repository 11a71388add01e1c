// Benchmarks the gateway's token counter against js-tiktoken: load cost, throughput, pathological input, event-loop blocking.
// Run: npx bun bench/tokenize.ts [--old-pathological]   (the flag adds js-tiktoken on 16,000 'a's: ~20 s)
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Tiktoken } from 'js-tiktoken/lite'
import { countTextTokens, loadEncoding, type Encoding } from '../gateway/providers/tokenize.ts'

const ROOT = join(import.meta.dir, '..')
const ENCODINGS: readonly Encoding[] = ['o200k_base', 'cl100k_base']
const SIZES = [200, 2_000, 20_000, 200_000]
// Each throughput case counts about this much text, within the call bounds below.
const BYTES_PER_CASE = 4 << 20
const MAX_CALLS = 20_000
const RSS_PROBE = '--rss-probe'
const BLOCKS_PROBE = '--blocks-probe'

type Counter = { name: string; count: (text: string) => Promise<number> | number }

if (process.argv[2] === RSS_PROBE) await probeRss(process.argv[3] ?? '')
else if (process.argv[2] === BLOCKS_PROBE) await probeBlocks()
else await runBench(process.argv.includes('--old-pathological'))

async function runBench(withOldPathological: boolean): Promise<void> {
  console.log(`bun ${Bun.version}, ${navigator.hardwareConcurrency} cpus\n\n## load (each in a fresh process)`)
  for (const encoding of ENCODINGS) {
    for (const impl of ['new', 'js-tiktoken']) {
      const probe = Bun.spawnSync([process.execPath, import.meta.path, RSS_PROBE, `${impl}:${encoding}`], { stderr: 'inherit' })
      console.log(`${pad(impl, 12)} ${pad(encoding, 12)} ${probe.stdout.toString().trim()}`)
    }
  }

  const texts = { english: repeatTo(readFileSync(join(ROOT, 'docs', 'budgets.md'), 'utf8'), 200_000), code: repeatTo(readSources(join(ROOT, 'gateway')), 200_000) }
  for (const encoding of ENCODINGS) {
    await loadEncoding(encoding)
    const old = await loadTiktoken(encoding)
    const counters: Counter[] = [
      { name: 'new', count: (text) => countTextTokens(text, encoding) },
      { name: 'js-tiktoken', count: (text) => old.encode(text, [], []).length },
    ]
    console.log(`\n## throughput, ${encoding}`)
    for (const [kind, text] of Object.entries(texts)) {
      for (const size of SIZES) {
        const sample = text.slice(0, size)
        const line = [pad(`${kind} ${size} B`, 16)]
        for (const counter of counters) {
          const { microsPerCall, megabytesPerSecond } = await timeCalls(counter, sample)
          line.push(`${pad(counter.name, 12)} ${pad(microsPerCall.toFixed(1), 9)} µs/call ${pad(megabytesPerSecond.toFixed(1), 6)} MB/s`)
        }
        console.log(line.join('   '))
      }
    }
  }

  console.log('\n## pathological (o200k_base, one run each)')
  for (const [name, text] of [['16,000 a', 'a'.repeat(16_000)], ['1 MB a', 'a'.repeat(1 << 20)], ['100,000 spaces', ' '.repeat(100_000)], ['20,000 CJK', '中国語文字'.repeat(4_000)]] as const) {
    const started = performance.now()
    const tokens = await countTextTokens(text, 'o200k_base')
    console.log(`new          ${pad(name, 16)} ${pad((performance.now() - started).toFixed(1), 8)} ms  ${tokens} tokens`)
  }
  if (withOldPathological) {
    const old = await loadTiktoken('o200k_base')
    const started = performance.now()
    const tokens = old.encode('a'.repeat(16_000)).length
    console.log(`js-tiktoken  ${pad('16,000 a', 16)} ${pad((performance.now() - started).toFixed(1), 8)} ms  ${tokens} tokens`)
  }

  // In a fresh process: the heap the runs above leave (js-tiktoken's tables above all) makes collector
  // pauses of several ms that would be charged to whatever runs next.
  Bun.spawnSync([process.execPath, import.meta.path, BLOCKS_PROBE], { stdout: 'inherit', stderr: 'inherit' })
}

async function probeBlocks(): Promise<void> {
  console.log('\n## longest event-loop block while counting 1 MB (o200k_base, ms)')
  console.log('setInterval(…, 0) gaps have a 1 ms floor (the timer resolution); a setImmediate chain times each slice itself.')
  console.log('"first" is the first run in this process (the JIT still compiling), "then" the worst of the next 3 runs.')
  await loadEncoding('o200k_base')
  const english = repeatTo(readFileSync(join(ROOT, 'docs', 'budgets.md'), 'utf8'), 1 << 20)
  const inputs: [string, () => Promise<unknown>][] = [
    ['idle loop (100 ms)', () => Bun.sleep(100)],
    ['new, 1 MB English', countWith(english)],
    ['new, 1 MB code', countWith(repeatTo(readSources(join(ROOT, 'gateway')), 1 << 20))],
    ['new, 1 MB a', countWith('a'.repeat(1 << 20))],
    ['new, 1 MB spaces', countWith(' '.repeat(1 << 20))],
    ['new, 1 MB CJK letters', countWith(repeatTo('中国語文字', 1 << 20))],
    ['new, 1 MB emoji', countWith(repeatTo('🎉👩‍👩‍👧 ', 1 << 20))],
  ]
  for (const [name, work] of inputs) await printLongestGaps(name, work, 4)
  // Last, so that its tables are not in the heap while the new counter is measured.
  const old = await loadTiktoken('o200k_base')
  await printLongestGaps('js-tiktoken, 1 MB English', async () => old.encode(english, [], []).length, 1)
}

async function printLongestGaps(name: string, work: () => Promise<unknown>, runs: number): Promise<void> {
  const interval = await measureLongestGaps(work, 'interval', runs)
  const immediate = await measureLongestGaps(work, 'immediate', runs)
  const then = (gaps: number[]) => (gaps.length > 1 ? Math.max(...gaps.slice(1)).toFixed(2) : '-')
  console.log(`${pad(name, 28)} setInterval first ${pad(interval[0]!.toFixed(2), 7)} then ${pad(then(interval), 7)} setImmediate first ${pad(immediate[0]!.toFixed(2), 7)} then ${then(immediate)}`)
}

function countWith(text: string): () => Promise<number> {
  return () => countTextTokens(text, 'o200k_base')
}

// Runs in a fresh process so that one table's memory does not hide in another's. The check count
// after the measurement keeps the loaded table alive through it.
async function probeRss(which: string): Promise<void> {
  const [impl, encoding] = which.split(':') as [string, Encoding]
  warmUpJit()
  const before = settledRss()
  const started = performance.now()
  const old = impl === 'new' ? undefined : await loadTiktoken(encoding)
  if (!old) await loadEncoding(encoding)
  const loadMs = performance.now() - started
  const grown = settledRss() - before
  const check = old ? old.encode('hello world').length : await countTextTokens('hello world', encoding)
  console.log(`load ${pad(loadMs.toFixed(0), 5)} ms   rss +${pad(grown.toFixed(1), 5)} MB   (check: ${check} tokens)`)
}

// The first hot loop of a process makes JSC set up its optimizing JIT (~10 MB of RSS): a process
// that serves requests has paid that already, so it stays out of the table's share.
function warmUpJit(): void {
  const text = 'warm up the JIT, 123 '.repeat(200_000)
  const bytes = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff
  let words = 0
  for (const _ of text.slice(0, 100_000).matchAll(/\p{L}+/gu)) words++
  if (bytes[0] === words) console.error('unreachable')
}

async function loadTiktoken(encoding: Encoding): Promise<Tiktoken> {
  const ranks = encoding === 'o200k_base' ? await import('js-tiktoken/ranks/o200k_base') : await import('js-tiktoken/ranks/cl100k_base')
  return new Tiktoken(ranks.default)
}

async function timeCalls(counter: Counter, text: string): Promise<{ microsPerCall: number; megabytesPerSecond: number }> {
  const calls = Math.max(3, Math.min(MAX_CALLS, Math.ceil(BYTES_PER_CASE / text.length)))
  for (let i = 0; i < Math.min(calls, 50); i++) await counter.count(text)
  const started = performance.now()
  for (let i = 0; i < calls; i++) await counter.count(text)
  const elapsedMs = performance.now() - started
  return { microsPerCall: (elapsedMs * 1000) / calls, megabytesPerSecond: (text.length * calls) / (1 << 20) / (elapsedMs / 1000) }
}

// The longest gap between a monitor's callbacks while `work` runs, per run.
async function measureLongestGaps(work: () => Promise<unknown>, monitor: 'interval' | 'immediate', runs: number): Promise<number[]> {
  const longest: number[] = []
  for (let run = 0; run < runs; run++) {
    // Not Bun.gc(): the sweeping it leaves behind lands in the next run as pauses of several ms.
    await Bun.sleep(20)
    let last = performance.now()
    let max = 0
    let running = true
    const tick = () => {
      if (!running) return
      const now = performance.now()
      max = Math.max(max, now - last)
      last = now
      if (monitor === 'immediate') setImmediate(tick)
    }
    const interval = monitor === 'interval' ? setInterval(tick, 0) : undefined
    if (monitor === 'immediate') setImmediate(tick)
    await work()
    running = false
    clearInterval(interval)
    longest.push(Math.max(max, performance.now() - last))
  }
  return longest
}

function settledRss(): number {
  Bun.gc(true)
  return process.memoryUsage().rss / (1 << 20)
}

function readSources(dir: string): string {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .sort()
    .map((file) => readFileSync(join(dir, file), 'utf8'))
    .join('\n')
}

function repeatTo(text: string, chars: number): string {
  return text.repeat(Math.ceil(chars / text.length)).slice(0, chars)
}

function pad(text: string, width: number): string {
  return text.padEnd(width)
}
