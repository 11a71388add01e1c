// Gemini streamGenerateContent (SSE) events → OpenAI chat.completion.chunk frames.
import { errorFrame, GatewayError } from '../../errors.ts'
import type { SseEvent } from '../../upstream/sse.ts'
import { ChunkWriter, DONE_FRAME } from '../openai-format.ts'
import type { StreamOptions, StreamTranslator, Usage } from '../types.ts'
import { readParts } from './response.ts'
import { toFinishReason, toUsage, type GeminiErrorWire, type GeminiResponse } from './wire.ts'

export class GeminiStreamTranslator implements StreamTranslator {
  usage: Usage | undefined
  finished = false
  contentChunks = 0
  outputBytes = 0
  error: GatewayError | undefined
  private writer: ChunkWriter | undefined
  private toolCount = 0
  private running: Usage | undefined

  constructor(
    private readonly opts: StreamOptions,
    private readonly model: string,
    private readonly toError: (wire: GeminiErrorWire | undefined) => GatewayError,
  ) {}

  onEvent(event: SseEvent): string | undefined {
    // Nothing after the finish reason counts: it is neither relayed nor billed.
    if (event.data === undefined || this.error || this.finished) return undefined
    let res: GeminiResponse
    try {
      res = JSON.parse(event.data) as GeminiResponse
    } catch (err) {
      return this.fail(new GatewayError('upstream_bad_response', 'The provider sent a stream event that is not JSON.', { cause: err }))
    }
    if (res.error) return this.fail(this.toError(res.error))
    // usageMetadata is cumulative: the last one seen is the stream's usage, but only once the
    // stream finished (a stream cut short reported only part of what it will be billed).
    this.running = toUsage(res.usageMetadata) ?? this.running
    let out = ''
    if (!this.writer) {
      this.writer = new ChunkWriter(`chatcmpl-${res.responseId ?? 'gemini'}`, res.modelVersion ?? this.model)
      out += this.writer.delta({ role: 'assistant', content: '' })
    }
    const candidate = res.candidates?.[0]
    if (!candidate) {
      if (!res.promptFeedback?.blockReason) return out || undefined
      this.finished = true
      return out + this.writer.delta({}, 'content_filter')
    }
    const { content, toolCalls, generatedBytes } = readParts(candidate.content?.parts, res.responseId ?? 'gemini', this.toolCount)
    this.outputBytes += generatedBytes
    if (content) {
      this.contentChunks++
      out += this.writer.delta({ content })
    }
    for (const call of toolCalls) {
      // Gemini sends each call whole: one delta carries id, name and the complete arguments.
      this.contentChunks++
      out += this.writer.delta({ tool_calls: [{ index: this.toolCount++, ...call }] })
    }
    if (candidate.finishReason) {
      this.finished = true
      this.usage = this.running
      out += this.writer.delta({}, toFinishReason(candidate.finishReason, this.toolCount > 0))
    }
    return out || undefined
  }

  // Gemini has no end marker: a stream that finished gets the usage chunk (when asked) and [DONE].
  end(): string | undefined {
    if (!this.finished || this.error) return undefined
    const shown = this.opts.callerWantsUsage && this.usage && this.writer ? this.writer.usage(this.opts.checkUsage?.(this.usage) ?? this.usage) : ''
    return shown + DONE_FRAME
  }

  private fail(err: GatewayError): string {
    this.error = err
    return errorFrame(err)
  }
}
