// For startup.test.ts: another process holding an analytics data folder until it is killed.
import { lockDataDir } from '../../analytics/startup.ts'

lockDataDir(process.argv[2]!)
process.stdout.write('locked\n')
setInterval(() => undefined, 60_000)
