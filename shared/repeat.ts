// Runs a background task again and again: never two runs at once, the pause read before each one (so a config reload can change it), stopped for good by stop().

export interface Repeating {
  stop(): void
}

export function repeatEvery(pauseMs: () => number, run: () => Promise<unknown>, onError: (err: unknown) => void): Repeating {
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const schedule = () => {
    if (stopped) return
    timer = setTimeout(() => {
      run().catch(onError).finally(schedule)
    }, pauseMs())
    // A background task never keeps the process alive on its own.
    timer.unref?.()
  }
  schedule()
  return {
    stop() {
      stopped = true
      clearTimeout(timer)
    },
  }
}
