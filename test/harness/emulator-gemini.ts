// The emulator's Gemini wire format (model in the path, x-goog-api-key, CRLF-framed SSE with no [DONE]).
import type { Behavior } from './emulator.ts'
import { completionTokens, jsonError, retryHeaders, withFaults, type EmulatedReply, type Frame, type WireFormat } from './emulator-wire.ts'

const PATH = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/

export const geminiWire: WireFormat = {
  name: 'gemini',
  matches: (method, path) => method === 'POST' && PATH.test(path),
  isStream: (_body, path) => path.endsWith(':streamGenerateContent'),
  modelOf: (_body, path) => decodeURIComponent(PATH.exec(path)?.[1] ?? ''),

  checkAuth(req, apiKey) {
    if (req.headers.get('x-goog-api-key') === apiKey) return undefined
    return jsonError(400, { error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT', details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com' }] } }, {}, true)
  },

  validate(body) {
    if (!Array.isArray(body.contents) || body.contents.length === 0) {
      return jsonError(400, { error: { code: 400, message: '* GenerateContentRequest.contents: contents is not specified', status: 'INVALID_ARGUMENT' } }, {}, true)
    }
    return undefined
  },

  complete(r, body) {
    return { candidates: [{ content: { parts: parts(r, r.words), role: 'model' }, finishReason: 'STOP', index: 0 }], usageMetadata: usage(r, true), modelVersion: r.model, responseId: geminiId(r.id) }
  },

  frames(r: EmulatedReply, _body, b: Behavior): Frame[] {
    const chunk = (p: unknown[], final: boolean) =>
      `data: ${JSON.stringify({ candidates: [{ content: { parts: p, role: 'model' }, ...(final ? { finishReason: 'STOP' } : {}), index: 0 }], usageMetadata: usage(r, final), modelVersion: r.model, responseId: geminiId(r.id) })}\r\n\r\n`
    if (r.toolCalls.length) return withFaults([], [chunk(parts(r, []), true)], [], b, 'data: {"candidates": broken\r\n\r\n')
    const content = r.words.map((w, i) => chunk([{ text: w }], i === r.words.length - 1))
    if (b.stream_error_after_chunks !== undefined) {
      return [...content.slice(0, b.stream_error_after_chunks), `data: ${JSON.stringify({ error: { code: 503, message: 'The model is overloaded. Please try again later.', status: 'UNAVAILABLE' } })}\r\n\r\n`]
    }
    return withFaults([], content, [], b, 'data: {"candidates": broken\r\n\r\n')
  },

  error(status, retryAfter) {
    const [code, statusName, message] = ERRORS[status] ?? ERRORS[500] ?? [500, 'INTERNAL', 'Internal error encountered.']
    const details = status === 429 && retryAfter !== undefined ? [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: `${retryAfter}s` }] : undefined
    return jsonError(code, { error: { code, message, status: statusName, ...(details ? { details } : {}) } }, retryHeaders(undefined), true)
  },

  outputAllowed(body, uncapped) {
    const g = (body.generationConfig ?? {}) as { maxOutputTokens?: unknown; candidateCount?: unknown }
    const n = typeof g.candidateCount === 'number' ? g.candidateCount : 1
    return (typeof g.maxOutputTokens === 'number' ? g.maxOutputTokens : uncapped) * n
  },

  promptText(body) {
    const texts: string[] = []
    const system = (body.systemInstruction as { parts?: Array<{ text?: string }> } | undefined)?.parts
    if (system) texts.push(system.map((p) => p.text ?? '').join(''))
    for (const c of (body.contents as Array<{ parts?: unknown[] }> | undefined) ?? []) texts.push(JSON.stringify(c.parts ?? []))
    return texts
  },
}

function parts(r: EmulatedReply, words: string[]): unknown[] {
  if (r.toolCalls.length) return r.toolCalls.map((t) => ({ functionCall: { name: t.name, args: t.arguments } }))
  return [{ text: words.join('') }]
}

function usage(r: EmulatedReply, final: boolean) {
  const candidates = completionTokens(r)
  return final
    ? { promptTokenCount: r.promptTokens, candidatesTokenCount: candidates, totalTokenCount: r.promptTokens + candidates, ...r.usagePatch }
    : { promptTokenCount: r.promptTokens, totalTokenCount: r.promptTokens }
}

const ERRORS: Record<number, [number, string, string]> = {
  400: [400, 'INVALID_ARGUMENT', 'The input token count (3475108) exceeds the maximum number of tokens allowed (1048576).'],
  429: [429, 'RESOURCE_EXHAUSTED', 'You exceeded your current quota, please check your plan.'],
  500: [500, 'INTERNAL', 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting'],
  503: [503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.'],
}

// Gemini's response ids are bare tokens (no chatcmpl- prefix; the gateway adds it).
function geminiId(id: string): string {
  return id.replace(/^chatcmpl-/, '')
}
