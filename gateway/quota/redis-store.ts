// Quota store on Redis (single node or Cluster): quota.lua per entity, keys hash-tagged by entity.
import { readFileSync } from 'node:fs'
import type Redis from 'ioredis'
import type { Cluster } from 'ioredis'
import { checkCountArgs, checkReleaseArgs, checkReserveArgs, checkSettleArgs, checkStatusArgs } from './amounts.ts'
import type { CountOutcome, LineStatus, QuotaLine, QuotaStore, ReserveInput, ReserveOutcome } from './types.ts'

const SCRIPT = readFileSync(new URL('./quota.lua', import.meta.url), 'utf8')

type Client = Redis | Cluster
type QuotaCommand = (h: string, r: string, z: string, ...argv: Array<string | number>) => Promise<unknown>

// Versioned layout; the {entity} hash tag keeps one entity's keys in one Cluster slot.
export function quotaKeys(entity: string): [string, string, string] {
  const tag = `quota:v1:{${entity}}`
  return [`${tag}:counters`, `${tag}:reservations`, `${tag}:expiries`]
}

export class RedisQuotaStore implements QuotaStore {
  private readonly run: QuotaCommand

  constructor(client: Client) {
    // defineCommand runs EVALSHA and reloads the script on NOSCRIPT (e.g. after Redis restarted).
    if (!('quota' in client)) client.defineCommand('quota', { numberOfKeys: 3, lua: SCRIPT })
    this.run = (client as unknown as { quota: QuotaCommand }).quota.bind(client)
  }

  // Arguments are checked here first (amounts.ts), so a bug upstream surfaces as a RangeError
  // naming the argument; quota.lua checks them again for any other caller of the script.
  async reserve(entity: string, lines: QuotaLine[], input: ReserveInput, now?: number): Promise<ReserveOutcome> {
    checkReserveArgs(entity, lines, input, now)
    const reply = (await this.run(...quotaKeys(entity), 'reserve', clock(now), input.requestId, input.ttlMs, input.tokens, input.micro, ...lineArgs(lines))) as unknown[]
    if (reply[0] === 1) {
      const remaining = (Array.isArray(reply[2]) ? reply[2] : []) as Array<[string, number, number, number, number]>
      return { ok: true, remaining: remaining.map(([qid, tokens, micro, reset, closes]) => ({ qid, tokens, micro, reset_ms: reset, closes_ms: closes })) }
    }
    const [, qid, kind, limit, used, retry] = reply as [number, string, 'tokens' | 'cost', number, number, number]
    return { ok: false, qid, kind, limit, used, retry_after_ms: retry }
  }

  async settle(entity: string, requestId: string, tokens: number, micro: number, now?: number): Promise<boolean> {
    checkSettleArgs(entity, requestId, tokens, micro, now)
    return (await this.run(...quotaKeys(entity), 'settle', clock(now), requestId, tokens, micro)) === 1
  }

  async shrink(entity: string, requestId: string, tokens: number, micro: number, now?: number): Promise<boolean> {
    checkSettleArgs(entity, requestId, tokens, micro, now)
    return (await this.run(...quotaKeys(entity), 'shrink', clock(now), requestId, tokens, micro)) === 1
  }

  async release(entity: string, requestId: string, now?: number): Promise<boolean> {
    checkReleaseArgs(entity, requestId, now)
    return (await this.run(...quotaKeys(entity), 'release', clock(now), requestId)) === 1
  }

  async status(entity: string, lines: QuotaLine[], now?: number): Promise<LineStatus[]> {
    checkStatusArgs(entity, lines, now)
    const reply = (await this.run(...quotaKeys(entity), 'status', clock(now), '', ...lineArgs(lines))) as Array<[string, number, number, number, number, number]>
    return reply.map(([qid, tokens, micro, reset, rt, rm]) => ({ qid, tokens, micro, reset_ms: reset, reserved_tokens: rt, reserved_micro: rm }))
  }

  async count(entity: string, line: QuotaLine, amount: number, now?: number): Promise<CountOutcome> {
    checkCountArgs(entity, line, amount, now)
    const reply = (await this.run(...quotaKeys(entity), 'count', clock(now), '', amount, ...lineArgs([line]))) as [number, number?, number?, number?]
    if (reply[0] === 1) return { ok: true, closes_ms: reply[1] }
    const [, limit, used, retry] = reply as [number, number, number, number]
    return { ok: false, limit, used, retry_after_ms: retry }
  }
}

// Checked numbers are safe integers, which String() writes as plain digits, the only form
// quota.lua accepts (it refuses exponents, fractions and signs other than a limit's -1).
function clock(now: number | undefined): string {
  return now === undefined ? '' : String(now)
}

function lineArgs(lines: QuotaLine[]): Array<string | number> {
  return lines.flatMap((l) => [l.qid, l.mode, l.period, l.token_limit, l.micro_limit])
}
