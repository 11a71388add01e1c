import { describe, expect, it } from 'bun:test'
import { parseChatRequest } from './chat-request.ts'
import { catchGatewayError } from '../test/harness/catch-error.ts'

const errorOf = (body: unknown) => catchGatewayError(() => parseChatRequest(body))

describe('parseChatRequest', () => {
  it('accepts a valid request and keeps parameters it does not know', () => {
    const req = parseChatRequest({ model: 'm', messages: [{ role: 'user', content: 'hi' }], seed: 3, logit_bias: { '1': 2 } })
    expect(req.seed).toBe(3)
    expect(req.logit_bias).toEqual({ '1': 2 })
  })

  it('names a missing required parameter', () => {
    const e = errorOf({ model: 'm' })
    expect(e.status).toBe(400)
    expect(e.param).toBe('messages')
    expect(e.message).toBe("Missing required parameter: 'messages'.")
  })

  it('rejects empty messages', () => {
    expect(errorOf({ model: 'm', messages: [] }).message).toContain('empty array')
  })

  it('names the exact nested parameter that is wrong', () => {
    const e = errorOf({ model: 'm', messages: [{ role: 'user', content: 'a' }, { role: 'robot', content: 'b' }] })
    expect(e.param).toBe('messages[1].role')
    expect(e.message).toContain("'user'")
  })

  it('rejects wrong types with the parameter name', () => {
    expect(errorOf({ model: 'm', messages: [{ role: 'user', content: 'a' }], stream: 'yes' }).param).toBe('stream')
    expect(errorOf({ model: 'm', messages: [{ role: 'user', content: 'a' }], max_tokens: 0 }).param).toBe('max_tokens')
    expect(errorOf({ model: 'm', messages: [{ role: 'user', content: 'a' }], temperature: 3 }).param).toBe('temperature')
    expect(errorOf({ model: 5, messages: [{ role: 'user', content: 'a' }] }).param).toBe('model')
  })

  it('bounds integer parameters: an output cap above any model, a seed beyond 2^53, top_logprobs above 20', () => {
    const base = { model: 'm', messages: [{ role: 'user', content: 'a' }] }
    for (const [param, value] of [['max_tokens', 1e308], ['max_completion_tokens', 1_048_577], ['seed', 2 ** 60], ['top_logprobs', 21], ['n', 129]] as const) {
      const e = errorOf({ ...base, [param]: value })
      expect(e.status).toBe(400)
      expect(e.param).toBe(param)
    }
    expect(parseChatRequest({ ...base, max_tokens: 1_048_576, seed: -(2 ** 53) + 1 }).max_tokens).toBe(1_048_576)
  })

  it('refuses max_tokens and max_completion_tokens that disagree, and takes them when equal', () => {
    const base = { model: 'm', messages: [{ role: 'user', content: 'a' }] }
    expect(errorOf({ ...base, max_tokens: 10, max_completion_tokens: 20 }).param).toBe('max_completion_tokens')
    expect(parseChatRequest({ ...base, max_tokens: 10, max_completion_tokens: 10 }).max_tokens).toBe(10)
  })

  it('rejects a body that is not an object', () => {
    expect(errorOf([1, 2]).code).toBe('invalid_parameter')
    expect(errorOf('text').code).toBe('invalid_parameter')
  })
})
