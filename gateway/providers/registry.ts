// The only list of provider kinds and the adapter serving each.
import type { ProviderKind } from '../../shared/config/schema.ts'
import { anthropicAdapter } from './anthropic/adapter.ts'
import { openAiAdapter } from './openai/adapter.ts'
import type { ProviderAdapter } from './types.ts'

const ADAPTERS: Partial<Record<ProviderKind, ProviderAdapter>> = {
  openai: openAiAdapter,
  'openai-compatible': openAiAdapter,
  anthropic: anthropicAdapter,
}

export function adapterFor(kind: ProviderKind): ProviderAdapter | undefined {
  return ADAPTERS[kind]
}
