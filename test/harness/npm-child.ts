// For parent-watch.test.ts: a process that says when its SIGTERM comes, or that none came.
import { writeFileSync } from 'node:fs'
import { stopWithNpm } from '../../shared/parent-watch.ts'

stopWithNpm(process.env, 50)
process.stdout.write('started\n')
// Its parent may go now.
writeFileSync(process.env.READY_FIFO ?? '/dev/null', 'ready\n')
process.on('SIGTERM', () => {
  process.stdout.write('SIGTERM\n')
  process.exit(0)
})
setTimeout(() => {
  process.stdout.write('still running\n')
  process.exit(0)
}, 1500)
