// OpenAI response shapes the translating adapters produce: completion bodies, stream chunks, usage.
import type { Usage } from './types.ts'

export interface ToolCallOut {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
}

export interface ChoiceOut {
  content: string | null
  tool_calls: ToolCallOut[]
  finish_reason: string
}

export function toOpenAiUsage(u: Usage) {
  return {
    prompt_tokens: u.input_tokens,
    completion_tokens: u.output_tokens,
    total_tokens: u.input_tokens + u.output_tokens,
    prompt_tokens_details: { cached_tokens: u.cached_input_tokens },
    completion_tokens_details: { reasoning_tokens: u.reasoning_tokens },
  }
}

export function completionBody(id: string, model: string, choice: ChoiceOut, usage: Usage | undefined): string {
  const message: Record<string, unknown> = { role: 'assistant', content: choice.content, refusal: null }
  if (choice.tool_calls.length > 0) message.tool_calls = choice.tool_calls
  return JSON.stringify({
    id,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: choice.finish_reason }],
    ...(usage ? { usage: toOpenAiUsage(usage) } : {}),
  })
}

// Builds `data:` frames for one stream, all sharing its id, model and creation time.
export class ChunkWriter {
  private readonly created = Math.floor(Date.now() / 1000)

  constructor(
    private readonly id: string,
    private readonly model: string,
  ) {}

  delta(delta: Record<string, unknown>, finishReason: string | null = null): string {
    return this.frame([{ index: 0, delta, logprobs: null, finish_reason: finishReason }])
  }

  usage(u: Usage): string {
    return this.frame([], toOpenAiUsage(u))
  }

  private frame(choices: unknown[], usage?: unknown): string {
    const chunk: Record<string, unknown> = { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices }
    if (usage) chunk.usage = usage
    return `data: ${JSON.stringify(chunk)}\n\n`
  }
}

export const DONE_FRAME = 'data: [DONE]\n\n'
