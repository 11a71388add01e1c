import { describe, expect, it } from 'bun:test'
import { GatewayError } from './errors.ts'
import { LiveRequests } from './live-requests.ts'
import { CLIENT_CLOSED } from './upstream/call.ts'

const SHUTDOWN = new GatewayError('gateway_shutting_down', 'stopping')

describe('LiveRequests', () => {
  it('aborts a request with CLIENT_CLOSED when its caller leaves, and forgets it', () => {
    const live = new LiveRequests()
    const caller = new AbortController()
    const r = live.open(caller.signal)
    expect(live.size).toBe(1)
    caller.abort()
    expect(r.signal.reason).toBe(CLIENT_CLOSED)
    r.close()
    expect(live.size).toBe(0)
  })

  it('stops every live request with the shutdown reason, and counts them; closed ones are left alone', () => {
    const live = new LiveRequests()
    const a = live.open(new AbortController().signal)
    const b = live.open(new AbortController().signal)
    const done = live.open(new AbortController().signal)
    done.close()
    expect(live.stopAll(SHUTDOWN)).toBe(2)
    expect(a.signal.reason).toBe(SHUTDOWN)
    expect(b.signal.reason).toBe(SHUTDOWN)
    expect(done.signal.aborted).toBe(false)
    expect(live.size).toBe(0)
  })

  it('stops a request opened after the stop at once, and one whose caller already left as the caller leaving', () => {
    const live = new LiveRequests()
    live.stopAll(SHUTDOWN)
    expect(live.open(new AbortController().signal).signal.reason).toBe(SHUTDOWN)
    const gone = new AbortController()
    gone.abort()
    expect(live.open(gone.signal).signal.reason).toBe(CLIENT_CLOSED)
    expect(live.size).toBe(0)
  })

  it('keeps the first reason: a caller leaving after the stop does not rewrite it', () => {
    const live = new LiveRequests()
    const caller = new AbortController()
    const r = live.open(caller.signal)
    live.stopAll(SHUTDOWN)
    caller.abort()
    expect(r.signal.reason).toBe(SHUTDOWN)
  })
})
