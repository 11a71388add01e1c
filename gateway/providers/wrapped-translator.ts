// A stream translator over another: what the stream used, whether it finished, what it generated and the error it reported are the inner translator's, unless the wrapper says otherwise.
import type { GatewayError } from '../errors.ts'
import type { SseEvent } from '../upstream/sse.ts'
import type { StreamTranslator, Usage } from './types.ts'

export abstract class WrappedTranslator implements StreamTranslator {
  constructor(protected readonly inner: StreamTranslator) {}

  get usage(): Usage | undefined {
    return this.inner.usage
  }
  get finished(): boolean {
    return this.inner.finished
  }
  get contentChunks(): number {
    return this.inner.contentChunks
  }
  get outputBytes(): number {
    return this.inner.outputBytes
  }
  get error(): GatewayError | undefined {
    return this.inner.error
  }

  abstract onEvent(event: SseEvent): Uint8Array | string | undefined
  abstract end(): string | undefined
}
