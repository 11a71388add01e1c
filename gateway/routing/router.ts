// Turns a request's model name into the ordered chain of targets to try: policy, breakers, per-request options.
import type { RoutePolicy, RoutingSettings } from '../../shared/config/schema.ts'
import { mayUseModel } from '../auth.ts'
import { askedOutputCap, type ChatRequest } from '../chat-request.ts'
import type { Caller, Route, RoutePlan, Snapshot } from '../config-store.ts'
import { GatewayError } from '../errors.ts'
import type { GatewayOptions } from '../gateway-options.ts'
import type { BreakerRegistry } from './breaker.ts'
import type { LatencyTracker } from './latency.ts'
import type { RetryBudgetRegistry } from './retry-budget.ts'
import { orderTargets, type Weighted } from './policies.ts'

export interface RoutingState {
  breakers: BreakerRegistry
  retryBudgets: RetryBudgetRegistry
  latency: LatencyTracker
  now: () => number
  random: () => number
}

export interface RoutingDecision {
  plan: RoutePlan
  policy: RoutePolicy
  // Targets to try in order: the policy's choice first, then the fallback chain.
  chain: Route[]
}

const OPTIONS = 'x-gateway-options'

export function routeRequest(snapshot: Snapshot, caller: Caller, req: ChatRequest, options: GatewayOptions, state: RoutingState): RoutingDecision {
  const plan = lookUp(snapshot, caller, req.model, 'model')
  const policy = options.policy ?? plan.policy
  if (options.provider !== undefined && !plan.targets.some((r) => r.target.provider.provider_id === options.provider)) {
    throw new GatewayError('invalid_parameter', `Invalid ${OPTIONS}: provider '${options.provider}' does not serve '${req.model}'.`, { param: `${OPTIONS}.provider` })
  }
  const fallbackPlans = Array.isArray(options.fallback) ? options.fallback.map((m) => lookUp(snapshot, caller, m, `${OPTIONS}.fallback`)) : undefined

  const usable = usableTargets(plan, req, state, snapshot.config.file.routing)
  const { latency } = snapshot.config.file.routing
  let ordered = orderTargets(policy, plan, usable, {
    callerId: caller.client.client_id,
    // Only the cost policy prices the request: the others skip walking its messages.
    inputTokens: policy === 'cost' ? approximateInputTokens(req) : 0,
    outputTokens: askedOutputCap(req) ?? snapshot.config.file.quota.default_max_output_tokens,
    random: state.random,
    latency: (key) => {
      const f = state.latency.figure(key, latency)
      return { p95: f.p95, failing: f.failures > 0 && f.failures >= f.samples }
    },
  })
  if (options.provider !== undefined) {
    const preferred = options.provider
    ordered = [...ordered.filter((r) => r.target.provider.provider_id === preferred), ...ordered.filter((r) => r.target.provider.provider_id !== preferred)]
  }
  const first = ordered[0] as Route
  // A caller may switch fallback off or name its own chain, not turn on one the route switched off.
  const wantsFallback = options.fallback === false ? false : plan.fallback || Array.isArray(options.fallback)
  if (!wantsFallback) return { plan, policy, chain: [first] }
  if (!fallbackPlans) return { plan, policy, chain: ordered }
  const chain = [first]
  for (const p of fallbackPlans) {
    for (const { route } of usableTargets(p, req, state, snapshot.config.file.routing, false)) if (!chain.includes(route)) chain.push(route)
  }
  return { plan, policy, chain }
}

function lookUp(snapshot: Snapshot, caller: Caller, model: string, param: string): RoutePlan {
  const plan = snapshot.routes.get(model)
  if (!plan || !mayUseModel(caller, model)) {
    throw new GatewayError('model_not_found', `The model '${model}' does not exist or you do not have access to it.`, { param })
  }
  return plan
}

// Targets that can take this request now: enabled with a key, able to produce the output asked
// for, and not behind an open breaker. `required` throws when none is left, saying why.
function usableTargets(plan: RoutePlan, req: ChatRequest, state: RoutingState, settings: RoutingSettings, required = true): Weighted[] {
  const available = plan.targets.flatMap((route, i) => (route.unavailable === undefined ? [{ route, weight: plan.weights[i] ?? 1 }] : []))
  if (available.length === 0) {
    if (!required) return []
    const reasons = plan.targets.map((r) => `${r.target.provider.provider_id}: ${r.unavailable}`).join('; ')
    throw new GatewayError('provider_unavailable', `No provider can serve '${plan.name}' now (${reasons}).`)
  }
  // A cap above a target's own output limit would be refused upstream (and reserved for by a
  // budget in vain): only targets that can produce it are used, and none is a 400.
  const asked = askedOutputCap(req)
  const capable = asked === undefined ? available : available.filter((u) => (u.route.target.model.max_output_tokens ?? Infinity) >= asked)
  if (capable.length === 0) {
    if (!required) return []
    const most = Math.max(...available.map((u) => u.route.target.model.max_output_tokens ?? 0))
    const param = req.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens'
    throw new GatewayError('invalid_parameter', `Invalid value for '${param}': ${asked} is above the output limit of every target of '${plan.name}' (at most ${most}).`, { param })
  }
  const now = state.now()
  const closed = settings.breaker.enabled ? capable.filter((u) => state.breakers.get(u.route.key).canPass(now)) : capable
  if (closed.length === 0 && required) {
    const reopen = Math.min(...capable.map((u) => state.breakers.get(u.route.key).reopensAt() ?? now + 1000))
    const seconds = Math.max(1, Math.ceil((reopen - now) / 1000))
    throw new GatewayError('provider_unavailable', `Every target of '${plan.name}' is failing (circuit open). Retry in ${seconds} s.`, { retryAfterSeconds: seconds })
  }
  return closed
}

// The cost policy compares targets on one size; message text at ~4 characters a token is close
// enough to rank them, and costs nothing compared with a tokenizer.
export function approximateInputTokens(req: ChatRequest): number {
  let chars = 0
  for (const m of req.messages) {
    if (typeof m.content === 'string') chars += m.content.length
    else if (Array.isArray(m.content)) {
      for (const part of m.content as Array<{ type: string; text?: unknown }>) if (typeof part.text === 'string') chars += part.text.length
    }
  }
  return Math.ceil(chars / 4) + 4 * req.messages.length
}
