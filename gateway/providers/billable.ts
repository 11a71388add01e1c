// What a provider may bill for a chat request as the gateway would send it: the text to count, token costs known without a tokenizer, and the completions generated.
import type { ChatRequest } from '../chat-request.ts'
import { readImageSize, type ImageSize } from './image-size.ts'
import { QUICK_INPUT_BOUND } from '../usage-check.ts'

export interface Billable {
  // Text the provider tokenizes as input: roles, contents, names, tool calls, tool and schema definitions.
  texts: string[]
  // Input tokens that need no tokenizer: message framing, images by the provider's rules, fixed prompts.
  fixedTokens: number
  // Text the provider bills as output on top of what it generates (OpenAI's predicted outputs).
  outputTexts: string[]
  // Completions generated per request (n); each up to the output cap.
  outputs: number
  // Images in the request (for the sanity bound on reported usage).
  images: number
  // What the gateway cannot put a bound on: refused (400) when a budget applies to the request.
  unbounded: Unbounded[]
}

export interface Unbounded {
  param: string
  why: string
}

// A provider's own pricing of what is not text.
export interface BillingRules {
  // Input tokens one image costs, from its size when known and its detail; undefined when the rule
  // has no bound without the size.
  imageTokens(size: ImageSize | undefined, detail: string | undefined): number | undefined
  // Tokens of the prompt the provider adds when a request carries tools (Anthropic's tool-use prompt).
  toolPromptTokens(toolChoice: unknown): number
  // The media type the adapter declares for an image by URL, when it declares one (Gemini's fileData).
  urlMediaType?(url: string): string
}

// OpenAI's documented framing (3 tokens a message, 1 a name, 3 to prime the reply), close enough
// for the others: the margins in estimate.ts cover the difference.
const TOKENS_PER_MESSAGE = 3
const TOKENS_PER_NAME = 1
const REPLY_PRIMING = 3

// Message fields walked below; anything else on a message is counted as its JSON text.
const MESSAGE_FIELDS = new Set(['role', 'content', 'name', 'tool_calls', 'tool_call_id', 'function_call', 'refusal'])

const DATA_URL = /^data:([^;,]*)(;[^,]*)?,/

// Sizes read from image headers, by the part that carries them: every target of a fallback chain
// measures the same request, and reads each header once.
const sizes = new WeakMap<object, ImageSize | null>()

export function emptyBillable(): Billable {
  return { texts: [], fixedTokens: REPLY_PRIMING, outputTexts: [], outputs: 1, images: 0, unbounded: [] }
}

// Messages, tools and the response format of an OpenAI-format request, as every provider sees them.
export function measureChat(req: ChatRequest, rules: BillingRules): Billable {
  const out = emptyBillable()
  req.messages.forEach((m, i) => {
    out.fixedTokens += TOKENS_PER_MESSAGE
    out.texts.push(m.role)
    measureContent(m.content, `messages[${i}].content`, rules, out)
    if (typeof m.name === 'string' && m.name) {
      out.fixedTokens += TOKENS_PER_NAME
      out.texts.push(m.name)
    }
    for (const call of m.tool_calls ?? []) out.texts.push(call.id, call.function.name, call.function.arguments)
    if (typeof m.tool_call_id === 'string') out.texts.push(m.tool_call_id)
    for (const [key, value] of Object.entries(m)) {
      if (MESSAGE_FIELDS.has(key) || value === null || value === undefined) continue
      // An assistant message's `audio` points at audio the provider bills again as input, by a size
      // the request does not show.
      if (key === 'audio') out.unbounded.push({ param: `messages[${i}].audio`, why: 'earlier audio is billed at audio rates the gateway cannot see' })
      else out.texts.push(textOf(value))
    }
    // Legacy function_call and refusals are text the model reads again.
    const legacy = (m as { function_call?: unknown; refusal?: unknown })
    if (legacy.function_call !== undefined && legacy.function_call !== null) out.texts.push(textOf(legacy.function_call))
    if (typeof legacy.refusal === 'string') out.texts.push(legacy.refusal)
  })
  // Tools from provider_options were not checked like the body's: whatever they are, they count.
  const tools: unknown[] = Array.isArray(req.tools) ? req.tools : req.tools == null ? [] : [req.tools]
  for (const tool of tools) out.texts.push(JSON.stringify(tool) ?? '')
  if (tools.length > 0) out.fixedTokens += rules.toolPromptTokens(req.tool_choice)
  // Anything beyond a bare {type: 'text'} is counted, whatever it claims to be.
  const format = req.response_format as Record<string, unknown> | null | undefined
  if (format !== null && format !== undefined && !(typeof format === 'object' && format.type === 'text' && Object.keys(format).length === 1)) out.texts.push(textOf(format))
  return out
}

