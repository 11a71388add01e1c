// The requests the process is working on, each with its own abort signal: the caller leaving aborts one (CLIENT_CLOSED); a shutdown whose drain window passed aborts them all with its reason, so each still ends through its ledger (an error frame or answer, one record, its budget settled).
import type { GatewayError } from './errors.ts'
import { CLIENT_CLOSED } from './upstream/call.ts'

export interface LiveRequest {
  // Aborts when the caller leaves or the process stops the request; its reason says which.
  readonly signal: AbortSignal
  // The request is over: no longer stopped by a shutdown.
  close(): void
}

export class LiveRequests {
  readonly #live = new Set<AbortController>()
  #stopped: GatewayError | undefined

  open(callerSignal: AbortSignal): LiveRequest {
    const ac = new AbortController()
    const onCallerAbort = () => ac.abort(CLIENT_CLOSED)
    if (callerSignal.aborted) ac.abort(CLIENT_CLOSED)
    // Accepted after the stop (a request on a connection kept alive): stopped at once.
    else if (this.#stopped) ac.abort(this.#stopped)
    else {
      callerSignal.addEventListener('abort', onCallerAbort, { once: true })
      this.#live.add(ac)
    }
    return {
      signal: ac.signal,
      close: () => {
        callerSignal.removeEventListener('abort', onCallerAbort)
        this.#live.delete(ac)
      },
    }
  }

  get size(): number {
    return this.#live.size
  }

  // Stops every live request, and any opened from now on, with reason; returns how many were live.
  stopAll(reason: GatewayError): number {
    this.#stopped = reason
    const n = this.#live.size
    for (const ac of [...this.#live]) ac.abort(reason)
    this.#live.clear()
    return n
  }
}
