import { describe, expect, it } from 'bun:test'
import { PendingWork } from './pending-work.ts'

function deferred() {
  let resolve!: () => void
  let reject!: (e: unknown) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

describe('PendingWork', () => {
  it('counts work by kind until it settles, rejections included, and hands back the same promise', async () => {
    const w = new PendingWork()
    const a = deferred()
    const b = deferred()
    expect(w.track('settle', a.promise)).toBe(a.promise)
    void w.track('record', b.promise).catch(() => undefined)
    expect([w.count('settle'), w.count('record'), w.size]).toEqual([1, 1, 2])
    a.resolve()
    b.reject(new Error('x'))
    expect(await w.drain(1000)).toBe(true)
    expect([w.count('settle'), w.count('record'), w.size]).toEqual([0, 0, 0])
  })

  it('drains work started while it waits, and says false when time runs out', async () => {
    const w = new PendingWork()
    const first = deferred()
    const second = deferred()
    void w.track('settle', first.promise)
    const draining = w.drain(2000)
    void first.promise.then(() => w.track('record', second.promise))
    first.resolve()
    await Promise.resolve()
    setTimeout(() => second.resolve(), 10)
    expect(await draining).toBe(true)
    expect(w.size).toBe(0)
    void w.track('record', new Promise(() => undefined))
    expect(await w.drain(20)).toBe(false)
  })
})
