// The one incremental SSE parser for every provider: CR, LF and CRLF line ends, comments, multi-line data.
//
// It works on bytes so an event can be forwarded exactly as it arrived (`raw`), and hands out
// the decoded fields for the callers that need them.
//
// Linear in the bytes received, whatever the chunking: each byte is searched past once for LF
// and once for CR, in the push that brought it, because what is known about an incomplete event
// (where its lines end, where the open line began, a CR that may be half of a CRLF) is kept
// between pushes and the next push resumes at its own first byte instead of rescanning. The
// incomplete event's bytes wait in one buffer that doubles when full, so holding a chunk costs
// amortized O(chunk), and they are copied once more only when the event completes. An upstream
// that never ends its line (a proxy gone wrong, a stream of NULs) is stopped by the size cap,
// not by memory running out.

export interface SseEvent {
  // The event's bytes as received, terminating blank line included.
  raw: Uint8Array
  // `data` lines joined by "\n"; undefined when the event had none (comments only).
  data: string | undefined
  event: string | undefined
  id: string | undefined
}

export interface SseParserOptions {
  // Largest event accepted, terminating blank line included; also the most the parser holds.
  maxEventBytes?: number
}

// Far above any real chunk (the largest in the recorded fixtures is under 2 KB), far below what
// would hurt the process if every open stream held it.
export const DEFAULT_MAX_EVENT_BYTES = 1024 * 1024

// The stream broke its framing: the parser holds nothing more and refuses further input.
export class SseEventTooLarge extends Error {
  override readonly name = 'SseEventTooLarge'
  constructor(readonly limit: number) {
    super(`an SSE event exceeded ${limit} bytes`)
  }
}

const LF = 0x0a
const CR = 0x0d
const COLON = 0x3a
const EMPTY = new Uint8Array(0)
const decoder = new TextDecoder()

export class SseParser {
  private readonly maxEventBytes: number
  // The incomplete event's bytes from earlier pushes: the first `held` bytes of `buf`.
  private buf: Uint8Array = EMPTY
  private held = 0
  // Offsets within the incomplete event: its finished lines as [start, end) pairs (terminators
  // excluded), and where its open line starts.
  private lines: number[] = []
  private lineStart = 0
  // The held bytes end with a CR that ends a line: an LF opening the next chunk is the rest of
  // that line end, not a blank line of its own.
  private crHeld = false
  private failure: SseEventTooLarge | undefined