function measureContent(content: unknown, param: string, rules: BillingRules, out: Billable): void {
  if (typeof content === 'string') {
    out.texts.push(content)
    return
  }
  if (!Array.isArray(content)) return
  content.forEach((part: Record<string, unknown>, j) => {
    const type = part.type
    let known: string
    if (type === 'text' || type === 'refusal') {
      known = type
      const text = part[type]
      out.texts.push(typeof text === 'string' ? text : textOf(text))
    } else if (type === 'image_url') {
      known = type
      measureImage(part.image_url, `${param}[${j}].image_url`, rules, out)
    } else {
      out.unbounded.push({ param: `${param}[${j}].type`, why: `a '${String(type)}' part is billed by a size the gateway cannot bound` })
      return
    }
    // Whatever else a part carries goes upstream with it: counted as its JSON text.
    for (const [key, value] of Object.entries(part)) if (key !== 'type' && key !== known && value !== null && value !== undefined) out.texts.push(textOf(value))
  })
}

function measureImage(imageUrl: unknown, param: string, rules: BillingRules, out: Billable): void {
  const ref = typeof imageUrl === 'string' ? { url: imageUrl } : (imageUrl as { url?: unknown; detail?: unknown } | null)
  const url = typeof ref?.url === 'string' ? ref.url : ''
  const detail = typeof ref?.detail === 'string' ? ref.detail : undefined
  let size: ImageSize | undefined
  const data = DATA_URL.exec(url)
  if (data) {
    const mime = (data[1] ?? '').toLowerCase()
    // A PDF, audio or video sent as an "image" is billed per page or second.
    if (!mime.startsWith('image/')) {
      out.unbounded.push({ param, why: `'${mime || 'no type'}' data is billed by pages or seconds the gateway cannot count` })
      return
    }
    if (data[2]?.includes('base64')) {
      const known = ref && sizes.get(ref)
      if (known !== undefined) size = known ?? undefined
      else {
        size = readImageSize(url.slice(data[0].length))
        if (ref) sizes.set(ref, size ?? null)
      }
    }
  } else {
    const declared = rules.urlMediaType?.(url)
    if (declared !== undefined && !declared.startsWith('image/')) {
      out.unbounded.push({ param, why: `'${declared}' is billed by pages or seconds the gateway cannot count` })
      return
    }
  }
  const tokens = rules.imageTokens(size, detail)
  if (tokens === undefined) {
    out.unbounded.push({ param, why: 'this provider bills an image by its pixel size, which the gateway cannot see behind a URL; send it as a data: URL' })
    return
  }
  out.images++
  out.fixedTokens += tokens
}

// Values the gateway passes on without knowing them are counted as their JSON text: at least as
// many tokens as anything a provider could make of them.
function textOf(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value) ?? ''
}

// Tokens the input can be at most, without a tokenizer: a token is at least one byte of text
// (a UTF-16 unit is at most three UTF-8 bytes), plus what is counted apart. Reported usage
// above this is not the provider's count of this request.
export function inputBound(b: Billable): number {
  let units = 0
  for (const t of b.texts) units += t.length
  return units * 3 + b.fixedTokens * 2 + QUICK_INPUT_BOUND
}
