// The only list of provider kinds and the adapter serving each.
import type { ProviderKind } from '../../shared/config/schema.ts'
import { anthropicAdapter } from './anthropic/adapter.ts'
import { geminiAdapter } from './gemini/adapter.ts'
import { openAiAdapter } from './openai/adapter.ts'
import type { ProviderAdapter } from './types.ts'

const ADAPTERS: Record<ProviderKind, ProviderAdapter> = {
  openai: openAiAdapter,
  'openai-compatible': openAiAdapter,
  anthropic: anthropicAdapter,
  gemini: geminiAdapter,
}

export function adapterFor(kind: ProviderKind): ProviderAdapter {
  return ADAPTERS[kind]
}
