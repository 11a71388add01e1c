// npm run demo: the emulator on :4010 and the gateway on :8080 with the sample config, then two requests
// through the official openai SDK. Keeps serving until Ctrl-C; `npm run demo -- --once` exits after the requests.
import OpenAI from 'openai'
import { startEmulator } from '../test/harness/emulator.ts'

const once = process.argv.includes('--once')
const emulator = startEmulator({ port: 4010 })
const gateway = Bun.spawn([process.execPath, 'gateway/main.ts'], {
  env: { ...process.env, GATEWAY_CONFIG: 'config/gateway.sample.yaml', PORT: process.env.PORT ?? '8080', LOG_LEVEL: 'warn' },
  stdout: 'inherit',
  stderr: 'inherit',
})
const base = `http://127.0.0.1:${process.env.PORT ?? '8080'}`

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
  gateway.kill('SIGTERM')
  void gateway.exited.then(() => emulator.stop()).then(() => process.exit(code))
}

process.on('SIGINT', () => shutdown(0))
main().catch((err: unknown) => {
  console.error(err)
  shutdown(1)
})
