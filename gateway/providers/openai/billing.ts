// What OpenAI (and OpenAI-compatible servers) bill for a chat request: image rules by model family, and which body parameters change the bill.
import { nativeOf, type ChatRequest } from '../../chat-request.ts'
import { measureChat, type Billable, type BillingRules } from '../billable.ts'
import { patchImageTokens, tileImageTokens } from '../image-tokens.ts'
import type { ProviderOptions, Target } from '../types.ts'

type ImageRule = BillingRules['imageTokens']

// OpenAI's published image rules, by model id prefix (first match wins). A model the table does not
// know is counted as GPT-4o; `max_tokens_per_image` in the model config overrides the table.
const IMAGE_RULES: Array<[RegExp, ImageRule]> = [
  [/^gpt-4o-mini/, (s, d) => tileImageTokens(s, d, 2833, 5667)],
  [/^gpt-4\.1-mini/, (s) => patchImageTokens(s, 1.62)],
  [/^gpt-4\.1-nano/, (s) => patchImageTokens(s, 2.46)],
  [/^o4-mini/, (s) => patchImageTokens(s, 1.72)],
  [/^gpt-5(\.\d+)?-mini/, (s) => patchImageTokens(s, 1.62)],
  [/^gpt-5(\.\d+)?-nano/, (s) => patchImageTokens(s, 2.46)],
  [/^gpt-5/, (s, d) => tileImageTokens(s, d, 70, 140)],
  [/^(o1|o3)/, (s, d) => tileImageTokens(s, d, 75, 150)],
  [/^computer-use/, (s, d) => tileImageTokens(s, d, 65, 129)],
]
const DEFAULT_RULE: ImageRule = (s, d) => tileImageTokens(s, d, 85, 170)

export function openAiBillingRules(target: Target): BillingRules {
  const fixed = target.model.max_tokens_per_image
  const rule = fixed !== undefined ? () => fixed : (IMAGE_RULES.find(([re]) => re.test(target.upstreamModel))?.[1] ?? DEFAULT_RULE)
  return { imageTokens: rule, toolPromptTokens: () => 0 }
}

// Parameters that bill nothing beyond the counted input and the capped output, OpenAI's own and the
// sampling controls of OpenAI-compatible servers (vLLM, SGLang, llama.cpp, Ollama).
const NEUTRAL = new Set([
  'model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'tools', 'response_format',
  'temperature', 'top_p', 'stop', 'seed', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'logprobs', 'top_logprobs',
  'user', 'metadata', 'store', 'reasoning_effort', 'verbosity', 'prompt_cache_key', 'prompt_cache_retention', 'safety_identifier',
  'tool_choice', 'parallel_tool_calls', 'function_call',
  'top_k', 'min_p', 'repetition_penalty', 'typical_p', 'min_tokens', 'ignore_eos', 'skip_special_tokens',
  'spaces_between_special_tokens', 'include_stop_str_in_output', 'stop_token_ids', 'guided_json', 'guided_regex',
  'guided_choice', 'guided_grammar',
])
// Service tiers billed at the configured prices or below.
const PRICED_TIERS = new Set(['auto', 'default', 'flex'])

// The request as the provider gets it (the caller's body with its provider_options), measured.
export function measureOpenAiChat(req: ChatRequest, target: Target, options: ProviderOptions): Billable {
  // Options only add fields (tools, say, when the request has none): what is sent is the union.
  const sent = { ...req, ...options } as ChatRequest
  const b = measureChat(sent, openAiBillingRules(target))
  // A Responses request goes to OpenAI as it came: what only OpenAI runs (built-in tools, stored
  // conversations and prompts, background runs, files by id) and service tiers above the configured
  // prices bill what the gateway cannot bound.
  const native = nativeOf(req, 'openai-responses')
  if (native) {
    for (const param of native.untranslated ?? []) b.unbounded.push({ param, why: 'only OpenAI runs it, billing what the gateway cannot bound' })
    const tier = native.body.service_tier
    if (tier !== undefined && tier !== null && !PRICED_TIERS.has(String(tier))) b.unbounded.push({ param: 'service_tier', why: `'${String(tier)}' may be billed above the configured prices` })
    const optionTools = (options as { tools?: unknown }).tools
    ;(Array.isArray(optionTools) ? (optionTools as Array<{ type?: unknown }>) : []).forEach((tool, i) => {
      if (tool?.type !== 'function') b.unbounded.push({ param: `x-gateway-options.provider_options.tools[${i}]`, why: `the built-in tool '${String(tool?.type)}' adds results to the input that the gateway cannot bound` })
    })
  }
  for (const [key, value] of Object.entries(sent)) {
    if (value === null || value === undefined || NEUTRAL.has(key)) continue
    const param = key in options ? `x-gateway-options.provider_options.${key}` : key
    switch (key) {
      case 'n':
      case 'best_of':
        // best_of (OpenAI-compatible servers) generates that many and returns n.
        if (Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 128) b.outputs = Math.max(b.outputs, value as number)
        else b.unbounded.push({ param, why: 'expected an integer from 1 to 128' })
        break
      case 'functions':
        b.texts.push(JSON.stringify(value))
        break
      case 'prediction':
        // Predicted tokens the model does not use are billed as output, on top of the completion.
        b.outputTexts.push(JSON.stringify((value as { content?: unknown }).content ?? value))
        break
      case 'service_tier':
        if (typeof value !== 'string' || !PRICED_TIERS.has(value)) b.unbounded.push({ param, why: 'only the auto, default and flex tiers bill at the configured prices' })
        break
      case 'modalities':
        if (!Array.isArray(value) || value.some((m) => m !== 'text')) b.unbounded.push({ param, why: 'audio output is billed at audio rates the configured prices do not cover' })
        break
      case 'audio':
        b.unbounded.push({ param, why: 'audio output is billed at audio rates the configured prices do not cover' })
        break
      case 'web_search_options':
        b.unbounded.push({ param, why: 'web searches carry per-call fees the configured prices do not cover' })
        break
      default:
        b.unbounded.push({ param, why: 'the gateway does not know this parameter, so it cannot tell what it bills' })
    }
  }
  return b
}
