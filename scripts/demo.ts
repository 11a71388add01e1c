// npm run demo: the emulator on :4010 and the gateway on :8080 with the sample config, then two requests
// through the official openai SDK. Keeps serving until Ctrl-C; `npm run demo -- --once` exits after the requests.
import OpenAI from 'openai'
import { startEmulator } from '../test/harness/emulator.ts'
import { stopWithNpm } from '../shared/parent-watch.ts'

// npm exits on SIGTERM without passing it on: stop with it.
stopWithNpm()

const once = process.argv.includes('--once')
const port = Number(process.env.PORT ?? '8080')

// Both ports must be free: a demo that talked to another gateway would report its success.
for (const [what, p, setting] of [['the emulator', 4010, 'stop what holds it'], ['the gateway', port, 'stop it (npm start?), or set PORT']] as const) {
  try {
    Bun.listen({ hostname: '0.0.0.0', port: p, socket: { data() {} } }).stop(true)
  } catch {
    process.stderr.write(`demo: port ${p} for ${what} is in use by another process; ${setting}\n`)
    process.exit(1)
  }
}

const emulator = startEmulator({ port: 4010 })
const gateway = Bun.spawn([process.execPath, 'gateway/main.ts'], {
  env: { ...process.env, GATEWAY_CONFIG: 'config/gateway.sample.yaml', PORT: String(port), LOG_LEVEL: 'error' },
  stdout: 'pipe',
  stderr: 'inherit',
})
// The gateway's own lines stay out of the demo's output but for errors.
void (async () => {
  let held = ''
  for await (const chunk of gateway.stdout as ReadableStream<Uint8Array>) {
    const lines = (held + new TextDecoder().decode(chunk)).split('\n')
    held = lines.pop() ?? ''
    for (const line of lines) if (!line.startsWith('{') || line.includes('"level":"error"')) process.stdout.write(`${line}\n`)
  }
})()
let stopping = false
void gateway.exited.then((code) => {
  if (stopping) return
  process.stderr.write(`demo: the gateway exited (code ${code}) before the demo ended\n`)
  emulator.stop()
  process.exit(1)
})
const base = `http://127.0.0.1:${port}`

async function waitUntilReady(): Promise<void> {
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    const ok = await fetch(`${base}/readyz`).then((r) => r.ok, () => false)
    if (ok) return
    await Bun.sleep(100)
  }
  throw new Error('gateway did not become ready in 15 s')
}

async function main(): Promise<void> {
  await waitUntilReady()
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-gateway-demo-key' })
  // One OpenAI client; the gateway speaks OpenAI, Anthropic and Gemini formats upstream.
  for (const model of ['demo-model', 'demo-claude', 'demo-gemini']) {
    const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hello?' }] }).withResponse()
    console.log(`${model} via ${response.headers.get('x-gateway-provider')}: ${data.choices[0]?.message.content}`)
    console.log(`  usage: prompt ${data.usage?.prompt_tokens}, completion ${data.usage?.completion_tokens}`)
    process.stdout.write('  streamed: ')
    const stream = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'Hello?' }] })
    for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? '')
    console.log()
  }
  if (once) return shutdown(0)
  console.log(`Gateway: ${base} (virtual key sk-gateway-demo-key, model demo-model). Try:`)
  console.log(`  curl ${base}/v1/chat/completions -H 'authorization: Bearer sk-gateway-demo-key' \\`)
  console.log(`    -d '{"model":"demo-model","stream":true,"messages":[{"role":"user","content":"hi"}]}'`)
  console.log('Ctrl-C to stop.')
}

function shutdown(code: number): void {
  if (stopping) return
  stopping = true
  gateway.kill('SIGTERM')
  void gateway.exited.then(() => emulator.stop()).then(() => process.exit(code))
}

process.on('SIGINT', () => shutdown(0))
process.on('SIGTERM', () => shutdown(0))
main().catch((err: unknown) => {
  console.error(err)
  shutdown(1)
})
