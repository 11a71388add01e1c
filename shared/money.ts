// Money as integers: prices in pico-dollars per token, costs in pico-dollars, USD floats only at the edge.
//
// Pico-dollars (1e-12 USD) keep every published per-token price an integer (e.g. $0.0375 per
// million tokens = 37,500 p$/token), so a request's cost is an exact integer product and sums of
// costs never drift. One request stays far below 2^53 p$ (~$9,007); totals across many
// requests are summed as bigint or in ClickHouse integers.

export const PICO_PER_USD = 1_000_000_000_000
const PICO_PER_MICRO = 1_000_000

export interface Price {
  input_pico_per_token: number
  output_pico_per_token: number
}

// USD per 1k tokens → pico-dollars per token, exact or an error: a price with more precision
// than a pico-dollar per token is a typo, not something to round silently.
export function pricePerTokenPico(usdPer1k: number): number {
  const pico = usdPer1k * 1_000_000_000
  const rounded = Math.round(pico)
  if (Math.abs(pico - rounded) > 1e-6 * Math.max(1, rounded)) {
    throw new RangeError(`price ${usdPer1k} USD per 1k tokens is finer than 1e-12 USD per token`)
  }
  return rounded
}

export function costPico(price: Price, inputTokens: number, outputTokens: number): number {
  return inputTokens * price.input_pico_per_token + outputTokens * price.output_pico_per_token
}

export function picoToUsd(pico: number | bigint): number {
  return Number(pico) / PICO_PER_USD
}

// Micro-dollars, rounded up so a budget counted in them is never undercharged.
export function picoToMicroCeil(pico: number): number {
  return Math.ceil(pico / PICO_PER_MICRO)
}
