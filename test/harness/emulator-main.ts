// Runs the upstream emulator as its own process: PORT (default 4010), EMULATOR_API_KEY (optional).
import { startEmulator } from './emulator.ts'
import { stopWithNpm } from '../../shared/parent-watch.ts'

// npm exits on SIGTERM without passing it on: stop with it.
stopWithNpm()

const port = Number(process.env.PORT ?? 4010)
let emulator: ReturnType<typeof startEmulator>
try {
  emulator = startEmulator({ port, apiKey: process.env.EMULATOR_API_KEY || undefined, recordLimit: 100 })
} catch (err) {
  // One line naming the port and the setting, not a trace.
  const inUse = (err as { code?: string }).code === 'EADDRINUSE'
  process.stderr.write(`emulator: cannot listen on 127.0.0.1:${port}${inUse ? ': the port is in use by another process (npm start runs the emulator itself)' : ` (${(err as Error).message})`}; stop it, or set PORT\n`)
  process.exit(1)
}
process.stdout.write(`${JSON.stringify({ msg: 'emulator listening', port: emulator.port, base_url: emulator.baseUrl })}\n`)
const stop = () => void emulator.stop().then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
