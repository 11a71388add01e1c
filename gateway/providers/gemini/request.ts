// OpenAI chat request → Gemini generateContent request; what Gemini cannot do is a 400 naming the parameter.
import type { ChatRequest } from '../../chat-request.ts'
import {
  appendTurn,
  COMMON_PARAMETERS,
  type ContentPart,
  invalid,
  parseToolArguments,
  readFunctionTools,
  readFileData,
  readImageUrl,
  readToolChoice,
  rejectUnhandled,
  textOfParts,
  unsupported,
} from '../openai-request.ts'
import type { ProviderOptions } from '../types.ts'
import { mergeProviderOptions } from '../provider-options.ts'
import type { GeminiContent, GeminiPart, GeminiRequest } from './wire.ts'

// Parameters translated below; anything else the caller set is refused rather than dropped.
const HANDLED = new Set([...COMMON_PARAMETERS, 'seed', 'presence_penalty', 'frequency_penalty', 'response_format'])
// Fields an option may never bring in: the prompt, and inside generationConfig the output cap a
// budget reserves for and the number of candidates.
// Google's JSON takes proto field names too (max_output_tokens): both spellings are the same field.
const OWNED = new Set(['contents', 'systemInstruction', 'system_instruction', 'generation_config'])
const OWNED_GENERATION = new Set(['maxOutputTokens', 'candidateCount', 'max_output_tokens', 'candidate_count'])

type OpenAiMessage = ChatRequest['messages'][number]

export function toGeminiRequest(req: ChatRequest, options: ProviderOptions): GeminiRequest {
  rejectUnhandled(req, HANDLED, 'Gemini')
  if (req.parallel_tool_calls === false) throw unsupported('parallel_tool_calls', 'Gemini cannot be told to call one tool at a time')
  const system: Array<{ text: string }> = []
  const contents: GeminiContent[] = []
  // Gemini's functionResponse needs the function's name; OpenAI tool messages carry only the call id.
  const callNames = new Map<string, string>()
  req.messages.forEach((m, i) => {
    if (m.role === 'system' || m.role === 'developer') {
      system.push(...textOfParts(m.content, `messages[${i}].content`).map((text) => ({ text })))
      return
    }
    appendTurn(contents, toContent(m, i, callNames), mergeParts)
  })
  const body: GeminiRequest = { contents }
  if (system.length > 0) body.systemInstruction = { parts: system }
  const generationConfig = toGenerationConfig(req)
  if (Object.keys(generationConfig).length > 0) body.generationConfig = generationConfig
  const fns = readFunctionTools(req.tools, 'Gemini')
  if (fns.length > 0) {
    // parametersJsonSchema takes the caller's JSON Schema as it is (parameters wants an OpenAPI subset).
    body.tools = [{ functionDeclarations: fns.map((f) => ({ name: f.name, ...(f.description !== undefined ? { description: f.description } : {}), ...(f.parameters !== undefined ? { parametersJsonSchema: f.parameters } : {}) })) }]
  }
  const choice = readToolChoice(req.tool_choice)
  if (choice) {
    body.toolConfig = {
      functionCallingConfig:
        choice.mode === 'named' ? { mode: 'ANY', allowedFunctionNames: [choice.name] } : { mode: choice.mode === 'auto' ? 'AUTO' : choice.mode === 'none' ? 'NONE' : 'ANY' },
    }
  }
  // generationConfig is merged a level deep, so an option adds a setting without dropping the cap.
  const { generationConfig: extra, ...rest } = options
  const merged = mergeProviderOptions(body, rest, OWNED)
  if (extra === undefined) return merged
  if (typeof extra !== 'object' || extra === null || Array.isArray(extra)) {
    throw invalid('x-gateway-options.provider_options.generationConfig', 'expected an object')
  }
  merged.generationConfig = mergeProviderOptions(body.generationConfig ?? {}, extra as ProviderOptions, OWNED_GENERATION, 'x-gateway-options.provider_options.generationConfig')
  return merged
}

