// What Gemini bills for a chat request: images by crop tiles (Gemini 2) or media resolution (Gemini 3), and which provider_options it can account for.
import type { ChatRequest } from '../../chat-request.ts'
import { measureChat, type Billable, type BillingRules } from '../billable.ts'
import { cropTileImageTokens } from '../image-tokens.ts'
import type { ProviderOptions, Target } from '../types.ts'
import { mimeFromUrl, toGeminiRequest } from './request.ts'

// Gemini 3 bills an image at its media resolution, high (1,120 tokens) by default; setting the
// resolution is not among the options a budgeted request may carry, so the default holds.
const GEMINI3_IMAGE_TOKENS = 1120

// provider_options a budgeted request may carry, and the generationConfig settings among them:
// none adds input or output beyond the cap (thinking counts against maxOutputTokens).
const NEUTRAL_OPTIONS = new Set(['safetySettings', 'toolConfig', 'labels', 'generationConfig'])
const NEUTRAL_GENERATION = new Set([
  'temperature', 'topP', 'topK', 'seed', 'presencePenalty', 'frequencyPenalty', 'stopSequences', 'responseMimeType',
  'thinkingConfig', 'responseLogprobs', 'logprobs', 'enableEnhancedCivicAnswers',
])

export function geminiBillingRules(target: Target): BillingRules {
  const fixed = target.model.max_tokens_per_image
  const gemini3 = /^gemini-3/.test(target.upstreamModel)
  return {
    imageTokens: fixed !== undefined ? () => fixed : gemini3 ? () => GEMINI3_IMAGE_TOKENS : (size) => cropTileImageTokens(size),
    toolPromptTokens: () => 0,
    urlMediaType: mimeFromUrl,
  }
}

export function measureGeminiChat(req: ChatRequest, target: Target, options: ProviderOptions): Billable {
  // Translating refuses what Gemini cannot do, and options that would replace a field, first.
  toGeminiRequest(req, options)
  const b = measureChat(req, geminiBillingRules(target))
  const param = 'x-gateway-options.provider_options'
  for (const [key, value] of Object.entries(options)) {
    if (!NEUTRAL_OPTIONS.has(key)) b.unbounded.push({ param: `${param}.${key}`, why: 'the gateway cannot tell what this option bills' })
  }
  const generation = options.generationConfig
  if (typeof generation === 'object' && generation !== null) {
    for (const [key, value] of Object.entries(generation)) {
      if (key === 'responseModalities' && Array.isArray(value) && value.every((m) => m === 'TEXT')) continue
      if (!NEUTRAL_GENERATION.has(key)) b.unbounded.push({ param: `${param}.generationConfig.${key}`, why: 'the gateway cannot tell what this setting bills' })
    }
  }
  return b
}
