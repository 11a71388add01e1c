// Runs recorded provider SSE through an adapter's translator and assembles the OpenAI chunks it emits,
// the way an OpenAI client would (content concatenated, tool-call arguments joined by index).
import type { StreamTranslator } from '../../gateway/providers/types.ts'
import { SseParser } from '../../gateway/upstream/sse.ts'

export interface Assembled {
  role: string | undefined
  content: string
  toolCalls: Array<{ id: string | undefined; name: string | undefined; arguments: string }>
  finishReason: string | null
  usage: Record<string, unknown> | undefined
  error: Record<string, unknown> | undefined
  done: boolean
  // Every frame the translator emitted, as text.
  frames: string
}

export function translateRecording(sse: string, translator: StreamTranslator, splitEvery = 0): Assembled {
  const parser = new SseParser()
  const bytes = new TextEncoder().encode(sse)
  const step = splitEvery > 0 ? splitEvery : bytes.length
  let out = ''
  const emit = (o: Uint8Array | string | undefined) => {
    if (o !== undefined) out += typeof o === 'string' ? o : new TextDecoder().decode(o)
  }
  for (let i = 0; i < bytes.length; i += step) for (const e of parser.push(bytes.slice(i, i + step))) emit(translator.onEvent(e))
  for (const e of parser.end()) emit(translator.onEvent(e))
  emit(translator.end())
  return assemble(out)
}

export function assemble(frames: string): Assembled {
  const a: Assembled = { role: undefined, content: '', toolCalls: [], finishReason: null, usage: undefined, error: undefined, done: false, frames }
  for (const block of frames.split('\n\n')) {
    if (!block.startsWith('data: ')) continue
    const data = block.slice('data: '.length)
    if (data === '[DONE]') {
      a.done = true
      continue
    }
    const chunk = JSON.parse(data) as {
      error?: Record<string, unknown>
      usage?: Record<string, unknown>
      choices?: Array<{ delta: { role?: string; content?: string; tool_calls?: Array<{ index: number; id?: string; function?: { name?: string; arguments?: string } }> }; finish_reason: string | null }>
    }
    if (chunk.error) a.error = chunk.error
    if (chunk.usage) a.usage = chunk.usage
    for (const c of chunk.choices ?? []) {
      if (c.delta.role) a.role = c.delta.role
      if (c.delta.content) a.content += c.delta.content
      for (const t of c.delta.tool_calls ?? []) {
        const slot = (a.toolCalls[t.index] ??= { id: undefined, name: undefined, arguments: '' })
        if (t.id) slot.id = t.id
        if (t.function?.name) slot.name = t.function.name
        if (t.function?.arguments) slot.arguments += t.function.arguments
      }
      if (c.finish_reason) a.finishReason = c.finish_reason
    }
  }
  return a
}