function toGenerationConfig(req: ChatRequest): Record<string, unknown> {
  const g: Record<string, unknown> = {}
  const max = req.max_completion_tokens ?? req.max_tokens
  if (typeof max === 'number') g.maxOutputTokens = max
  if (typeof req.temperature === 'number') g.temperature = req.temperature
  if (typeof req.top_p === 'number') g.topP = req.top_p
  if (req.stop !== undefined && req.stop !== null) g.stopSequences = typeof req.stop === 'string' ? [req.stop] : req.stop
  if (typeof req.seed === 'number') g.seed = req.seed
  if (typeof req.presence_penalty === 'number') g.presencePenalty = req.presence_penalty
  if (typeof req.frequency_penalty === 'number') g.frequencyPenalty = req.frequency_penalty
  const format = req.response_format as { type?: unknown; json_schema?: { schema?: unknown } } | undefined
  if (format?.type === 'json_object') g.responseMimeType = 'application/json'
  else if (format?.type === 'json_schema') {
    g.responseMimeType = 'application/json'
    if (format.json_schema?.schema !== undefined) g.responseJsonSchema = format.json_schema.schema
  } else if (format !== undefined && format !== null && format.type !== 'text') {
    throw invalid('response_format', "expected type 'text', 'json_object' or 'json_schema'")
  }
  return g
}

function toContent(m: OpenAiMessage, i: number, callNames: Map<string, string>): GeminiContent {
  const param = `messages[${i}].content`
  if (m.role === 'user') return { role: 'user', parts: toUserParts(m.content, param) }
  if (m.role === 'assistant') {
    const parts: GeminiPart[] = textOfParts(m.content, param).map((text) => ({ text }))
    m.tool_calls?.forEach((call, j) => {
      callNames.set(call.id, call.function.name)
      parts.push({ functionCall: { name: call.function.name, args: parseToolArguments(call.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`) } })
    })
    return { role: 'model', parts }
  }
  if (m.role === 'tool') {
    const name = m.tool_call_id ? callNames.get(m.tool_call_id) : undefined
    if (!name) throw invalid(`messages[${i}].tool_call_id`, 'must name a tool call of an earlier assistant message')
    return { role: 'user', parts: [{ functionResponse: { name, response: { content: textOfParts(m.content, param).join('') } } }] }
  }
  throw unsupported(`messages[${i}].role`, `role '${m.role}' is not supported by Gemini targets; use 'tool'`)
}

function mergeParts(into: GeminiContent, from: GeminiContent): void {
  into.parts.push(...from.parts)
}

function toUserParts(content: unknown, param: string): GeminiPart[] {
  if (typeof content === 'string') return [{ text: content }]
  if (!Array.isArray(content)) throw invalid(param, 'expected a string or an array of content parts')
  return content.map((p: ContentPart, j): GeminiPart => {
    if (p.type === 'text' && typeof p.text === 'string') return { text: p.text }
    if (p.type === 'image_url') {
      const img = readImageUrl(p.image_url, `${param}[${j}].image_url`)
      return img.kind === 'base64' ? { inlineData: { mimeType: img.mediaType, data: img.data } } : { fileData: { mimeType: mimeFromUrl(img.url), fileUri: img.url } }
    }
    if (p.type === 'file') {
      const file = readFileData((p as { file?: unknown }).file, `${param}[${j}].file`)
      return { inlineData: { mimeType: file.mediaType, data: file.data } }
    }
    if (p.type === 'text') throw invalid(`${param}[${j}].text`, 'a text part needs a string')
    throw unsupported(`${param}[${j}].type`, `content part '${String(p.type)}' is not supported by Gemini targets`)
  })
}

const MIME: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', heic: 'image/heic', pdf: 'application/pdf' }

// The type fileData declares for a URL, by its extension (Gemini bills a PDF by its pages).
export function mimeFromUrl(url: string): string {
  const ext = /\.([a-z0-9]+)(?:[?#]|$)/i.exec(url)?.[1]?.toLowerCase()
  return (ext && Object.hasOwn(MIME, ext) && MIME[ext]) || 'image/jpeg'
}
