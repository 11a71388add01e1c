// Gemini generateContent response → OpenAI chat completion.
import { GatewayError } from '../../errors.ts'
import { completionBody, type ToolCallOut } from '../openai-format.ts'
import type { Completion } from '../types.ts'
import { toFinishReason, toUsage, type GeminiResponse } from './wire.ts'

export function fromGeminiResponse(text: string, model: string): Completion {
  let res: GeminiResponse
  try {
    res = JSON.parse(text) as GeminiResponse
  } catch {
    throw new GatewayError('upstream_bad_response', 'The provider returned a body that is not JSON.')
  }
  const usage = toUsage(res.usageMetadata)
  const id = `chatcmpl-${res.responseId ?? 'gemini'}`
  const candidate = res.candidates?.[0]
  // A blocked prompt has no candidate at all, only promptFeedback.
  if (!candidate) {
    if (!res.promptFeedback?.blockReason) throw new GatewayError('upstream_bad_response', 'The provider returned no candidate.')
    return { body: completionBody(id, res.modelVersion ?? model, { content: null, tool_calls: [], finish_reason: 'content_filter' }, usage), usage }
  }
  const { content, toolCalls } = readParts(candidate.content?.parts ?? [], id, 0)
  const finish = toFinishReason(candidate.finishReason, toolCalls.length > 0)
  return { body: completionBody(id, res.modelVersion ?? model, { content, tool_calls: toolCalls, finish_reason: finish }, usage), usage }
}

// Text (thought summaries excluded) and function calls, which Gemini sends without ids: ids are
// made from the response id and the call's position so they are unique within the conversation.
export function readParts(parts: Array<Record<string, unknown>>, responseId: string, firstIndex: number): { content: string | null; toolCalls: ToolCallOut[] } {
  let content: string | null = null
  const toolCalls: ToolCallOut[] = []
  for (const part of parts) {
    if (typeof part.text === 'string' && part.thought !== true) content = (content ?? '') + part.text
    const call = part.functionCall as { name?: unknown; args?: unknown } | undefined
    if (call && typeof call.name === 'string') {
      const index = firstIndex + toolCalls.length
      toolCalls.push({ id: `call_${responseId.replace(/^chatcmpl-/, '')}_${index}`, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.args ?? {}) } })
    }
  }
  return { content, toolCalls }
}
