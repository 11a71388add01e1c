// Output moderation of a streamed answer: a content-safety service judges text as a whole, so the answer is held until it has ended and the service has answered; then it goes out at once, or the stream is refused (block) before any of it left. Held in memory up to the answer size limit.
import { GatewayError } from '../errors.ts'
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import type { SseEvent } from '../upstream/sse.ts'
import { moderate, type Fired, type ModerationGuardrail, type ModerationTarget } from './apply.ts'
import { slotsOf } from './output.ts'

export interface OutputModeration {
  list: ModerationGuardrail[]
  target: (providerId: string) => ModerationTarget | undefined
  note: (f: Fired) => void
}

export function moderatedAdapter(adapter: ProviderAdapter, m: OutputModeration, maxBytes: number): ProviderAdapter {
  return { ...adapter, openStream: (target, opts) => new ModeratedStream(adapter.openStream(target, opts), m, maxBytes) }
}

const decoder = new TextDecoder()

class ModeratedStream implements StreamTranslator {
  #held: string[] = []
  #bytes = 0
  // The answer's text, per channel (a choice's content, a block, a tool call's arguments).
  #texts = new Map<string, string>()

  constructor(
    private readonly inner: StreamTranslator,
    private readonly m: OutputModeration,
    private readonly maxBytes: number,
  ) {}

  get usage() {
    return this.inner.usage
  }
  get finished() {
    return this.inner.finished
  }
  get contentChunks() {
    return this.inner.contentChunks
  }
  get outputBytes() {
    return this.inner.outputBytes
  }
  get error() {
    return this.inner.error
  }

  onEvent(event: SseEvent): undefined {
    this.#hold(this.inner.onEvent(event))
    return undefined
  }

  // Only through finish(): the service must answer first.
  end(): undefined {
    throw new Error('a moderated stream ends through finish()')
  }

  async finish(): Promise<string | undefined> {
    this.#hold(this.inner.end())
    const texts = [...this.#texts.values()].filter((t) => t.trim() !== '')
    for (const g of this.m.list) {
      const flagged = await moderate(g, texts, this.m.target(g.provider))
      if (!flagged) continue
      if (g.action === 'block') {
        this.m.note({ id: g.id, kind: g.kind, action: 'block', stage: 'output' })
        throw new GatewayError('content_policy_violation', `The answer was stopped by guardrail '${g.id}' (moderation: ${flagged === 'error' ? 'the moderation service could not be asked' : 'flagged by the moderation service'}).`, { param: `guardrail:${g.id}` })
      }
      this.m.note({ id: g.id, kind: g.kind, action: 'log', stage: 'output' })
    }
    return this.#held.length > 0 ? this.#held.join('') : undefined
  }

  #hold(out: Uint8Array | string | undefined): void {
    if (out === undefined) return
    const text = typeof out === 'string' ? out : decoder.decode(out)
    this.#bytes += text.length
    if (this.#bytes > this.maxBytes) throw new GatewayError('upstream_bad_response', `The streamed answer is over ${this.maxBytes} bytes, the most output moderation holds to judge it whole.`)
    this.#held.push(text)
    // Events as a client reads them: several data lines are one payload.
    for (const frame of text.split(/(?:\r\n|\r|\n){2}/)) {
      const payload = frame
        .split(/\r\n|\r|\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
        .join('\n')
      let data: unknown
      try {
        data = JSON.parse(payload)
      } catch {
        continue
      }
      for (const slot of slotsOf(data)) this.#texts.set(slot.channel, (this.#texts.get(slot.channel) ?? '') + (slot.owner[slot.key] as string))
    }
  }
}
