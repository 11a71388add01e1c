import { describe, expect, it } from 'bun:test'
import { NATIVE, nativeOf } from '../../chat-request.ts'
import { GatewayError } from '../../errors.ts'
import { fromMessagesRequest } from './request.ts'

const headers = (h: Record<string, string> = {}) => new Headers(h)
const base = { model: 'm', max_tokens: 100 }

function refusal(body: unknown, countOnly = false): GatewayError {
  try {
    fromMessagesRequest(body, headers(), countOnly)
  } catch (err) {
    if (err instanceof GatewayError) return err
    throw err
  }
  throw new Error('accepted')
}

describe('fromMessagesRequest', () => {
  it('translates system, turns, sampling, stop sequences and the user id into the internal request', () => {
    const req = fromMessagesRequest(
      { ...base, system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }, { role: 'user', content: 'again' }], temperature: 0.2, top_p: 0.9, stop_sequences: ['END'], metadata: { user_id: 'u-1' }, stream: true },
      headers(),
    )
    expect({ ...req, [NATIVE]: undefined } as unknown).toEqual({
      [NATIVE]: undefined,
      model: 'm',
      max_tokens: 100,
      messages: [
        { role: 'system', content: [{ type: 'text', text: 'Be brief.' }] },
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
        { role: 'user', content: 'again' },
      ],
      temperature: 0.2,
      top_p: 0.9,
      stop: ['END'],
      user: 'u-1',
      stream: true,
      stream_options: { include_usage: true },
    })
  })

  it('turns tool_use blocks into tool calls and tool_result blocks into tool messages ahead of the turn\'s text', () => {
    const req = fromMessagesRequest(
      {
        ...base,
        messages: [
          { role: 'user', content: 'weather?' },
          { role: 'assistant', content: [{ type: 'thinking', thinking: 'hm', signature: 's' }, { type: 'text', text: 'Checking.' }, { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: 'sunny' }] }, { type: 'text', text: 'and tomorrow?' }] },
        ],
        tools: [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object' } }, { type: 'web_search_20250305', name: 'web_search', max_uses: 2 }],
        tool_choice: { type: 'any', disable_parallel_tool_use: true },
      },
      headers(),
    )
    expect(req.messages as unknown).toEqual([
      { role: 'user', content: 'weather?' },
      // The model's thinking has no place in another provider's prompt.
      { role: 'assistant', content: 'Checking.', tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'toolu_1', content: [{ type: 'text', text: 'sunny' }] },
      { role: 'user', content: [{ type: 'text', text: 'and tomorrow?' }] },
    ])
    // A server tool stays as it is: only an Anthropic target runs it, any other refuses it by name.
    expect(req.tools as unknown).toEqual([{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object' } } }, { type: 'web_search_20250305', name: 'web_search', max_uses: 2 }])
    expect(req.tool_choice).toBe('required')
    expect(req.parallel_tool_calls).toBe(false)
  })

  it('maps images to image_url parts, text documents to text, PDFs to file parts; other blocks stay for the target to refuse', () => {
    const req = fromMessagesRequest(
      {
        ...base,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
              { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } },
              { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'notes' } },
              { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBER' } },
              { type: 'document', source: { type: 'url', url: 'https://example.com/a.pdf' } },
            ],
          },
        ],
      },
      headers(),
    )
    expect(req.messages[0]?.content as unknown).toEqual([
      { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
      { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
      { type: 'text', text: 'notes' },
      { type: 'file', file: { filename: 'document.pdf', file_data: 'data:application/pdf;base64,JVBER' } },
      { type: 'document', source: { type: 'url', url: 'https://example.com/a.pdf' } },
    ])
  })

  it('keeps the body as it came, and the Anthropic headers, for an Anthropic target', () => {
    const body = { ...base, messages: [{ role: 'user', content: 'hi' }], thinking: { type: 'enabled', budget_tokens: 50 }, container: 'c-1' }
    const req = fromMessagesRequest(body, headers({ 'anthropic-version': '2023-06-01', 'anthropic-beta': 'b1,b2', 'x-other': 'no' }))
    expect(nativeOf(req, 'anthropic')).toEqual({ kind: 'anthropic', body, headers: { 'anthropic-version': '2023-06-01', 'anthropic-beta': 'b1,b2' } })
    // Fields only Anthropic knows go on as they are (another target's adapter refuses them by name).
    expect(req.thinking).toEqual({ type: 'enabled', budget_tokens: 50 })
    // A copy keeps it; JSON leaves it out.
    expect(nativeOf({ ...req }, 'anthropic')).toBeDefined()
    expect(JSON.stringify(req)).not.toContain('native')
    expect(Object.keys(req)).not.toContain(String(NATIVE))
  })

  it('refuses what Anthropic refuses, naming the field as Anthropic does', () => {
    expect(refusal({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }).message).toBe('max_tokens: Field required')
    expect(refusal({ ...base, messages: [] }).param).toBe('messages')
    expect(refusal({ ...base, messages: [{ role: 'system', content: 'hi' }] }).message).toBe("messages.0.role: Input should be 'user' or 'assistant'")
    expect(refusal({ ...base, messages: [{ role: 'user', content: 'hi' }], temperature: 1.5 }).param).toBe('temperature')
    expect(refusal({ ...base, messages: [{ role: 'user', content: [{ type: 'tool_result', content: 'x' }] }] }).message).toBe('messages[0].content[0].tool_use_id: Field required')
    expect(refusal({ ...base, messages: [{ role: 'user', content: 'hi' }], tool_choice: { type: 'tool' } }).param).toBe('tool_choice.name')
    expect(refusal([]).message).toBe('The request body must be a JSON object.')
  })

  it('refuses an Anthropic header the provider call could not carry, naming it', () => {
    const body = { ...base, messages: [{ role: 'user', content: 'hi' }] }
    const err = (() => {
      try {
        fromMessagesRequest(body, headers({ 'anthropic-beta': 'caf\u00e9' }))
      } catch (e) {
        return e as GatewayError
      }
    })()
    expect(err?.param).toBe('anthropic-beta')
    expect(() => fromMessagesRequest(body, headers({ 'anthropic-beta': 'x'.repeat(1025) }))).toThrow('anthropic-beta')
  })

  it('refuses a field of the internal request an Anthropic body would bring in (an output cap the budget would read)', () => {
    for (const field of ['max_completion_tokens', 'n', 'stop', 'stream_options', 'seed', 'response_format']) {
      expect(refusal({ ...base, messages: [{ role: 'user', content: 'hi' }], [field]: 1 }).param).toBe(field)
    }
  })

  it('refuses malformed nested blocks with a 400 naming them, never a 500', () => {
    for (const content of [[null], [1], ['x'], [{ text: 'no type' }]]) {
      const err = refusal({ ...base, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content }] }] })
      expect(err.status).toBe(400)
      expect(err.param).toBe('messages[0].content[0].content[0]')
    }
    expect(refusal({ ...base, messages: [{ role: 'user', content: [] }] }).message).toContain('non-empty list of content blocks')
    expect(refusal({ ...base, messages: [{ role: 'user', content: [null] }] }).status).toBe(400)
  })

  it('takes a count_tokens body without max_tokens', () => {
    expect(fromMessagesRequest({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }, headers(), true).max_tokens).toBeUndefined()
  })
})
