// What a request may cost at most, before it is sent: everything billable in it counted, plus the output cap for each completion.
import type { QuotaSettings } from '../../shared/config/schema.ts'
import { costPico, picoToMicroCeil } from '../../shared/money.ts'
import { askedOutputCap, type ChatRequest } from '../chat-request.ts'
import type { Route } from '../config-store.ts'
import { GatewayError } from '../errors.ts'
import { inputBound, type Billable } from '../providers/billable.ts'
import { countTokens, type Encoding } from '../providers/tokenize.ts'
import type { EmbeddingsRequest, ProviderOptions } from '../providers/types.ts'

export interface Estimate {
  // Input tokens reserved: counted text with its margin, plus what is priced without a tokenizer
  // (framing, images, fixed prompts) and a small slack.
  input: number
  // The best guess of input tokens (no margin): what a record says when the provider reports nothing.
  inputGuess: number
  // The output cap per completion reserved for; when the caller gave none, the gateway sends it.
  maxOutput: number
  // Completions asked for (n); each may use the whole cap.
  outputs: number
  // Output billed on top of the completions (OpenAI's predicted outputs).
  extraOutput: number
  tokens: number
  micro: number
  capApplied: boolean
  // The most input the provider can report for this request (see inputBound).
  inputBound: number
}

// Local counts approximate the provider's: closely for OpenAI's own encodings (the margin covers
// message framing), loosely for Claude and Gemini, whose tokenizers are not public and can count
// a third more than cl100k_base on code or non-English text. The margin keeps a reservation at
// or above what the provider will bill for input.
const INPUT_MARGIN: Record<string, number> = { openai: 1.1, 'openai-compatible': 1.25, anthropic: 1.4, gemini: 1.4 }
const INPUT_SLACK = 16

// Token counts for one request: every target of a fallback chain measures the same texts, so a
// count per encoding serves them all.
export class RequestCounter {
  private readonly memo: Array<{ encoding: Encoding; texts: readonly string[]; count: Promise<number> }> = []

  count(texts: readonly string[], encoding: Encoding): Promise<number> {
    const hit = this.memo.find((m) => m.encoding === encoding && sameTexts(m.texts, texts))
    if (hit) return hit.count
    const count = countTokens(texts, encoding)
    this.memo.push({ encoding, texts, count })
    return count
  }
}

function sameTexts(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

// A budgeted request may carry nothing whose bill the gateway cannot bound.
export function refuseUnbounded(b: Billable): void {
  const first = b.unbounded[0]
  if (!first) return
  throw new GatewayError('unsupported_parameter', `'${first.param}' cannot be used while a budget applies to this request: ${first.why}.`, { param: first.param })
}

export async function estimateRequest(route: Route, req: ChatRequest, options: ProviderOptions, settings: QuotaSettings, counter: RequestCounter): Promise<Estimate> {
  const billable = route.adapter.measure(req, route.target, options)
  refuseUnbounded(billable)
  const encoding = route.adapter.encoding(route.target)
  const margin = INPUT_MARGIN[route.target.provider.kind] ?? 1.4
  const counted = await counter.count(billable.texts, encoding)
  const input = Math.ceil(counted * margin) + billable.fixedTokens + INPUT_SLACK
  const asked = askedOutputCap(req)
  const maxOutput = asked ?? route.target.model.max_output_tokens ?? settings.default_max_output_tokens
  const extraOutput = billable.outputTexts.length > 0 ? Math.ceil((await counter.count(billable.outputTexts, encoding)) * margin) : 0
  const output = maxOutput * billable.outputs + extraOutput
  return {
    input,
    inputGuess: counted + billable.fixedTokens,
    maxOutput,
    outputs: billable.outputs,
    extraOutput,
    tokens: input + output,
    micro: picoToMicroCeil(costPico(route.target.price, input, output)),
    capApplied: asked === undefined,
    inputBound: Math.max(inputBound(billable), input),
  }
}

// The best guess of a request's input tokens, for a record when the provider reported none.
export async function guessInputTokens(route: Route, req: ChatRequest, options: ProviderOptions, counter: RequestCounter): Promise<number> {
  const billable = route.adapter.measure(req, route.target, options)
  return (await counter.count(billable.texts, route.adapter.encoding(route.target))) + billable.fixedTokens
}

// The cap reserved for, sent upstream when the caller named none (reported in x-gateway-max-tokens).
export function withOutputCap(req: ChatRequest, maxOutput: number, providerKind: string): ChatRequest {
  // OpenAI's own API takes max_completion_tokens (reasoning models refuse max_tokens); the other
  // adapters read either, and OpenAI-compatible servers know max_tokens.
  return providerKind === 'openai' ? { ...req, max_completion_tokens: maxOutput } : { ...req, max_tokens: maxOutput }
}

// An embeddings request: its input is all it bills (no output). Token ids count as themselves;
// texts as counted, with the provider's margin.
export async function estimateEmbeddings(route: Route, req: EmbeddingsRequest, counter: RequestCounter): Promise<Estimate> {
  const { texts, ids } = embeddingInputs(req)
  const counted = texts.length > 0 ? await counter.count(texts, route.adapter.encoding(route.target)) : 0
  const margin = INPUT_MARGIN[route.target.provider.kind] ?? 1.4
  const input = Math.ceil(counted * margin) + ids + INPUT_SLACK
  return {
    input,
    inputGuess: counted + ids,
    maxOutput: 0,
    outputs: 1,
    extraOutput: 0,
    tokens: input,
    micro: picoToMicroCeil(costPico(route.target.price, input, 0)),
    capApplied: false,
    inputBound: Math.max(inputBound({ texts, fixedTokens: ids, outputTexts: [], outputs: 1, images: 0, unbounded: [] }), input),
  }
}

// The best guess of an embeddings request's input tokens, for a provider that reports none.
export async function guessEmbeddingTokens(route: Route, req: EmbeddingsRequest, counter: RequestCounter): Promise<number> {
  const { texts, ids } = embeddingInputs(req)
  return (texts.length > 0 ? await counter.count(texts, route.adapter.encoding(route.target)) : 0) + ids
}

function embeddingInputs(req: EmbeddingsRequest): { texts: string[]; ids: number } {
  const texts: string[] = []
  let ids = 0
  for (const item of req.input) {
    if (typeof item === 'string') texts.push(item)
    else ids += item.length
  }
  return { texts, ids }
}
