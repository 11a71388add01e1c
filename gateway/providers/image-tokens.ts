// Image token rules shared by providers: OpenAI's tiles and patches, Anthropic's pixel area, Gemini's crop tiles.
import type { ImageSize } from './image-size.ts'

// OpenAI (GPT-4o generation): fit in 2048x2048, then the short side down to 768 (never up),
// then base + per_tile for each 512px tile. `detail: low` is the base alone, whatever the size.
export function tileImageTokens(size: ImageSize | undefined, detail: string | undefined, base: number, perTile: number): number {
  if (detail === 'low') return base
  // Unknown size: the most tiles the rule allows (768 x 2048: 2 x 4).
  if (!size) return base + perTile * 8
  let w = size.width
  let h = size.height
  const fit = Math.min(1, 2048 / Math.max(w, h))
  w *= fit
  h *= fit
  const short = Math.min(1, 768 / Math.min(w, h))
  w *= short
  h *= short
  return base + perTile * Math.ceil(w / 512) * Math.ceil(h / 512)
}

const PATCH = 32
const MAX_PATCHES = 1536

// OpenAI (GPT-4.1 mini/nano, o4-mini): 32px patches, at most 1536 (larger images are scaled
// down to fit), times the model's multiplier. Detail does not change the count.
export function patchImageTokens(size: ImageSize | undefined, multiplier: number): number {
  if (!size) return Math.ceil(MAX_PATCHES * multiplier)
  let patches = Math.ceil(size.width / PATCH) * Math.ceil(size.height / PATCH)
  if (patches > MAX_PATCHES) patches = MAX_PATCHES
  return Math.ceil(patches * multiplier)
}

// Anthropic: one token per 28x28 px patch (its current docs), or width x height / 750 (its
// earlier ones), whichever is more, after scaling the long edge down to the model's native size;
// an image above the model's token maximum is scaled down to it.
export function patch28ImageTokens(size: ImageSize | undefined, maxEdge: number, maxTokens: number): number {
  if (!size) return maxTokens
  const fit = Math.min(1, maxEdge / Math.max(size.width, size.height))
  const w = size.width * fit
  const h = size.height * fit
  const tokens = Math.max(Math.ceil(w / 28) * Math.ceil(h / 28), Math.ceil((w * h) / 750))
  return Math.min(maxTokens, tokens)
}

// Gemini 2.x: 258 tokens for an image within 384x384; a larger one is cut into crop units of
// min side / 1.5 (256..768 px), 258 tokens each. No maximum size is documented, so a long narrow
// image costs many tiles and an image of unknown size has no bound.
const GEMINI_TILE = 258
export function cropTileImageTokens(size: ImageSize | undefined): number | undefined {
  if (!size) return undefined
  const w = size.width
  const h = size.height
  if (w <= 384 && h <= 384) return GEMINI_TILE
  const unit = Math.min(768, Math.max(256, Math.floor(Math.min(w, h) / 1.5)))
  return GEMINI_TILE * Math.ceil(w / unit) * Math.ceil(h / unit)
}
