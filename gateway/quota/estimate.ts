// What a request may cost at most, before it is sent: counted input plus the output cap.
import type { QuotaSettings } from '../../shared/config/schema.ts'
import { costPico, picoToMicroCeil } from '../../shared/money.ts'
import type { ChatRequest } from '../chat-request.ts'
import type { Route } from '../config-store.ts'

export interface Estimate {
  tokens: number
  micro: number
  // The output cap reserved for; when the caller gave none, the gateway sends it upstream.
  maxOutput: number
  capApplied: boolean
}

// Local counts approximate the provider's: closely for OpenAI's own encodings (the margin covers
// message framing), loosely for Claude and Gemini, whose tokenizers are not public and can count
// a third more than cl100k_base on code or non-English text. The margin keeps a reservation at
// or above what the provider will bill for input.
const INPUT_MARGIN: Record<string, number> = { openai: 1.1, 'openai-compatible': 1.25, anthropic: 1.4, gemini: 1.4 }
const INPUT_SLACK = 16

export async function estimateRequest(route: Route, req: ChatRequest, settings: QuotaSettings): Promise<Estimate> {
  const counted = await route.adapter.countTokens(req, route.target)
  const input = Math.ceil(counted * (INPUT_MARGIN[route.target.provider.kind] ?? 1.4)) + INPUT_SLACK
  const asked = req.max_completion_tokens ?? req.max_tokens ?? undefined
  const maxOutput = asked ?? route.target.model.max_output_tokens ?? settings.default_max_output_tokens
  return {
    tokens: input + maxOutput,
    micro: picoToMicroCeil(costPico(route.target.price, input, maxOutput)),
    maxOutput,
    capApplied: asked === undefined,
  }
}

// The cap reserved for, sent upstream when the caller named none (reported in x-gateway-max-tokens).
export function withOutputCap(req: ChatRequest, maxOutput: number, providerKind: string): ChatRequest {
  // OpenAI's own API takes max_completion_tokens (reasoning models refuse max_tokens); the other
  // adapters read either, and OpenAI-compatible servers know max_tokens.
  return providerKind === 'openai' ? { ...req, max_completion_tokens: maxOutput } : { ...req, max_tokens: maxOutput }
}
