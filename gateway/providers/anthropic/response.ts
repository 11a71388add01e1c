// Anthropic Messages response → OpenAI chat completion.
import { GatewayError } from '../../errors.ts'
import { completionBody, type ToolCallOut } from '../openai-format.ts'
import type { Completion } from '../types.ts'
import { toFinishReason, toUsage, type AnthropicResponse } from './wire.ts'

export function fromAnthropicResponse(text: string): Completion {
  let msg: AnthropicResponse
  try {
    msg = JSON.parse(text) as AnthropicResponse
  } catch (err) {
    throw new GatewayError('upstream_bad_response', 'The provider returned a body that is not JSON.', { cause: err })
  }
  if (typeof msg !== 'object' || msg === null || !Array.isArray(msg.content)) throw new GatewayError('upstream_bad_response', 'The provider returned a message without content.')
  let content: string | null = null
  const toolCalls: ToolCallOut[] = []
  for (const block of msg.content) {
    if (typeof block !== 'object' || block === null) continue
    if (block.type === 'text' && typeof block.text === 'string') content = (content ?? '') + block.text
    else if (block.type === 'tool_use' && typeof block.id === 'string' && typeof block.name === 'string') {
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } })
    }
    // thinking / redacted_thinking blocks have no place in an OpenAI message.
  }
  const usage = toUsage(msg.usage)
  return { body: completionBody(msg.id, msg.model, { content, tool_calls: toolCalls, finish_reason: toFinishReason(msg.stop_reason) }, usage), usage }
}
