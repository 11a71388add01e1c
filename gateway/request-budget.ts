// What one request may cost and what it did: its estimate per target, its budget reservations, the calls that may have been billed, and what each books at the end.
import type { Caller, Route } from './config-store.ts'
import { askedOutputCap, MAX_OUTPUT_TOKENS, type ChatRequest } from './chat-request.ts'
import { GatewayError } from './errors.ts'
import type { ProviderOptions, Usage } from './providers/types.ts'
import type { QuotaRecord, QuotaSettings, UnsupportedParams } from '../shared/config/schema.ts'
import { costPico } from '../shared/money.ts'
import { inputBound } from './providers/billable.ts'
import { countTokens } from './providers/tokenize.ts'
import { estimateRequest, guessInputTokens, RequestCounter, withOutputCap, type Estimate } from './quota/estimate.ts'
import { planFor, type EntityPlan, type QuotaService, type Reservation } from './quota/quota.ts'
import { QUICK_INPUT_BOUND, UsageGuard, withinBounds, type UsageBounds } from './usage-check.ts'

// What a request's answer says of its output when the provider reported no usage: a completion's
// text, what a stream generated, or nothing (the caller left while the call ran).
export type AnswerSeen = { body: string } | { chunks: number; bytes: number } | { abandoned: true }

export class RequestBudget {
  readonly #estimates = new Map<Route, Estimate>()
  // The first reservation pays for one call; every call after one that may have been billed (it
  // timed out, or broke once the provider had it) needs one more (see topUp).
  readonly #reservations: Reservation[] = []
  readonly #billedFailures: Route[] = []
  // Set when the answer's usage is unknown but the provider may have billed it all (a stream cut
  // before its usage, a call the caller left): that target's whole estimate is booked.
  #bookWhole: Route | undefined
  #worst = { tokens: 0, micro: 0 }
  readonly #counter = new RequestCounter()
  readonly #plan: readonly EntityPlan[]
  #settled = false

  constructor(
    private readonly quota: QuotaService,
    private readonly requestId: string,
    private readonly req: ChatRequest,
    caller: Caller,
    quotas: readonly QuotaRecord[],
    // The caller's provider-specific fields (x-gateway-options' provider_options).
    private readonly providerOptions: ProviderOptions,
    more: {
      // What a request other than a chat (embeddings) may cost on a target; a chat's by default.
      estimateFor?: (route: Route, counter: RequestCounter) => Promise<Estimate>
      // drop: a parameter a target cannot honour is left out for that target (and said), instead
      // of refusing the request.
      unsupported?: UnsupportedParams
    } = {},
  ) {
    const keyPlan = caller.key?.plan
    this.#plan = keyPlan ? withKeyPlan(planFor(quotas, caller), keyPlan) : planFor(quotas, caller)
    this.estimateFor = more.estimateFor
    this.#unsupported = more.unsupported ?? 'reject'
  }

  private readonly estimateFor: ((route: Route, counter: RequestCounter) => Promise<Estimate>) | undefined
  readonly #unsupported: UnsupportedParams
  readonly #fitted = new Map<Route, { req: ChatRequest; dropped: string[] }>()

