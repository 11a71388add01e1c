import { describe, expect, it } from 'bun:test'
import { cropTileImageTokens, patch28ImageTokens, patchImageTokens, tileImageTokens } from './image-tokens.ts'

describe('OpenAI tiles', () => {
  it("follows OpenAI's worked examples", () => {
    // 1024 x 1024 high: 768 x 768, 4 tiles.
    expect(tileImageTokens({ width: 1024, height: 1024 }, 'high', 85, 170)).toBe(765)
    // 2048 x 4096: fit 1024 x 2048, then 768 x 1536: 2 x 3 tiles.
    expect(tileImageTokens({ width: 2048, height: 4096 }, 'high', 85, 170)).toBe(1105)
    // Small images are not scaled up: one tile.
    expect(tileImageTokens({ width: 128, height: 64 }, 'auto', 85, 170)).toBe(255)
  })

  it('charges the base alone at low detail, whatever the size', () => {
    expect(tileImageTokens({ width: 4000, height: 4000 }, 'low', 85, 170)).toBe(85)
    expect(tileImageTokens(undefined, 'low', 85, 170)).toBe(85)
  })

  it('assumes the most tiles the rule allows when the size is unknown', () => {
    expect(tileImageTokens(undefined, 'high', 85, 170)).toBe(85 + 8 * 170)
    for (const [w, h] of [[768, 2048], [3000, 9000], [100_000, 300]]) expect(tileImageTokens({ width: w as number, height: h as number }, 'high', 85, 170)).toBeLessThanOrEqual(85 + 8 * 170)
  })
})

describe('OpenAI patches', () => {
  it('counts 32 px patches up to 1536, times the multiplier', () => {
    expect(patchImageTokens({ width: 128, height: 64 }, 1.62)).toBe(Math.ceil(8 * 1.62))
    expect(patchImageTokens({ width: 4000, height: 1474 }, 1.62)).toBe(Math.ceil(1536 * 1.62))
    expect(patchImageTokens(undefined, 2.46)).toBe(Math.ceil(1536 * 2.46))
  })
})

describe('Anthropic 28 px patches', () => {
  it('counts patches or area / 750, whichever is more, after fitting the long edge, up to the model maximum', () => {
    expect(patch28ImageTokens({ width: 1000, height: 1000 }, 1568, 1600)).toBe(Math.ceil(1_000_000 / 750))
    expect(patch28ImageTokens({ width: 30, height: 30 }, 1568, 1600)).toBe(4)
    expect(patch28ImageTokens({ width: 8000, height: 8000 }, 1568, 1600)).toBe(1600)
    expect(patch28ImageTokens(undefined, 2576, 4784)).toBe(4784)
  })
})

describe('Gemini crop tiles', () => {
  it('charges 258 for a small image and 258 a crop unit above', () => {
    expect(cropTileImageTokens({ width: 384, height: 384 })).toBe(258)
    // 1000 x 800: unit 533, 2 x 2.
    expect(cropTileImageTokens({ width: 1000, height: 800 })).toBe(4 * 258)
  })

  it('has no bound without the size', () => {
    expect(cropTileImageTokens(undefined)).toBeUndefined()
  })
})
