// Recorded requests with the prompt tokens their provider reported, as OpenAI-format requests: the basis for measuring the gateway's estimate.
import { readdirSync, readFileSync } from 'node:fs'
import type { ChatRequest } from '../../gateway/chat-request.ts'
import type { ProviderKind } from '../../shared/config/schema.ts'

export interface EstimatePair {
  name: string
  kind: ProviderKind
  upstreamModel: string
  request: ChatRequest
  // The provider's own count of the request's input tokens.
  reported: number
}

const dir = (kind: string) => new URL(`../fixtures/${kind}/`, import.meta.url)
const read = (kind: string, file: string) => readFileSync(new URL(file, dir(kind)), 'utf8')

// OpenAI: each response fixture with a `.request.json` beside it (reconstructed in SOURCES.md).
function openAiPairs(): EstimatePair[] {
  return readdirSync(dir('openai'))
    .filter((f) => f.endsWith('.request.json'))
    .map((f) => {
      const base = f.replace('.request.json', '')
      const response = readdirSync(dir('openai')).find((r) => r === `${base}.json` || r === `${base}.sse`) as string
      const text = read('openai', response)
      const counts = [...text.matchAll(/"prompt_tokens":\s*(\d+)/g)].map((m) => Number(m[1]))
      const request = JSON.parse(read('openai', f)) as ChatRequest
      return { name: `openai/${base}`, kind: 'openai' as const, upstreamModel: request.model, request, reported: counts.at(-1) as number }
    })
}

// Anthropic and Gemini fixtures are in their own format: here as the OpenAI requests that
// translate to them (the adapters' tests check the translation against the recorded bodies).
function translatedPairs(): EstimatePair[] {
  const claude = JSON.parse(read('anthropic', 'message.text_and_parallel_tool_use.request.json'))
  const claudeTool = claude.tools[0]
  const geminiTools = JSON.parse(read('gemini', 'generateContent.function_call.request.json')).tools[0].functionDeclarations as Array<{ name: string; description: string; parameters: unknown }>
  const usage = (kind: string, file: string, re: RegExp) => Number(re.exec(read(kind, file))?.[1])
  return [
    {
      name: 'anthropic/message.text_and_parallel_tool_use',
      kind: 'anthropic',
      upstreamModel: claude.model,
      request: {
        model: claude.model,
        max_tokens: 4096,
        messages: [
          { role: 'system', content: claude.system },
          { role: 'user', content: claude.messages[0].content[0].text },
        ],
        tools: [{ type: 'function', function: { name: claudeTool.name, description: claudeTool.description, parameters: claudeTool.input_schema } }],
        tool_choice: 'auto',
      } as unknown as ChatRequest,
      reported: usage('anthropic', 'message.text_and_parallel_tool_use.json', /"input_tokens":\s*(\d+)/),
    },
    {
      name: 'gemini/generateContent.max_tokens',
      kind: 'gemini',
      upstreamModel: 'gemini-2.5-flash',
      request: { model: 'gemini-2.5-flash', max_tokens: 5, messages: [{ role: 'system', content: 'You are a helpful chatbot.' }, { role: 'user', content: 'What is the capital of France?' }] },
      reported: usage('gemini', 'generateContent.max_tokens.json', /"promptTokenCount":\s*(\d+)/),
    },
    {
      name: 'gemini/generateContent.function_call',
      kind: 'gemini',
      upstreamModel: 'gemini-2.0-flash',
      request: {
        model: 'gemini-2.0-flash',
        messages: [{ role: 'user', content: 'What is the largest city in the user country?' }],
        tools: geminiTools.map((f) => ({ type: 'function', function: { name: f.name, description: f.description, parameters: f.parameters } })),
        tool_choice: 'required',
      } as unknown as ChatRequest,
      reported: usage('gemini', 'generateContent.function_call.json', /"promptTokenCount":\s*(\d+)/),
    },
  ]
}

export function estimatePairs(): EstimatePair[] {
  return [...openAiPairs(), ...translatedPairs()]
}
