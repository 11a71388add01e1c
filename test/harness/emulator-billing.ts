// What a provider billing to the limit charges for the prompt it received (the emulator's bill_max): its billable fields tokenized, images by the published rules.
import { readImageSize } from '../../gateway/providers/image-size.ts'
import { cropTileImageTokens, patch28ImageTokens, tileImageTokens } from '../../gateway/providers/image-tokens.ts'
import { countTokens, type Encoding } from '../../gateway/providers/tokenize.ts'

export type WireName = 'openai' | 'anthropic' | 'gemini'

// The fields each API bills as input: what a request carries besides them (ids, sampling
// settings, metadata) is not prompt.
const BILLED: Record<WireName, string[]> = {
  openai: ['messages', 'tools', 'functions', 'response_format'],
  anthropic: ['system', 'messages', 'tools'],
  gemini: ['contents', 'systemInstruction', 'tools'],
}
// Claude and Gemini tokenizers are not public; this emulates one that counts a third more than
// cl100k_base (the gateway's margin for them is 40 %).
const UNKNOWN_TOKENIZER = 1.3
// Anthropic's tool-use system prompt, a little under the smallest of its published figures.
const TOOL_PROMPT = 280
const PER_MESSAGE = 3

interface Collected {
  texts: string[]
  images: number
  messages: number
}

export async function billedPrompt(wire: WireName, body: Record<string, unknown>, model: string): Promise<number> {
  const c: Collected = { texts: [], images: 0, messages: 0 }
  for (const key of BILLED[wire]) collect(wire, body[key], key, c, 0)
  // Gemini's response schema is read as prompt too.
  const generation = body.generationConfig as Record<string, unknown> | undefined
  if (wire === 'gemini') for (const key of ['responseJsonSchema', 'responseSchema']) collect(wire, generation?.[key], key, c, 0)
  const encoding: Encoding = wire === 'openai' && /^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o\d|chatgpt-4o)/.test(model) ? 'o200k_base' : 'cl100k_base'
  const text = await countTokens(c.texts, encoding)
  const scaled = wire === 'openai' ? text : Math.ceil(text * UNKNOWN_TOKENIZER)
  const tools = wire === 'anthropic' && Array.isArray(body.tools) && body.tools.length > 0 ? TOOL_PROMPT : 0
  return scaled + c.images + c.messages * PER_MESSAGE + tools
}

// Every string value under a billed field, except image data, which is priced as an image.
function collect(wire: WireName, v: unknown, key: string, c: Collected, depth: number): void {
  if (depth > 100 || v === null || v === undefined) return
  if (typeof v === 'string') {
    c.texts.push(v)
    return
  }
  if (Array.isArray(v)) {
    if (key === 'messages' || key === 'contents') c.messages += v.length
    for (const x of v) collect(wire, x, key, c, depth + 1)
    return
  }
  if (typeof v !== 'object') return
  const o = v as Record<string, unknown>
  const image = imageTokens(wire, o)
  if (image !== undefined) {
    c.images += image
    return
  }
  for (const [k, x] of Object.entries(o)) collect(wire, x, k, c, depth + 1)
}

// An image part in this wire format, priced; undefined for anything else.
function imageTokens(wire: WireName, o: Record<string, unknown>): number | undefined {
  if (wire === 'openai' && o.type === 'image_url') {
    const ref = o.image_url as { url?: unknown; detail?: unknown } | undefined
    const url = typeof ref?.url === 'string' ? ref.url : ''
    return tileImageTokens(sizeOf(url), typeof ref?.detail === 'string' ? ref.detail : undefined, 85, 170)
  }
  if (wire === 'anthropic' && o.type === 'image') {
    const source = o.source as { data?: unknown } | undefined
    return patch28ImageTokens(typeof source?.data === 'string' ? readImageSize(source.data) : undefined, 1568, 1568)
  }
  if (wire === 'gemini' && (o.inlineData !== undefined || o.fileData !== undefined)) {
    const data = (o.inlineData as { data?: unknown } | undefined)?.data
    return cropTileImageTokens(typeof data === 'string' ? readImageSize(data) : undefined) ?? 1120
  }
  return undefined
}

function sizeOf(url: string) {
  const comma = url.startsWith('data:') ? url.indexOf(',') : -1
  return comma === -1 ? undefined : readImageSize(url.slice(comma + 1))
}
