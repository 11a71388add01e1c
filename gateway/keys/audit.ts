// Audit events of the admin API: a log line each, and, where an analytics worker is known (ANALYTICS_URL; npm start sets it to its own), a row in ClickHouse's audit_events, sent in batches and retried until the worker takes them (bounded: the oldest go first, said once, when it stays away).
import { randomUUID } from 'node:crypto'
import type { Logger } from '../../shared/log.ts'

export interface AuditInput {
  actor: string
  action: string
  key_id: string
  client_id: string
  team_id: string
  at: string
}

const MAX_QUEUED = 10_000
const BATCH = 500
const RETRY_MS = 1000

export class AuditSink {
  #queue: Array<AuditInput & { event_id: string }> = []
  #flushing: Promise<void> | undefined
  #timer: ReturnType<typeof setTimeout> | undefined
  #dropped = 0

  constructor(
    private readonly log: Logger,
    // Where the worker is (undefined: the log line is the record) and the token it wants.
    private readonly target: () => { url: string; token: string | undefined } | undefined,
  ) {}

  record(event: AuditInput): void {
    const e = { event_id: randomUUID(), ...event }
    this.log.info('audit', e)
    if (!this.target()) return
    this.#queue.push(e)
    if (this.#queue.length > MAX_QUEUED) {
      this.#queue.splice(0, this.#queue.length - MAX_QUEUED)
      if (this.#dropped++ === 0) this.log.warn('audit events dropped before reaching ClickHouse: the analytics worker has not taken them (they are in the log)')
    }
    void this.flush()
  }

  get queued(): number {
    return this.#queue.length
  }

  // Sends what is queued; a failure leaves it queued and tries again a second later.
  flush(): Promise<void> {
    this.#flushing ??= this.#send().finally(() => {
      this.#flushing = undefined
    })
    return this.#flushing
  }

  async #send(): Promise<void> {
    while (this.#queue.length > 0) {
      const t = this.target()
      if (!t) return
      const batch = this.#queue.slice(0, BATCH)
      try {
        const res = await fetch(`${t.url.replace(/\/$/, '')}/v1/audit`, { method: 'POST', headers: { 'content-type': 'application/json', ...(t.token ? { authorization: `Bearer ${t.token}` } : {}) }, body: JSON.stringify({ events: batch }), signal: AbortSignal.timeout(5000) })
        if (!res.ok) throw new Error(`analytics worker answered ${res.status}`)
        this.#queue.splice(0, batch.length)
        this.#dropped = 0
      } catch {
        clearTimeout(this.#timer)
        this.#timer = setTimeout(() => void this.flush(), RETRY_MS)
        this.#timer.unref?.()
        return
      }
    }
  }

  // At shutdown: one last try within the time left.
  async close(ms: number): Promise<boolean> {
    clearTimeout(this.#timer)
    await Promise.race([this.flush(), new Promise((r) => setTimeout(r, ms))])
    return this.#queue.length === 0
  }
}
