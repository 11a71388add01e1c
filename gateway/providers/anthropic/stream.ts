// Anthropic Messages stream events → OpenAI chat.completion.chunk frames.
import { errorFrame, GatewayError } from '../../errors.ts'
import type { SseEvent } from '../../upstream/sse.ts'
import { ChunkWriter, DONE_FRAME } from '../openai-format.ts'
import type { StreamOptions, StreamTranslator, Usage } from '../types.ts'
import { toFinishReason, toUsage, type AnthropicErrorWire, type AnthropicUsageWire } from './wire.ts'
import { JSON_RESPONSE_TOOL } from './request.ts'

interface ToolSlot {
  index: number
  sawArguments: boolean
}

type Event = {
  type?: string
  message?: { id?: string; model?: string; usage?: AnthropicUsageWire }
  index?: number
  content_block?: { type?: string; id?: string; name?: string; text?: string }
  delta?: { type?: string; text?: string; partial_json?: string; stop_reason?: string | null }
  usage?: AnthropicUsageWire
  error?: AnthropicErrorWire
}

export class AnthropicStreamTranslator implements StreamTranslator {
  usage: Usage | undefined
  finished = false
  contentChunks = 0
  outputBytes = 0
  error: GatewayError | undefined
  private writer: ChunkWriter | undefined
  private usageSoFar: AnthropicUsageWire = {}
  // OpenAI numbers tool calls 0, 1, ...; Anthropic numbers every content block.
  private readonly tools = new Map<number, ToolSlot>()
  // The block of the structured-output call (response_format json_schema), whose input is text.
  private jsonBlock: number | undefined

  constructor(
    private readonly opts: StreamOptions,
    private readonly fallbackModel: string,
    private readonly toError: (wire: AnthropicErrorWire | undefined) => GatewayError,
  ) {}

  onEvent(event: SseEvent): string | undefined {
    // Nothing after message_stop counts: it is neither relayed nor billed.
    if (event.data === undefined || this.error || this.finished) return undefined
    let e: Event
    try {
      e = JSON.parse(event.data) as Event
    } catch (err) {
      return this.fail(new GatewayError('upstream_bad_response', 'The provider sent a stream event that is not JSON.', { cause: err }))
    }
    switch (e.type) {
      case 'message_start':
        this.writer = new ChunkWriter(e.message?.id ?? 'msg', e.message?.model ?? this.fallbackModel)
        this.usageSoFar = { ...e.message?.usage }
        return this.out().delta({ role: 'assistant', content: '' })
      case 'content_block_start':
        return this.startBlock(e)
      case 'content_block_delta':
        return this.delta(e)
      case 'content_block_stop': {
        // A tool called without arguments streams none; OpenAI clients expect "{}".
        const slot = this.tools.get(e.index ?? -1)
        if (slot && !slot.sawArguments) return this.out().delta({ tool_calls: [{ index: slot.index, function: { arguments: '{}' } }] })
        return undefined
      }
      case 'message_delta':
        // output_tokens here is cumulative; newer servers repeat input figures too.
        this.usageSoFar = { ...this.usageSoFar, ...definedOnly(e.usage) }
        this.usage = toUsage(this.usageSoFar)
        return this.out().delta({}, this.jsonBlock !== undefined && e.delta?.stop_reason === 'tool_use' ? 'stop' : toFinishReason(e.delta?.stop_reason))
      case 'message_stop':
        this.finished = true
        return (this.opts.callerWantsUsage && this.usage ? this.out().usage(this.opts.checkUsage?.(this.usage) ?? this.usage) : '') + DONE_FRAME
      case 'error':
        return this.fail(this.toError(e.error))
      default:
        // ping, and event types added after this was written.
        return undefined
    }
  }

  end(): undefined {
    return undefined
  }

  private startBlock(e: Event): string | undefined {
    const block = e.content_block
    if (block?.type === 'tool_use' && block.name === JSON_RESPONSE_TOOL) {
      // Structured output: the call's input is the message's text.
      this.jsonBlock = e.index ?? -1
      return undefined
    }
    if (block?.type === 'tool_use') {
      const slot = { index: this.tools.size, sawArguments: false }
      this.tools.set(e.index ?? -1, slot)
      this.contentChunks++
      return this.out().delta({ tool_calls: [{ index: slot.index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } }] })
    }
    if (block?.type === 'text' && block.text) {
      this.contentChunks++
      this.outputBytes += Buffer.byteLength(block.text)
      return this.out().delta({ content: block.text })
    }
    return undefined
  }

  private delta(e: Event): string | undefined {
    const d = e.delta
    if (d?.type === 'text_delta' && typeof d.text === 'string') {
      this.contentChunks++
      this.outputBytes += Buffer.byteLength(d.text)
      return this.out().delta({ content: d.text })
    }
    if (d?.type === 'input_json_delta' && d.partial_json && e.index === this.jsonBlock) {
      this.contentChunks++
      this.outputBytes += Buffer.byteLength(d.partial_json)
      return this.out().delta({ content: d.partial_json })
    }
    if (d?.type === 'input_json_delta' && d.partial_json) {
      this.outputBytes += Buffer.byteLength(d.partial_json)
      const slot = this.tools.get(e.index ?? -1)
      if (!slot) return undefined
      slot.sawArguments = true
      this.contentChunks++
      return this.out().delta({ tool_calls: [{ index: slot.index, function: { arguments: d.partial_json } }] })
    }
    // thinking_delta: no place in an OpenAI chunk, but billed as output.
    if (d?.type === 'thinking_delta' && typeof (d as { thinking?: unknown }).thinking === 'string') this.outputBytes += Buffer.byteLength((d as { thinking: string }).thinking)
    return undefined
  }

  private fail(err: GatewayError): string {
    this.error = err
    return errorFrame(err)
  }

  private out(): ChunkWriter {
    this.writer ??= new ChunkWriter('msg', this.fallbackModel)
    return this.writer
  }
}

function definedOnly(u: AnthropicUsageWire | undefined): AnthropicUsageWire {
  const out: AnthropicUsageWire = {}
  if (!u) return out
  for (const [k, v] of Object.entries(u)) if (v !== null && v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}
