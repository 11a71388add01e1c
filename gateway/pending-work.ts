// Work a request leaves running after its response (a budget settle, a usage record waiting on a token count): counted for /metrics, and awaited at shutdown so none is dropped.
export type PendingKind = 'settle' | 'record'

export class PendingWork {
  readonly #inFlight = new Set<Promise<unknown>>()
  readonly #counts: Record<PendingKind, number> = { settle: 0, record: 0 }

  // Tracks p until it settles; its result or rejection is the caller's, as if untracked.
  track<T>(kind: PendingKind, p: Promise<T>): Promise<T> {
    this.#counts[kind]++
    const done = p.then(
      () => undefined,
      () => undefined,
    )
    this.#inFlight.add(done)
    void done.then(() => {
      this.#counts[kind]--
      this.#inFlight.delete(done)
    })
    return p
  }

  count(kind: PendingKind): number {
    return this.#counts[kind]
  }

  get size(): number {
    return this.#inFlight.size
  }

  // Resolves true once every tracked piece of work (including any started meanwhile) has
  // ended, false if ms passed first.
  async drain(ms: number): Promise<boolean> {
    const deadline = performance.now() + ms
    while (this.#inFlight.size > 0) {
      const left = deadline - performance.now()
      if (left <= 0) return false
      let timer: ReturnType<typeof setTimeout> | undefined
      const timedOut = await Promise.race([
        Promise.all([...this.#inFlight]).then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), left)
        }),
      ])
      clearTimeout(timer)
      if (timedOut) return false
    }
    return true
  }
}
