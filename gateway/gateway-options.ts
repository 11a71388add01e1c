// The x-gateway-options request header: per-request gateway settings as JSON, checked like the body.
import { Type as t, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { GatewayError } from './errors.ts'
import { assertJsonDepth } from './json-depth.ts'
import { RoutePolicy, UnsupportedParams } from '../shared/config/schema.ts'

// Routing choices a caller may make for one request; each names only what the config already has.
export const GatewayOptions = t.Object(
  {
    // Provider-specific body fields merged into the upstream request (e.g. Anthropic's top_k).
    provider_options: t.Optional(t.Record(t.String(), t.Unknown())),
    // Overrides the route's policy.
    policy: t.Optional(RoutePolicy),
    // A provider_id among the route's targets, tried first.
    provider: t.Optional(t.String({ minLength: 1 })),
    // false: no fallback. A list of model names the caller may call: after the first target,
    // their targets are tried in this order instead of the route's own.
    fallback: t.Optional(t.Union([t.Boolean(), t.Array(t.String({ minLength: 1 }), { maxItems: 8 })])),
    // reject or drop what a target cannot honour; overrides the client's and the route's setting.
    unsupported_params: t.Optional(UnsupportedParams),
  },
  { additionalProperties: false },
)
export type GatewayOptions = Static<typeof GatewayOptions>

const check = TypeCompiler.Compile(GatewayOptions)
const PARAM = 'x-gateway-options'
// Fields the gateway owns: an option may add to a request, not redirect or reshape it.
const RESERVED = new Set(['model', 'messages', 'stream', 'stream_options', 'contents', 'system'])
const NONE: GatewayOptions = {}

export function parseGatewayOptions(header: string | null): GatewayOptions {
  if (header === null || header === '') return NONE
  assertJsonDepth(new TextEncoder().encode(header), PARAM)
  let parsed: unknown
  try {
    parsed = JSON.parse(header)
  } catch {
    throw new GatewayError('invalid_parameter', `The ${PARAM} header is not valid JSON.`, { param: PARAM })
  }
  if (!check.Check(parsed)) {
    const e = check.Errors(parsed).First()
    throw new GatewayError('invalid_parameter', `Invalid ${PARAM}: ${e?.path || '/'} ${e?.message ?? 'is invalid'}.`, { param: PARAM })
  }
  for (const key of Object.keys(parsed.provider_options ?? {})) {
    if (RESERVED.has(key)) {
      throw new GatewayError('invalid_parameter', `Invalid ${PARAM}: provider_options may not set '${key}'.`, { param: `${PARAM}.provider_options.${key}` })
    }
  }
  return parsed
}
