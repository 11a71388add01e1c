// Reads the quota gateway's ledger from Redis with redis-cli: which entities it metered, what they settled, which reservations are still open.

export interface EntityLedger {
  entity: string
  // Settled usage over the entity's budgets' current windows: tokens and integer micro-dollars.
  used_tokens: number
  used_micro_usd: number
  open_reservations: number
}

const REDIS_CLI_TIMEOUT_MS = 5_000
// quota:v1:{<entity>}:counters, the layout of gateway/quota/redis-store.ts.
const COUNTERS_KEY = /^quota:v1:\{(.+)\}:counters$/

export async function readQuotaLedger(redisUrl: string): Promise<EntityLedger[]> {
  const keys = (await runRedisCli(redisUrl, ['--scan', '--pattern', 'quota:v1:*:counters'])).split('\n')
  const entities = keys.flatMap((k) => COUNTERS_KEY.exec(k.trim())?.[1] ?? []).sort()
  const out: EntityLedger[] = []
  for (const entity of entities) {
    const fields = (await runRedisCli(redisUrl, ['HGETALL', `quota:v1:{${entity}}:counters`])).split('\n')
    let tokens = 0
    let micro = 0
    // HGETALL prints field and value on alternate lines; `<qid>:tot:ut|um` are the settled totals per budget.
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const field = fields[i] ?? ''
      if (field.endsWith(':tot:ut')) tokens += Number(fields[i + 1])
      if (field.endsWith(':tot:um')) micro += Number(fields[i + 1])
    }
    const open = Number((await runRedisCli(redisUrl, ['HLEN', `quota:v1:{${entity}}:reservations`])).trim())
    out.push({ entity, used_tokens: tokens, used_micro_usd: micro, open_reservations: open })
  }
  return out
}

async function runRedisCli(redisUrl: string, args: string[]): Promise<string> {
  const proc = Bun.spawn(['redis-cli', '-u', redisUrl, '--raw', ...args], { stdout: 'pipe', stderr: 'pipe', timeout: REDIS_CLI_TIMEOUT_MS })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  if (code !== 0) throw new Error(`redis-cli ${args.join(' ')} exited with ${code}: ${err.trim()}`)
  return out
}
