// Keeping a streamed answer for the cache: the OpenAI frames a stream sends are read as they go (content, tool calls, the finish), and a stream that completes with sane usage is kept.
import type { ProviderAdapter, StreamOptions, StreamTranslator, Target, Usage } from '../providers/types.ts'
import { eventPayloads, type SseEvent } from '../upstream/sse.ts'
import type { CachedAnswer } from './cache.ts'
import { costPico } from '../../shared/money.ts'
import { WrappedTranslator } from '../providers/wrapped-translator.ts'

const decoder = new TextDecoder()

export function tapStreamForCache(adapter: ProviderAdapter, keep: (answer: CachedAnswer) => void): ProviderAdapter {
  return { ...adapter, openStream: (target, opts) => new CacheTap(adapter.openStream(target, opts), target, opts, keep) }
}

class CacheTap extends WrappedTranslator {
  #id = ''
  #model = ''
  #content = ''
  readonly #calls = new Map<number, { id: string; name: string; args: string }>()
  #finish = 'stop'
  #done = false

  constructor(
    inner: StreamTranslator,
    private readonly target: Target,
    private readonly opts: StreamOptions,
    private readonly keep: (answer: CachedAnswer) => void,
  ) {
    super(inner)
  }


  onEvent(event: SseEvent): Uint8Array | string | undefined {
    return this.#read(this.inner.onEvent(event))
  }

  end(): string | undefined {
    return this.#read(this.inner.end()) as string | undefined
  }

  #read<T extends Uint8Array | string | undefined>(out: T): T {
    if (out === undefined || this.#done) return out
    const text = typeof out === 'string' ? out : decoder.decode(out)
    for (const data of eventPayloads(text)) {
      if (data === '[DONE]') {
        this.#complete()
        continue
      }
      try {
        this.#chunk(JSON.parse(data) as Record<string, unknown>)
      } catch {
        // Not JSON: the inner translator judged it; nothing is kept from this stream.
        this.#done = true
      }
    }
    return out
  }

  #chunk(chunk: Record<string, unknown>): void {
    if (typeof chunk.id === 'string') this.#id = chunk.id
    if (typeof chunk.model === 'string') this.#model = chunk.model
    const choices = chunk.choices as Array<{ index?: number; delta?: Record<string, unknown>; finish_reason?: unknown }> | undefined
    if ((choices ?? []).some((c) => (c.index ?? 0) !== 0)) this.#done = true
    const choice = choices?.[0]
    const delta = choice?.delta
    if (typeof delta?.content === 'string') this.#content += delta.content
    for (const call of (delta?.tool_calls as Array<{ index?: number; id?: string; function?: { name?: string; arguments?: string } }> | undefined) ?? []) {
      const slot = this.#calls.get(call.index ?? 0) ?? { id: '', name: '', args: '' }
      if (call.id) slot.id = call.id
      if (call.function?.name) slot.name = call.function.name
      if (call.function?.arguments) slot.args += call.function.arguments
      this.#calls.set(call.index ?? 0, slot)
    }
    if (typeof choice?.finish_reason === 'string') this.#finish = choice.finish_reason
  }

  #complete(): void {
    this.#done = true
    const usage: Usage | undefined = this.inner.usage
    // Only an answer that ended well, with usage that passed the gateway's check.
    if (this.inner.error || !usage || (this.opts.checkUsage && this.opts.checkUsage(usage) !== usage)) return
    this.keep({
      id: this.#id,
      model: this.#model,
      content: this.#content === '' && this.#calls.size > 0 ? null : this.#content,
      tool_calls: [...this.#calls.entries()].sort(([a], [b]) => a - b).map(([, c]) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } })),
      finish_reason: this.#finish,
      usage,
      provider_id: this.target.provider.provider_id,
      upstream_model: this.target.upstreamModel,
      cost_pico: costPico(this.target.price, usage.input_tokens, usage.output_tokens),
    })
  }
}
