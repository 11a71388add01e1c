// Embeddings in OpenAI's shape: OpenAI and OpenAI-compatible servers take the request as it is; Gemini's batchEmbedContents is translated both ways.
import { GatewayError } from '../errors.ts'
import type { EmbeddingsAdapter, EmbeddingsAnswer, EmbeddingsRequest, Target, Usage } from './types.ts'
import { joinUrl } from './url.ts'
import { unsupported } from './openai-request.ts'

export function openAiEmbeddings(headers: (target: Target) => Record<string, string>): EmbeddingsAdapter {
  return {
    buildRequest(req, target) {
      return { url: joinUrl(target.provider.base_url, '/embeddings'), method: 'POST', headers: headers(target), body: JSON.stringify({ ...req.raw, model: target.upstreamModel }) }
    },
    readAnswer(text, _target, req): EmbeddingsAnswer {
      const body = parseObject(text)
      const data = body.data
      if (!Array.isArray(data) || data.length !== req.input.length) throw new GatewayError('upstream_bad_response', `The provider returned ${Array.isArray(data) ? data.length : 'no'} embeddings for ${req.input.length} inputs.`)
      const prompt = (body.usage as { prompt_tokens?: unknown } | undefined)?.prompt_tokens
      const usage = typeof prompt === 'number' && Number.isSafeInteger(prompt) && prompt >= 0 ? embeddingUsage(prompt, false) : undefined
      return { body: text, usage }
    },
  }
}

export function geminiEmbeddings(headers: (target: Target) => Record<string, string>): EmbeddingsAdapter {
  return {
    buildRequest(req, target) {
      const refused = req.extra[0] ?? (req.user !== undefined ? 'user' : undefined)
      if (refused !== undefined) throw unsupported(refused, `'${refused}' is not supported by Gemini targets`)
      const model = `models/${target.upstreamModel}`
      const requests = req.input.map((item, i) => {
        if (typeof item !== 'string') throw unsupported(`input[${i}]`, 'token ids are not supported by Gemini targets; send text')
        return { model, content: { parts: [{ text: item }] }, ...(req.dimensions === undefined ? {} : { outputDimensionality: req.dimensions }) }
      })
      return { url: joinUrl(target.provider.base_url, `/v1beta/models/${encodeURIComponent(target.upstreamModel)}:batchEmbedContents`), method: 'POST', headers: headers(target), body: JSON.stringify({ requests }) }
    },
    readAnswer(text, target, req): EmbeddingsAnswer {
      const body = parseObject(text)
      const embeddings = body.embeddings
      if (!Array.isArray(embeddings) || embeddings.length !== req.input.length) throw new GatewayError('upstream_bad_response', `The provider returned ${Array.isArray(embeddings) ? embeddings.length : 'no'} embeddings for ${req.input.length} inputs.`)
      const data = embeddings.map((e: { values?: unknown }, index) => {
        const values = e?.values
        if (!Array.isArray(values) || !values.every((v) => typeof v === 'number')) throw new GatewayError('upstream_bad_response', 'The provider returned an embedding that is not a list of numbers.')
        return { object: 'embedding', index, embedding: req.encoding_format === 'base64' ? float32Base64(values as number[]) : values }
      })
      // Newer Gemini embedding models report usageMetadata.promptTokenCount; without it the
      // gateway's count goes in (see the route, which checks either against the input).
      const prompt = (body.usageMetadata as { promptTokenCount?: unknown } | undefined)?.promptTokenCount
      const usage = typeof prompt === 'number' && Number.isSafeInteger(prompt) && prompt >= 0 ? embeddingUsage(prompt, false) : undefined
      const tokens = usage?.input_tokens ?? 0
      return { body: JSON.stringify({ object: 'list', data, model: target.upstreamModel, usage: { prompt_tokens: tokens, total_tokens: tokens } }), usage }
    },
  }
}

export function embeddingUsage(inputTokens: number, estimated: boolean): Usage {
  return { input_tokens: inputTokens, output_tokens: 0, cached_input_tokens: 0, cache_write_input_tokens: 0, reasoning_tokens: 0, estimated }
}

// An OpenAI embeddings body with its usage replaced by the gateway's figures.
export function withEmbeddingUsage(body: string, usage: Usage): string {
  try {
    return JSON.stringify({ ...(JSON.parse(body) as Record<string, unknown>), usage: { prompt_tokens: usage.input_tokens, total_tokens: usage.input_tokens } })
  } catch {
    return body
  }
}

// OpenAI's base64 encoding: the vector as little-endian float32s.
function float32Base64(values: number[]): string {
  const buf = Buffer.alloc(values.length * 4)
  values.forEach((v, i) => buf.writeFloatLE(v, i * 4))
  return buf.toString('base64')
}

function parseObject(text: string): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new GatewayError('upstream_bad_response', 'The provider returned a body that is not JSON.', { cause: err })
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new GatewayError('upstream_bad_response', 'The provider returned a body that is not an object.')
  return parsed as Record<string, unknown>
}
