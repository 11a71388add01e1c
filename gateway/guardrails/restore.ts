// The originals of a redacted request put back into a streamed answer (OpenAI chunks): a placeholder split across chunks is held back until it is whole, never more than MAX_HOLD characters, so the answer still streams.
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import type { SseEvent } from '../upstream/sse.ts'
import { restoreJson } from './apply.ts'

// The longest placeholder ([REDACTED_<64-char id>_<n>]) a split can cut.
export const MAX_HOLD = 96
const PARTIAL = /\[[A-Z0-9_]*$/
const decoder = new TextDecoder()

// openAiChunks: the stream is OpenAI chat chunks (split placeholders are held back); any other
// surface's events (Anthropic's, Responses') are restored event by event, their lines kept.
export function restoringAdapter(adapter: ProviderAdapter, restore: Map<string, string>, openAiChunks = true): ProviderAdapter {
  return {
    ...adapter,
    readCompletion(text, target) {
      const c = adapter.readCompletion(text, target)
      return { ...c, body: restoreJson(c.body, restore) }
    },
    openStream: (target, opts) => (openAiChunks ? new RestoreTap(adapter.openStream(target, opts), restore) : new EventRestore(adapter.openStream(target, opts), restore)),
  }
}

// Each event's JSON with the originals in (JSON-escaped), everything else of the event as it was.
class EventRestore implements StreamTranslator {
  constructor(
    private readonly inner: StreamTranslator,
    private readonly restore: Map<string, string>,
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

  onEvent(event: SseEvent): string | undefined {
    const out = this.inner.onEvent(event)
    return out === undefined ? undefined : restoreJson(typeof out === 'string' ? out : decoder.decode(out), this.restore)
  }

  end(): string | undefined {
    const out = this.inner.end()
    return out === undefined ? undefined : restoreJson(typeof out === 'string' ? out : decoder.decode(out), this.restore)
  }
}

class RestoreTap implements StreamTranslator {
  #held = ''

  constructor(
    private readonly inner: StreamTranslator,
    private readonly restore: Map<string, string>,
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

  onEvent(event: SseEvent): string | undefined {
    return this.#rewrite(this.inner.onEvent(event))
  }

  end(): string | undefined {
    return this.#rewrite(this.inner.end())
  }

  #rewrite(out: Uint8Array | string | undefined): string | undefined {
    if (out === undefined) return undefined
    const text = typeof out === 'string' ? out : decoder.decode(out)
    let written = ''
    for (const frame of text.split(/\n\n/)) {
      if (frame.trim() === '') continue
      const line = frame.split('\n').find((l) => l.startsWith('data:'))
      const data = line?.slice(line.startsWith('data: ') ? 6 : 5).trim()
      if (data === undefined || data === '[DONE]') {
        written += this.#flush() + `${frame}\n\n`
        continue
      }
      let chunk: { id?: unknown; model?: unknown; created?: unknown; object?: unknown; choices?: Array<{ delta?: { content?: unknown }; finish_reason?: unknown }> }
      try {
        chunk = JSON.parse(data)
      } catch {
        written += `${frame}\n\n`
        continue
      }
      this.#last = chunk
      const choice = chunk.choices?.[0]
      if (choice?.finish_reason) written += this.#flush()
      // Tool call arguments are JSON text: the originals go in JSON-escaped.
      for (const call of ((choice?.delta as { tool_calls?: Array<{ function?: { arguments?: unknown } }> } | undefined)?.tool_calls ?? [])) {
        if (typeof call.function?.arguments === 'string') call.function.arguments = restoreJson(call.function.arguments, this.restore)
      }
      const content = choice?.delta?.content
      if (typeof content === 'string') {
        const whole = this.#held + content
        const partial = PARTIAL.exec(whole)
        const keep = partial && whole.length - partial.index <= MAX_HOLD ? whole.slice(partial.index) : ''
        this.#held = keep
        const ready = whole.slice(0, whole.length - keep.length)
        choice!.delta!.content = this.#restoreText(ready)
      }
      written += `data: ${JSON.stringify(chunk)}\n\n`
    }
    return written === '' ? undefined : written
  }

  #last: Record<string, unknown> | undefined

  // What was held, as a chunk of its own (before the finish, or the end).
  #flush(): string {
    if (this.#held === '') return ''
    const text = this.#restoreText(this.#held)
    this.#held = ''
    const base = this.#last ?? {}
    return `data: ${JSON.stringify({ id: base.id, object: base.object ?? 'chat.completion.chunk', created: base.created, model: base.model, choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })}\n\n`
  }

  #restoreText(text: string): string {
    let out = text
    for (const [p, original] of this.restore) out = out.split(p).join(original)
    return out
  }
}
