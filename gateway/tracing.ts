// Request tracing with @opentelemetry/api: a span per request and its steps, W3C traceparent in and out; nothing at all when tracing is off.
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type Sampler } from '@opentelemetry/sdk-trace'
import type { UsageRecord } from '../shared/usage-event.ts'

const propagator = new W3CTraceContextPropagator()
const headerGetter = {
  get: (h: Headers, key: string) => h.get(key) ?? undefined,
  keys: (h: Headers) => [...h.keys()],
}
const recordSetter = {
  set: (carrier: Record<string, string>, key: string, value: string) => {
    carrier[key] = value
  },
}

export interface StepSpan {
  setAttributes(attrs: Attributes): void
  // Ends the span; with an error, marks it failed and records the error's code (never a body).
  end(error?: { code: string; message: string }): void
}

export interface RequestTrace {
  step(name: string, attrs?: Attributes, kind?: SpanKind): StepSpan
  // traceparent (and tracestate) for a provider call made under this step; undefined when off.
  headersFor(step: StepSpan): Record<string, string> | undefined
  // Ends the request's span with what its usage record says.
  finish(record: UsageRecord | undefined, error?: { code: string; message: string }): void
}

const NOOP_STEP: StepSpan = { setAttributes() {}, end() {} }
const NOOP_TRACE: RequestTrace = {
  step: () => NOOP_STEP,
  headersFor: () => undefined,
  finish() {},
}

class RealStep implements StepSpan {
  constructor(readonly span: Span) {}

  setAttributes(attrs: Attributes): void {
    this.span.setAttributes(attrs)
  }

  end(error?: { code: string; message: string }): void {
    if (error) {
      this.span.setAttribute('error.type', error.code)
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: error.message })
    }
    this.span.end()
  }
}

// One span for the request (the caller's traceparent as its parent), steps as its children.
export function startRequestTrace(tracer: Tracer | undefined, request: Request, name: string): RequestTrace {
  if (!tracer) return NOOP_TRACE
  const parent = propagator.extract(ROOT_CONTEXT, request.headers, headerGetter)
  const root = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: { 'http.request.method': request.method, 'url.path': new URL(request.url).pathname } }, parent)
  const inRoot: Context = trace.setSpan(parent, root)
  let finished = false
  return {
    step(stepName, attrs, kind = SpanKind.INTERNAL) {
      return new RealStep(tracer.startSpan(stepName, { kind, attributes: attrs }, inRoot))
    },
    headersFor(step) {
      if (!(step instanceof RealStep)) return undefined
      const carrier: Record<string, string> = {}
      propagator.inject(trace.setSpan(context.active(), step.span), carrier, recordSetter)
      return carrier
    },
    finish(record, error) {
      if (finished) return
      finished = true
      if (record) {
        root.setAttributes({
          'gateway.request_id': record.request_id,
          'gateway.client_id': record.client_id,
          'gateway.team_id': record.team_id,
          'gateway.provider_id': record.provider_id,
          'gen_ai.request.model': record.model,
          'gen_ai.response.model': record.upstream_model,
          'gen_ai.usage.input_tokens': record.input_tokens,
          'gen_ai.usage.output_tokens': record.output_tokens,
          'gateway.cost_pico': record.cost_pico,
          'gateway.status': record.status,
          'gateway.attempts': record.attempts,
          'gateway.stream': record.stream,
          'http.response.status_code': record.http_status,
        })
      }
      const failure = error ?? (record?.error_code ? { code: record.error_code, message: record.error_code } : undefined)
      if (failure) {
        root.setAttribute('error.type', failure.code)
        root.setStatus({ code: SpanStatusCode.ERROR, message: failure.message })
      }
      root.end()
    },
  }
}

export interface Tracing {
  tracer: Tracer
  shutdown(): Promise<void>
}

// OTLP over HTTP (the exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself), spans
// batched off the request path.
export function startOtlpTracing(serviceName: string, sampler = 'parentbased_always_on', ratio = 1): Tracing {
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    sampler: samplerOf(sampler, ratio),
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter() })],
  })
  return { tracer: provider.getTracer(serviceName), shutdown: () => provider.shutdown() }
}

// OTEL_TRACES_SAMPLER's values (checked when the config loads), with OTEL_TRACES_SAMPLER_ARG as the ratio.
export function samplerOf(name: string, ratio = 1): Sampler {
  const root = name.endsWith('always_off') ? new AlwaysOffSampler() : name.endsWith('traceidratio') ? new TraceIdRatioBasedSampler(ratio) : new AlwaysOnSampler()
  return name.startsWith('parentbased_') ? new ParentBasedSampler({ root }) : root
}
