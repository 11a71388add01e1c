// Anthropic Messages API (POST {base_url}/v1/messages) served to OpenAI clients.
import type { ProviderConfig } from '../../../shared/config/schema.ts'
import type { Secret } from '../../../shared/secret.ts'
import { askedOutputCap, nativeOf, type ChatRequest, type NativeRequest } from '../../chat-request.ts'
import { mergeProviderOptions } from '../provider-options.ts'
import type { ProviderAdapter, ProviderOptions, Target, UpstreamRequest } from '../types.ts'
import { toGatewayError } from './errors.ts'
import { toAnthropicRequest } from './request.ts'
import { fromAnthropicResponse } from './response.ts'
import { AnthropicStreamTranslator } from './stream.ts'
import { readErrorBody } from './wire.ts'
import { joinUrl } from '../url.ts'
import { measureAnthropicChat } from './billing.ts'

const API_VERSION = '2023-06-01'

export const anthropicAdapter: ProviderAdapter = {
  kind: 'anthropic',

  buildRequest(req: ChatRequest, target: Target, stream: boolean, options: ProviderOptions): UpstreamRequest {
    const native = nativeOf(req, 'anthropic')
    if (native) return nativeRequest(native, req, target, stream, options)
    return {
      url: joinUrl(target.provider.base_url, '/v1/messages'),
      method: 'POST',
      headers: headersFor(target.apiKey, true),
      body: JSON.stringify(toAnthropicRequest(req, target, stream, options)),
    }
  },

  readCompletion: (text) => fromAnthropicResponse(text),

  openStream: (target, opts) =>
    new AnthropicStreamTranslator(opts, target.upstreamModel, (wire) => toGatewayError(wire, undefined, target)),

  readError: (status, text, headers, target) => toGatewayError(readErrorBody(text), status, target, headers),

  measure: (req, target, options) => measureAnthropicChat(req, target, options),

  // Anthropic's tokenizer is not public: cl100k_base is the approximation (it counts a little under
  // Claude's own figures; estimate.ts adds a margin); the provider's reported usage is what gets billed.
  encoding: () => 'cl100k_base',

  healthRequest(provider: ProviderConfig, apiKey: Secret | undefined): UpstreamRequest {
    return { url: joinUrl(provider.base_url, '/v1/models'), method: 'GET', headers: headersFor(apiKey, false) }
  },
}

// Fields of a request that came in Anthropic's own format that the gateway sets: the model the
// route names, the output cap (the budget's, when it reserved one), streaming as asked.
const NATIVE_OWNED = new Set(['model', 'max_tokens', 'stream'])

// A request that came in Anthropic's own format goes as it came (cache_control, thinking, server
// tools, betas), with the caller's anthropic-version and anthropic-beta.
function nativeRequest(native: NativeRequest, req: ChatRequest, target: Target, stream: boolean, options: ProviderOptions): UpstreamRequest {
  const body: Record<string, unknown> = { ...native.body, model: target.upstreamModel, max_tokens: askedOutputCap(req) ?? native.body.max_tokens }
  if (stream) body.stream = true
  else delete body.stream
  const headers = headersFor(target.apiKey, true, native.headers['anthropic-version'])
  const beta = native.headers['anthropic-beta']
  if (beta !== undefined) headers['anthropic-beta'] = beta
  return { url: joinUrl(target.provider.base_url, '/v1/messages'), method: 'POST', headers, body: JSON.stringify(mergeProviderOptions(body, options, NATIVE_OWNED)) }
}

function headersFor(apiKey: Secret | undefined, json: boolean, version = API_VERSION): Record<string, string> {
  const h: Record<string, string> = { 'anthropic-version': version }
  if (json) h['content-type'] = 'application/json'
  if (apiKey) h['x-api-key'] = apiKey.reveal()
  return h
}
