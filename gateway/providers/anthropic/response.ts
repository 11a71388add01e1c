// Anthropic Messages response → OpenAI chat completion.
import { GatewayError } from '../../errors.ts'
import { completionBody, type ToolCallOut } from '../openai-format.ts'
import type { Completion } from '../types.ts'
import { JSON_RESPONSE_TOOL } from './request.ts'
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
    else if (block.type === 'tool_use' && block.name === JSON_RESPONSE_TOOL) content = (content ?? '') + JSON.stringify(block.input ?? {})
    else if (block.type === 'tool_use' && typeof block.id === 'string' && typeof block.name === 'string') {
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } })
    }
    // thinking / redacted_thinking blocks have no place in an OpenAI message.
  }
  const usage = toUsage(msg.usage)
  // The forced structured-output call is the answer, not a call for the caller to make.
  const structured = msg.content.some((b) => b?.type === 'tool_use' && b.name === JSON_RESPONSE_TOOL)
  const finish = structured && msg.stop_reason === 'tool_use' ? 'stop' : toFinishReason(msg.stop_reason)
  return { body: completionBody(msg.id, msg.model, { content, tool_calls: toolCalls, finish_reason: finish }, usage), usage }
}
