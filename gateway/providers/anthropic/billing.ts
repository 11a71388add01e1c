// What Anthropic bills for a chat request: images by pixel area, the tool-use system prompt, and which provider_options it can account for.
import { nativeOf, type ChatRequest } from '../../chat-request.ts'
import { measureChat, type Billable, type BillingRules } from '../billable.ts'
import { patch28ImageTokens } from '../image-tokens.ts'
import type { ProviderOptions, Target } from '../types.ts'
import { toAnthropicRequest } from './request.ts'

// Per model (id prefix, first match wins): the system prompt Anthropic adds to a request with
// tools, with tool_choice auto/none and any/tool (its pricing page, 2026), and the image limits
// (long edge in px, tokens): 2,576 px / 4,784 tokens on the high-resolution models, else 1,568 px
// and 1,600 tokens (1,568 in the current docs; ~1,590 by the earlier w x h / 750). A model the
// table does not know gets the largest figures.
interface ClaudeFigures {
  toolAuto: number
  toolForced: number
  imageEdge: number
  imageTokens: number
}
const STANDARD_IMAGES = { imageEdge: 1568, imageTokens: 1600 }
const LARGE_IMAGES = { imageEdge: 2576, imageTokens: 4784 }
const CLAUDE: Array<[RegExp, ClaudeFigures]> = [
  [/^claude-opus-4-7/, { toolAuto: 675, toolForced: 804, ...LARGE_IMAGES }],
  [/^claude-opus-4-8/, { toolAuto: 290, toolForced: 410, ...LARGE_IMAGES }],
  [/^claude-opus-5/, { toolAuto: 286, toolForced: 406, ...LARGE_IMAGES }],
  [/^claude-sonnet-5/, { toolAuto: 354, toolForced: 474, ...LARGE_IMAGES }],
  [/^claude-(opus|sonnet)-4-6/, { toolAuto: 497, toolForced: 589, ...STANDARD_IMAGES }],
  [/^claude-(opus|sonnet|haiku)-4-5/, { toolAuto: 496, toolForced: 588, ...STANDARD_IMAGES }],
  [/^claude-(opus-4|sonnet-4)/, { toolAuto: 313, toolForced: 315, ...STANDARD_IMAGES }],
  [/^claude-3/, { toolAuto: 530, toolForced: 355, ...STANDARD_IMAGES }],
]
const UNKNOWN_CLAUDE: ClaudeFigures = { toolAuto: 675, toolForced: 804, ...LARGE_IMAGES }

export function claudeFigures(upstreamModel: string): ClaudeFigures {
  return CLAUDE.find(([re]) => re.test(upstreamModel))?.[1] ?? UNKNOWN_CLAUDE
}

// provider_options a budgeted request may carry: none of them adds input or output beyond the cap
// (thinking is output, bounded by max_tokens). Not service_tier: 'auto' may run at priority rates.
const NEUTRAL_OPTIONS = new Set(['top_k', 'thinking', 'stop_sequences'])

export function anthropicBillingRules(target: Target): BillingRules {
  const fixed = target.model.max_tokens_per_image
  const f = claudeFigures(target.upstreamModel)
  return {
    imageTokens: fixed !== undefined ? () => fixed : (size) => patch28ImageTokens(size, f.imageEdge, f.imageTokens),
    // 'required' and a named function become Anthropic's any / tool.
    toolPromptTokens: (choice) => (choice === 'required' || (typeof choice === 'object' && choice !== null) ? f.toolForced : f.toolAuto),
  }
}

export function measureAnthropicChat(req: ChatRequest, target: Target, options: ProviderOptions): Billable {
  // Translating refuses what Anthropic cannot do, and options that would replace a field, before
  // anything is reserved.
  const native = nativeOf(req, 'anthropic')
  if (!native) toAnthropicRequest(req, target, false, options)
  const b = measureChat(req, anthropicBillingRules(target))
  if (native) measureNativeOnly(native.body, b)
  for (const key of Object.keys(options)) {
    if (!NEUTRAL_OPTIONS.has(key)) b.unbounded.push({ param: `x-gateway-options.provider_options.${key}`, why: 'the gateway cannot tell what this option bills' })
  }
  return b
}

// A request in Anthropic's own format is measured as it is sent: every string of its system,
// messages and tools is text Claude reads (a document's context and title, thinking blocks sent
// back, tool examples: whatever the translation left out), the translation adding what is priced
// without a tokenizer (images, framing, the tool prompt) and what cannot be bounded (PDFs). A
// server tool adds results to the input that nobody can bound beforehand; so may top-level fields
// beyond the prompt and output cap.
const NATIVE_NEUTRAL = new Set(['model', 'max_tokens', 'messages', 'system', 'stop_sequences', 'stream', 'temperature', 'top_p', 'top_k', 'tools', 'tool_choice', 'metadata', 'thinking'])

function measureNativeOnly(body: Record<string, unknown>, b: Billable): void {
  for (const [key, value] of Object.entries(body)) {
    if (NATIVE_NEUTRAL.has(key) || value === undefined || value === null || (key === 'service_tier' && value === 'standard_only')) continue
    // MCP servers, containers, priority tiers...: billed beyond what the gateway can see.
    b.unbounded.push({ param: key, why: `'${key}' may be billed beyond the prompt and output cap, by rules the gateway cannot bound` })
  }
  const texts: string[] = []
  for (const key of ['system', 'messages', 'tools', 'tool_choice'] as const) collectStrings(body[key], texts)
  b.texts = texts
  const tools = Array.isArray(body.tools) ? (body.tools as Array<Record<string, unknown>>) : []
  tools.forEach((tool, i) => {
    if (tool?.type !== undefined && tool.type !== 'custom') b.unbounded.push({ param: `tools[${i}]`, why: `the server tool '${String(tool.type)}' adds results to the input that the gateway cannot bound` })
  })
}

// Every string value, but base64 data (an image is priced by its rule, a PDF is unbounded).
function collectStrings(value: unknown, into: string[]): void {
  if (typeof value === 'string') into.push(value)
  else if (Array.isArray(value)) for (const v of value) collectStrings(v, into)
  else if (typeof value === 'object' && value !== null) {
    const o = value as Record<string, unknown>
    for (const [k, v] of Object.entries(o)) if (!(k === 'data' && o.type === 'base64')) collectStrings(v, into)
  }
}