  constructor(opts: SseParserOptions = {}) {
    const max = opts.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`maxEventBytes must be a positive integer, got ${max}`)
    this.maxEventBytes = max
  }

  // Complete events in this chunk (plus what was held); an incomplete tail waits for more.
  // Throws SseEventTooLarge when an event, complete or not, grows past the cap; events earlier
  // in the same chunk are then lost with the stream.
  push(chunk: Uint8Array): SseEvent[] {
    if (this.failure) throw this.failure
    const events: SseEvent[] = []
    const n = chunk.length
    // The event being read starts at chunk index `start` after `base` bytes held from earlier
    // pushes (one of the two is 0), so chunk index i is at offset `base + i - start` within it.
    let base = this.held
    let start = 0
    let lines = this.lines
    let lineStart = this.lineStart
    // A held CR stands at chunk index -1.
    let heldCr = this.crHeld && n > 0
    if (heldCr) this.crHeld = false
    let i = 0
    // Where the next LF and CR are, each searched for again only once passed: the native search
    // is several times faster than a loop over the bytes, and most chunks have no CR at all.
    let lf = chunk.indexOf(LF)
    let cr = chunk.indexOf(CR)
    for (;;) {
      let at: number
      let next: number
      if (heldCr) {
        heldCr = false
        at = -1
        next = chunk[0] === LF ? 1 : 0
      } else {
        if (lf !== -1 && lf < i) lf = chunk.indexOf(LF, i)
        if (cr !== -1 && cr < i) cr = chunk.indexOf(CR, i)
        i = lf === -1 ? (cr === -1 ? n : cr) : cr === -1 ? lf : Math.min(lf, cr)
        if (i === n) break
        at = i
        next = i + 1
        if (chunk[i] === CR) {
          // A CR that ends the chunk may be the first half of CRLF: the next push decides.
          if (next === n) {
            this.crHeld = true
            break
          }
          if (chunk[next] === LF) next++
        }
      }
      const offset = base + at - start
      if (offset === lineStart) {
        // A blank line ends the event; a stray one is still an event so passthrough stays byte-exact.
        if (base + next - start > this.maxEventBytes) throw this.fail()
        const raw = base === 0 ? chunk.subarray(start, next) : this.take(chunk.subarray(0, next))
        events.push(toEvent(raw, lines))
        base = 0
        start = next
        lines = []
        lineStart = 0
      } else {
        lines.push(lineStart, offset)
        lineStart = base + next - start
      }
      i = next
    }
    if (start < n) this.hold(chunk.subarray(start))
    this.lines = lines
    this.lineStart = lineStart
    return events
  }

  // At end of stream the last event is taken even without its blank line (some servers, and
  // recordings, end right after the final data line): a stream's last event is often its most
  // important one (message_stop, the usage chunk).
  end(): SseEvent[] {
    if (this.failure) throw this.failure
    if (this.held === 0) return []
    const lines = this.lines
    const last = this.held - 1
    // Close the open line if needed, then add the blank line; after a CR another CR, since an
    // LF there would merge into one CRLF line end. The added bytes are not counted against the cap.
    let ending: readonly number[]
    if (this.crHeld && last === this.lineStart) ending = []
    else if (this.crHeld) {
      lines.push(this.lineStart, last)
      ending = [CR]
    } else if (this.lineStart < this.held) {
      lines.push(this.lineStart, this.held)
      ending = [LF, LF]
    } else ending = [LF]
    const raw = this.take(new Uint8Array(ending))
    this.lines = []
    this.lineStart = 0
    this.crHeld = false
    return [toEvent(raw, lines)]
  }

  // Bytes received but not yet part of a complete event (the spec discards them at end of stream).
  get bufferedBytes(): number {
    return this.held
  }

  // Copies the chunk's tail: the caller may reuse its buffer once push returns.
  private hold(bytes: Uint8Array): void {
    const size = this.held + bytes.length
    if (size > this.maxEventBytes) throw this.fail()
    if (size > this.buf.length) {
      const grown = new Uint8Array(Math.min(this.maxEventBytes, Math.max(size, 2 * this.buf.length)))
      grown.set(this.buf.subarray(0, this.held))
      this.buf = grown
    }
    this.buf.set(bytes, this.held)
    this.held = size
  }

  // The held bytes plus the tail that completes them, as one array the event then owns.
  private take(tail: Uint8Array): Uint8Array {
    const size = this.held + tail.length
    let out = this.buf
    if (size > out.length) {
      // Sized exactly: nothing will be appended to it again.
      out = new Uint8Array(size)
      out.set(this.buf.subarray(0, this.held))
    }
    out.set(tail, this.held)
    this.buf = EMPTY
    this.held = 0
    return out.subarray(0, size)
  }

  private fail(): SseEventTooLarge {
    this.failure = new SseEventTooLarge(this.maxEventBytes)
    this.buf = EMPTY
    this.held = 0
    this.lines = []
    return this.failure
  }
}

function toEvent(raw: Uint8Array, lines: readonly number[]): SseEvent {
  let data: string | undefined
  let event: string | undefined
  let id: string | undefined
  for (let k = 0; k < lines.length; k += 2) {
    const s = lines[k] ?? 0
    const e = lines[k + 1] ?? 0
    if (raw[s] === COLON) continue // ':' starts a comment
    const line = decoder.decode(raw.subarray(s, e))
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') data = data === undefined ? value : `${data}\n${value}`
    else if (field === 'event') event = value
    else if (field === 'id') id = value
  }
  return { raw, data, event, id }
}

// The data of each event in SSE text a translator wrote, as a client reads it: events end at an
// empty line (after \n, \r\n or \r), an event's data lines are one payload joined by newlines;
// events without data (comments, keep-alives) are left out.
export function eventPayloads(text: string): string[] {
  const out: string[] = []
  let data: string[] | undefined
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === '') {
      if (data) out.push(data.join('\n').trim())
      data = undefined
    } else if (line.startsWith('data:')) (data ??= []).push(line.slice(line.startsWith('data: ') ? 6 : 5))
  }
  if (data) out.push(data.join('\n').trim())
  return out.filter((d) => d !== '')
}
