// Runs a function that must throw a GatewayError and returns it, so a test can inspect it.
import { GatewayError } from '../../gateway/errors.ts'

export function catchGatewayError(fn: () => unknown): GatewayError {
  try {
    fn()
  } catch (err) {
    if (err instanceof GatewayError) return err
    throw err
  }
  throw new Error('expected a GatewayError, nothing was thrown')
}
