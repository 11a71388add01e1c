import { describe, expect, it } from 'bun:test'
import { repeatEvery } from './repeat.ts'

describe('repeatEvery', () => {
  it('runs again after each run, errors included, never overlapping, until stopped', async () => {
    let running = 0
    let overlapped = false
    let runs = 0
    const errors: unknown[] = []
    let done!: () => void
    const fourRuns = new Promise<void>((resolve) => (done = resolve))
    const r = repeatEvery(
      () => 1,
      async () => {
        running++
        if (running > 1) overlapped = true
        await Bun.sleep(3)
        running--
        runs++
        if (runs === 4) done()
        if (runs % 2 === 0) throw new Error(`run ${runs}`)
      },
      (err) => errors.push(err),
    )
    await fourRuns
    r.stop()
    const after = runs
    await Bun.sleep(20)
    expect(runs).toBe(after)
    expect(overlapped).toBe(false)
    expect(errors.map(String)).toEqual(['Error: run 2', 'Error: run 4'])
  })
})
