// Gemini generateContent response → OpenAI chat completion.
import { GatewayError } from '../../errors.ts'
import { completionBody, type ToolCallOut } from '../openai-format.ts'
import type { Completion } from '../types.ts'
import { toFinishReason, toUsage, type GeminiResponse } from './wire.ts'

export function fromGeminiResponse(text: string, model: string): Completion {
  let res: GeminiResponse
  try {
    res = JSON.parse(text) as GeminiResponse
  } catch (err) {
    throw new GatewayError('upstream_bad_response', 'The provider returned a body that is not JSON.', { cause: err })
  }
  if (typeof res !== 'object' || res === null || Array.isArray(res)) throw new GatewayError('upstream_bad_response', 'The provider returned a body that is not a response object.')
  const usage = toUsage(res.usageMetadata)
  const id = `chatcmpl-${res.responseId ?? 'gemini'}`
  const candidate = Array.isArray(res.candidates) ? res.candidates[0] : undefined
  // A blocked prompt has no candidate at all, only promptFeedback.
  if (!candidate) {
    if (!res.promptFeedback?.blockReason) throw new GatewayError('upstream_bad_response', 'The provider returned no candidate.')
    return { body: completionBody(id, res.modelVersion ?? model, { content: null, tool_calls: [], finish_reason: 'content_filter' }, usage), usage }
  }
  if (typeof candidate !== 'object' || candidate === null) throw new GatewayError('upstream_bad_response', 'The provider returned a candidate that is not an object.')
  const { content, toolCalls } = readParts(candidate.content?.parts, id, 0)
  const finish = toFinishReason(candidate.finishReason, toolCalls.length > 0)
  return { body: completionBody(id, res.modelVersion ?? model, { content, tool_calls: toolCalls, finish_reason: finish }, usage), usage }
}

// Text (thought summaries excluded) and function calls, which Gemini sends without ids: ids are
// made from the response id and the call's position so they are unique within the conversation.
// Text, tool calls, and the UTF-8 bytes of everything generated (thoughts too: billed, not shown).
export function readParts(parts: unknown, responseId: string, firstIndex: number): { content: string | null; toolCalls: ToolCallOut[]; generatedBytes: number } {
  let content: string | null = null
  let generatedBytes = 0
  const toolCalls: ToolCallOut[] = []
  for (const part of Array.isArray(parts) ? (parts as unknown[]) : []) {
    if (typeof part !== 'object' || part === null) continue
    const p = part as Record<string, unknown>
    if (typeof p.text === 'string') generatedBytes += Buffer.byteLength(p.text)
    if (typeof p.text === 'string' && p.thought !== true) content = (content ?? '') + p.text
    const call = p.functionCall as { name?: unknown; args?: unknown } | null | undefined
    if (typeof call === 'object' && call !== null && typeof call.name === 'string') {
      const index = firstIndex + toolCalls.length
      const args = JSON.stringify(call.args ?? {})
      generatedBytes += Buffer.byteLength(args)
      toolCalls.push({ id: `call_${responseId.replace(/^chatcmpl-/, '')}_${index}`, type: 'function', function: { name: call.name, arguments: args } })
    }
  }
  return { content, toolCalls, generatedBytes }
}