  // The request as a target can take it: with unsupported_params drop, without the parameters its
  // adapter refuses (each found by measuring, which refuses what building would); else as sent.
  #fit(route: Route): { req: ChatRequest; dropped: string[] } {
    const known = this.#fitted.get(route)
    if (known) return known
    let req = this.req
    const dropped: string[] = []
    if (this.#unsupported === 'drop') {
      for (let i = 0; i < MAX_DROPPED; i++) {
        try {
          route.adapter.measure(req, route.target, this.optionsFor(route))
          break
        } catch (err) {
          const param = droppable(err, req)
          // Not a parameter that can go: the refusal comes where it always did.
          if (param === undefined) break
          req = { ...req }
          delete req[param]
          dropped.push(param)
        }
      }
    }
    const fitted = { req, dropped }
    this.#fitted.set(route, fitted)
    return fitted
  }

  // Parameters left out for this target (unsupported_params: drop).
  droppedFor(route: Route): readonly string[] {
    return this.#fit(route).dropped
  }

  #firstKind: string | undefined

  // Provider-specific fields are for the kind of provider the request is meant for (the first
  // target's): a fallback of another kind gets the request without them.
  routed(first: Route | undefined): void {
    this.#firstKind = first?.target.provider.kind
  }

  optionsFor(route: Route): ProviderOptions {
    return route.target.provider.kind === this.#firstKind ? this.providerOptions : {}
  }

  get budgeted(): boolean {
    return this.#plan.length > 0
  }

  // x-ratelimit-* of the tightest budget line, for the response.
  get headers(): Record<string, string> {
    return this.#reservations[0]?.headers ?? {}
  }

  // Estimates the request for every target of the chain and reserves for the dearest, so a
  // fallback cannot overspend. A target that cannot take this request (a parameter it refuses,
  // an image it cannot price) leaves the chain, as dispatch would skip it; the first refusal is
  // the answer if none can. Returns the chain that is left.
  async reserve(chain: readonly Route[], settings: QuotaSettings): Promise<readonly Route[]> {
    if (!this.budgeted) return chain
    const kept: Route[] = []
    let refusal: unknown
    for (const route of chain) {
      try {
        const started = performance.now()
        this.#estimates.set(route, await (this.estimateFor ? this.estimateFor(route, this.#counter) : estimateRequest(route, this.#fit(route).req, this.optionsFor(route), settings, this.#counter)))
        kept.push(route)
        // Measuring a huge request for each target of a long chain: others get a turn between.
        if (performance.now() - started > 1) await new Promise((resolve) => setImmediate(resolve))
      } catch (err) {
        if (!(err instanceof GatewayError) || err.status >= 500) throw err
        refusal ??= err
      }
    }
    if (kept.length === 0) throw refusal
    const all = [...this.#estimates.values()]
    this.#worst = { tokens: Math.max(...all.map((e) => e.tokens)), micro: Math.max(...all.map((e) => e.micro)) }
    const reservation = await this.quota.reserve(this.#plan, this.requestId, this.#worst)
    if (reservation) this.#reservations.push(reservation)
    return kept
  }

  // The request as one target gets it: with the reserved output cap when the caller set none.
  requestFor(route: Route): ChatRequest {
    const est = this.#estimates.get(route)
    const req = this.#fit(route).req
    return est?.capApplied ? withOutputCap(req, est.maxOutput, route.target.provider.kind) : req
  }

  // The output cap the gateway sent for the caller, if it set one.
  capSent(route: Route): number | undefined {
    const est = this.#estimates.get(route)
    return est?.capApplied ? est.maxOutput : undefined
  }

  // Before a call that follows a call that may have been billed, reserve for it too: a budget that
  // cannot pay for both ends the request (its 429) instead of letting retries overspend.
  async topUp(): Promise<void> {
    while (this.#reservations.length > 0 && this.#billedFailures.length >= this.#reservations.length) {
      const extra = await this.quota.reserve(this.#plan, `${this.requestId}#${this.#reservations.length}`, this.#worst)
      if (!extra) return
      this.#reservations.push(extra)
    }
  }

  // A call that failed: one the provider may have billed (it timed out, or broke once sent) books
  // its estimate at the end.
  noteFailure(route: Route, err: unknown): void {
    if (err instanceof GatewayError && mayHaveBilled(err)) this.#billedFailures.push(route)
  }

  // The answer's usage is unknown and the provider may have billed the whole call.
  bookWhole(route: Route): void {
    this.#bookWhole = route
  }

  // What the provider reports is checked against what the request as sent can bill; a report that
  // fails is replaced by the estimate (the reservation's, when there is one).
  guardFor(route: Route): UsageGuard {
    const est = this.#estimates.get(route)
    const cap = est ? est.maxOutput * est.outputs + est.extraOutput : (askedOutputCap(this.req) ?? route.target.model.max_output_tokens ?? MAX_OUTPUT_TOKENS) * (this.req.n ?? 1)
    return new UsageGuard(
      { maxInput: est?.inputBound ?? QUICK_INPUT_BOUND, maxOutput: cap },
      () => usageBounds(route, this.#fit(route).req, this.optionsFor(route), est),
      // Under a budget: what was reserved. Without one (nothing was estimated): the report's own
      // figures within their bounds, never a free call.
      (reported, bounds) => (est ? this.#wholeEstimate(route) : withinBounds(reported, bounds, MAX_REPORTED_INPUT)),
    )
  }

  // What a request used when the provider did not say: input counted locally (the reservation's
  // count when there is one), output from the answer itself, never above the cap sent.
  async estimateUsage(route: Route, answer: AnswerSeen): Promise<Usage> {
    const est = this.#estimates.get(route)
    const input = est?.inputGuess ?? (await guessInputTokens(route, this.#fit(route).req, this.optionsFor(route), this.#counter))
    const cap = est ? est.maxOutput * est.outputs + est.extraOutput : undefined
    const produced =
      'body' in answer
        ? await countTokens([answer.body], route.adapter.encoding(route.target))
        : 'chunks' in answer
          ? // About a token a chunk, or four bytes a token where chunks carry more (a provider sending
            // whole sentences, or text the caller never saw, as thinking).
            Math.max(answer.chunks, Math.ceil(answer.bytes / 4))
          : 0
    return {
      input_tokens: input,
      output_tokens: cap === undefined ? produced : Math.min(cap, produced),
      cached_input_tokens: 0,
      cache_write_input_tokens: 0,
      reasoning_tokens: 0,
      estimated: true,
    }
  }

  // Books what the request used, once: each call that may have been billed its estimate, then the
  // answer its usage (as recorded: tokens and exact cost), or its whole estimate when unknown; a
  // reservation left over is released. Resolves when the store has them (or gave up).
  settle(used: { tokens: number; pico: number } | undefined): Promise<unknown> {
    if (this.#settled) return Promise.resolve()
    this.#settled = true
    const charges = this.#billedFailures.map((r) => this.#chargeOf(r))
    if (this.#bookWhole) charges.push(this.#chargeOf(this.#bookWhole))
    else if (used) charges.push(used)
    return Promise.all(
      this.#reservations.map((r, i) => {
        const c = charges[i]
        return c ? r.settle(c.tokens, c.pico) : r.release()
      }),
    )
  }

  get reservations(): number {
    return this.#reservations.length
  }

  // The figures that stand in for a report that failed, or an answer that could not be read: the
  // reservation's estimate (nothing to go by without a budget).
  #wholeEstimate(route: Route): Usage {
    const est = this.#estimates.get(route)
    return {
      input_tokens: est?.input ?? 0,
      output_tokens: est ? est.maxOutput * est.outputs + est.extraOutput : 0,
      cached_input_tokens: 0,
      cache_write_input_tokens: 0,
      reasoning_tokens: 0,
      estimated: true,
    }
  }

  #chargeOf(route: Route): { tokens: number; pico: number } {
    const u = this.#wholeEstimate(route)
    return { tokens: u.input_tokens + u.output_tokens, pico: costPico(route.target.price, u.input_tokens, u.output_tokens) }
  }
}

// Failures after which the provider may still bill the call: anything after it accepted the call
// (an error inside a 200 stream, a body that broke or could not be read), a call that ran past our
// deadline or was stopped by a shutdown, and a connection that failed other than before the
// request could leave.
export function mayHaveBilled(err: GatewayError): boolean {
  if (err.accepted || err.code === 'upstream_timeout' || err.code === 'stream_timeout' || err.code === 'gateway_shutting_down') return true
  if (err.code !== 'upstream_unreachable') return false
  const code = (err.cause as { code?: unknown } | undefined)?.code
  return !(typeof code === 'string' && NOT_SENT.test(code))
}

// Network failures that happen before a request leaves: refused, unresolvable, unroutable, TLS.
const NOT_SENT = /^(ECONNREFUSED|ConnectionRefused|FailedToOpenSocket|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|CERT_|ERR_TLS|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)/

// The most a provider can report for this request as sent to this target.
function usageBounds(route: Route, req: ChatRequest, options: ProviderOptions, est: Estimate | undefined): UsageBounds {
  if (est) return { maxInput: est.inputBound, maxOutput: est.maxOutput * est.outputs + est.extraOutput }
  const billable = route.adapter.measure(req, route.target, options)
  const cap = askedOutputCap(req) ?? route.target.model.max_output_tokens ?? MAX_OUTPUT_TOKENS
  let predicted = 0
  for (const t of billable.outputTexts) predicted += t.length * 3
  // Without a budget a request may carry what the gateway cannot bound (a provider's server tools
  // add search results to the input): then only absurd figures are refused.
  const maxInput = billable.unbounded.length > 0 ? MAX_REPORTED_INPUT : inputBound(billable) + JSON.stringify(options).length * 3
  return { maxInput, maxOutput: cap * billable.outputs + predicted }
}

// More input than any model's context window holds.
const MAX_REPORTED_INPUT = 100_000_000

// Parameters dropped for one target at most (each a measure of the request).
const MAX_DROPPED = 16
// Never dropped: without them there is no request, or no bound on what it costs.
const KEPT = new Set(['model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens'])

// The top-level parameter a target's refusal names, when leaving it out is a way to serve the request.
function droppable(err: unknown, req: ChatRequest): string | undefined {
  if (!(err instanceof GatewayError) || err.code !== 'unsupported_parameter' || typeof err.param !== 'string') return undefined
  const param = err.param
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(param) || KEPT.has(param) || !Object.hasOwn(req, param)) return undefined
  return param
}

// A runtime key's own lines (tokens per minute, budgets) beside its caller's: the same plan object
// for every request of a key version, as planFor gives for the rest.
const keyPlans = new WeakMap<readonly EntityPlan[], WeakMap<EntityPlan, readonly EntityPlan[]>>()
function withKeyPlan(base: readonly EntityPlan[], key: EntityPlan): readonly EntityPlan[] {
  let byKey = keyPlans.get(base)
  if (!byKey) {
    byKey = new WeakMap()
    keyPlans.set(base, byKey)
  }
  let plan = byKey.get(key)
  if (!plan) {
    plan = Object.freeze([...base, key])
    byKey.set(key, plan)
  }
  return plan
}
