// Runs the upstream emulator as its own process: PORT (default 4010), EMULATOR_API_KEY (optional).
import { startEmulator } from './emulator.ts'
import { stopWithNpm } from '../../shared/parent-watch.ts'

// npm exits on SIGTERM without passing it on: stop with it.
stopWithNpm()

const emulator = startEmulator({
  port: Number(process.env.PORT ?? 4010),
  apiKey: process.env.EMULATOR_API_KEY || undefined,
  recordLimit: 100,
})
process.stdout.write(`${JSON.stringify({ msg: 'emulator listening', port: emulator.port, base_url: emulator.baseUrl })}\n`)
const stop = () => void emulator.stop().then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
