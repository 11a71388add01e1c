// Google's Gemini API (generateContent / streamGenerateContent?alt=sse) served to OpenAI clients.
import type { ProviderConfig } from '../../../shared/config/schema.ts'
import type { Secret } from '../../../shared/secret.ts'
import type { ChatRequest } from '../../chat-request.ts'
import type { ProviderAdapter, ProviderOptions, Target, UpstreamRequest } from '../types.ts'
import { joinUrl } from '../url.ts'
import { measureGeminiChat } from './billing.ts'
import { toGatewayError } from './errors.ts'
import { toGeminiRequest } from './request.ts'
import { fromGeminiResponse } from './response.ts'
import { GeminiStreamTranslator } from './stream.ts'
import { readErrorBody } from './wire.ts'
import { geminiEmbeddings } from '../embeddings.ts'

export const geminiAdapter: ProviderAdapter = {
  kind: 'gemini',

  embeddings: geminiEmbeddings((target) => headersFor(target.apiKey, true)),

  buildRequest(req: ChatRequest, target: Target, stream: boolean, options: ProviderOptions): UpstreamRequest {
    const method = stream ? 'streamGenerateContent?alt=sse' : 'generateContent'
    return {
      url: joinUrl(target.provider.base_url, `/v1beta/models/${encodeURIComponent(target.upstreamModel)}:${method}`),
      method: 'POST',
      headers: headersFor(target.apiKey, true),
      body: JSON.stringify(toGeminiRequest(req, options)),
    }
  },

  readCompletion: (text, target) => fromGeminiResponse(text, target.upstreamModel),

  openStream: (target, opts) => new GeminiStreamTranslator(opts, target.upstreamModel, (wire) => toGatewayError(wire, undefined, target)),

  readError: (status, text, _headers, target) => toGatewayError(readErrorBody(text), status, target),

  measure: (req, target, options) => measureGeminiChat(req, target, options),

  // Gemini's tokenizer is not available locally: cl100k_base is the approximation (estimate.ts adds
  // a margin); the provider's usageMetadata is what gets billed.
  encoding: () => 'cl100k_base',

  healthRequest(provider: ProviderConfig, apiKey: Secret | undefined): UpstreamRequest {
    return { url: joinUrl(provider.base_url, '/v1beta/models'), method: 'GET', headers: headersFor(apiKey, false) }
  },
}

function headersFor(apiKey: Secret | undefined, json: boolean): Record<string, string> {
  const h: Record<string, string> = {}
  if (json) h['content-type'] = 'application/json'
  if (apiKey) h['x-goog-api-key'] = apiKey.reveal()
  return h
}
