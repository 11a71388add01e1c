// Merges the caller's provider_options into a request body the adapter built: an option adds a field, never replaces one.
import { GatewayError } from '../errors.ts'
import type { ProviderOptions } from './types.ts'

const PARAM = 'x-gateway-options.provider_options'
// Keys that would reach an object's prototype rather than name a field.
const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype'])

// `owned`: fields only the gateway sets, even when this request leaves them out (the output cap,
// the number of completions). A field the body already has comes from the request, so an option
// naming it would silently replace the caller's own parameter, or the cap the budget reserved.
export function mergeProviderOptions<T extends object>(body: T, options: ProviderOptions, owned: ReadonlySet<string>, at = PARAM): T {
  const out: Record<string, unknown> = { ...(body as Record<string, unknown>) }
  for (const [key, value] of Object.entries(options)) {
    if (owned.has(key) || FORBIDDEN.has(key) || (Object.hasOwn(out, key) && out[key] !== undefined)) {
      throw new GatewayError('invalid_parameter', `Invalid x-gateway-options: provider_options may not set '${key}'; the gateway sets it from the request.`, { param: `${at}.${key}` })
    }
    out[key] = value
  }
  return out as T
}
