// Output moderation of a streamed answer: a content-safety service judges text as a whole, so the answer is held until it has ended and the service has answered; then it goes out at once, or the stream is refused (block) before any of it left. Held in memory up to the answer size limit.
import { GatewayError } from '../errors.ts'
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import { eventPayloads, type SseEvent } from '../upstream/sse.ts'
import { moderate, type Fired, type ModerationGuardrail, type ModerationTarget } from './apply.ts'
import { slotsOf } from './output.ts'
import { WrappedTranslator } from '../providers/wrapped-translator.ts'

export interface OutputModeration {
  list: ModerationGuardrail[]
  target: (providerId: string) => ModerationTarget | undefined
  note: (f: Fired) => void
}

export function moderatedAdapter(adapter: ProviderAdapter, m: OutputModeration, maxBytes: number): ProviderAdapter {
  return { ...adapter, openStream: (target, opts) => new ModeratedStream(adapter.openStream(target, opts), m, maxBytes, opts.signal) }
}

const decoder = new TextDecoder()

class ModeratedStream extends WrappedTranslator {
  #held: string[] = []
  #bytes = 0
  // The answer's text, per channel (a choice's content, a block, a tool call's arguments).
  #texts = new Map<string, string>()

  constructor(
    inner: StreamTranslator,
    private readonly m: OutputModeration,
    private readonly maxBytes: number,
    // The stream's own: the caller leaving stops the moderation call too.
    private readonly signal?: AbortSignal,
  ) {
    super(inner)
  }


  onEvent(event: SseEvent): string | undefined {
    return this.#hold(this.inner.onEvent(event))
  }

  // Only through finish(): the service must answer first.
  end(): undefined {
    throw new Error('a moderated stream ends through finish()')
  }

  async finish(): Promise<string | undefined> {
    const tail = this.#hold(this.inner.end())
    if (this.#unjudged) return tail
    const texts = [...this.#texts.values()].filter((t) => t.trim() !== '')
    for (const g of this.m.list) {
      const flagged = await moderate(g, texts, this.m.target(g.provider), this.signal)
      // Given up while the service was asked (the caller left): that, not the service, ends it.
      if (this.signal?.aborted) throw this.signal.reason
      if (!flagged) continue
      if (g.action === 'block') throw this.#refusal(g, flagged === 'error' ? 'the moderation service could not be asked' : 'flagged by the moderation service')
      this.m.note({ id: g.id, kind: g.kind, action: 'log', stage: 'output' })
    }
    return this.#held.length > 0 ? this.#held.join('') : undefined
  }

  // Refused after the provider answered (it bills the call): with the usage it reported, if any.
  #refusal(g: ModerationGuardrail, what: string): GatewayError {
    this.m.note({ id: g.id, kind: g.kind, action: 'block', stage: 'output' })
    const err = new GatewayError('content_policy_violation', `The answer was stopped by guardrail '${g.id}' (moderation: ${what}).`, { param: `guardrail:${g.id}`, accepted: true })
    return this.inner.usage ? Object.assign(err, { usage: this.inner.usage }) : err
  }

  // Set once the answer outgrew what can be held: it then streams unjudged (every guardrail's
  // on_error allows it) or was refused.
  #unjudged = false

  #hold(out: Uint8Array | string | undefined): string | undefined {
    if (out === undefined) return undefined
    const text = typeof out === 'string' ? out : decoder.decode(out)
    if (this.#unjudged) return text
    this.#bytes += Buffer.byteLength(text)
    if (this.#bytes > this.maxBytes) {
      // Too long to be judged whole: as when the service cannot be asked.
      const strict = this.m.list.find((g) => g.on_error === 'block')
      if (strict) throw this.#refusal(strict, `the answer is over ${this.maxBytes} bytes, too long to be judged whole`)
      this.#unjudged = true
      const held = this.#held.join('') + text
      this.#held = []
      return held
    }
    this.#held.push(text)
    // Events as a client reads them: several data lines are one payload.
    for (const payload of eventPayloads(text)) {
      let data: unknown
      try {
        data = JSON.parse(payload)
      } catch {
        continue
      }
      for (const slot of slotsOf(data)) this.#texts.set(slot.channel, (this.#texts.get(slot.channel) ?? '') + (slot.owner[slot.key] as string))
    }
    return undefined
  }
}
