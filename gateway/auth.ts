// Virtual key check: SHA-256 of the bearer token looked up, then confirmed in constant time.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Caller, Snapshot } from './config-store.ts'
import { GatewayError } from './errors.ts'

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex')
}

export function authenticate(authorization: string | null, snapshot: Snapshot): Caller {
  if (!authorization) {
    throw new GatewayError('missing_api_key', "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or 'x-api-key: <key>' on /v1/messages).")
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
  if (!match?.[1]) throw new GatewayError('missing_api_key', "Malformed Authorization header: expected 'Bearer <key>'.")
  const digest = createHash('sha256').update(match[1]).digest()
  const hex = digest.toString('hex')
  // The map lookup compares digests, not keys: a caller cannot steer a digest's prefix, so the
  // lookup's timing says nothing about any stored key. The final compare is constant-time anyway.
  const caller = snapshot.keys.get(hex)
  if (caller && timingSafeEqual(digest, caller.digest)) return caller
  // A key made at runtime (never one the config has: the config's are looked up first).
  const runtime = snapshot.runtimeKeys?.authenticate(hex, digest, snapshot)
  if (runtime) return runtime
  throw new GatewayError('invalid_api_key', 'Incorrect API key provided.')
}

export function mayUseModel(caller: Caller, model: string): boolean {
  return caller.allowed === undefined || caller.allowed.has(model)
}
