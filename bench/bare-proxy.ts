// The floor: a bare Bun fetch proxy for POST /v1/chat/completions, run as its own process (PORT, UPSTREAM_URL), so the bench can price what Bun itself costs to proxy.

const port = Number(process.env.PORT ?? 0)
const upstreamUrl = process.env.UPSTREAM_URL
if (!upstreamUrl) {
  process.stderr.write('UPSTREAM_URL is required (the upstream chat completions URL)\n')
  process.exit(78)
}

// A byte search, not a JSON parse: the floor should not pay for work a proxy can skip.
const STREAM_FLAG = '"stream":true'
const JSON_HEADERS = { 'content-type': 'application/json' }

const server = Bun.serve({
  port,
  hostname: '127.0.0.1',
  // Like the gateway: paced streams must not be cut by Bun's default idle timeout.
  idleTimeout: 0,
  async fetch(req) {
    if (req.method !== 'POST' || new URL(req.url).pathname !== '/v1/chat/completions') return new Response('not found', { status: 404 })
    const body = await req.arrayBuffer()
    const upstream = await fetch(upstreamUrl, { method: 'POST', headers: JSON_HEADERS, body })
    // The status is passed on so an upstream failure shows up as a failed request, not a 200.
    if (Buffer.from(body).includes(STREAM_FLAG)) return new Response(upstream.body, { status: upstream.status, headers: { 'content-type': 'text/event-stream' } })
    return new Response(await upstream.text(), { status: upstream.status, headers: JSON_HEADERS })
  },
})

process.stdout.write(`${JSON.stringify({ msg: 'bare proxy listening', port: server.port, upstream: upstreamUrl })}\n`)
const stop = () => void server.stop(true).then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
