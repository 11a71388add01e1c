// The one incremental SSE parser for every provider: CR, LF and CRLF line ends, comments, multi-line data.
//
// It works on bytes so an event can be forwarded exactly as it arrived (`raw`), and hands out
// the decoded fields for the callers that need them.
import { concatBytes } from '../../shared/bytes.ts'

export interface SseEvent {
  // The event's bytes as received, terminating blank line included.
  raw: Uint8Array
  // `data` lines joined by "\n"; undefined when the event had none (comments only).
  data: string | undefined
  event: string | undefined
  id: string | undefined
}

const LF = 0x0a
const CR = 0x0d
const decoder = new TextDecoder()

export class SseParser {
  private pending: Uint8Array = new Uint8Array(0)

  // Complete events in this chunk (plus what was pending); an incomplete tail waits for more.
  push(chunk: Uint8Array): SseEvent[] {
    return this.scan(chunk, false)
  }

  // At end of stream the last event is taken even without its blank line (some servers, and
  // recordings, end right after the final data line): a stream's last event is often its most
  // important one (message_stop, the usage chunk).
  end(): SseEvent[] {
    const events = this.scan(new Uint8Array(0), true)
    const tail = this.pending
    if (tail.length > 0) {
      // Close the open line if needed, then add the blank line; after a CR another CR, since an
      // LF there would merge into one CRLF line end.
      const last = tail[tail.length - 1]
      const ending = last === LF ? [LF] : last === CR ? [CR] : [LF, LF]
      events.push(...this.scan(new Uint8Array(ending), true))
    }
    this.pending = new Uint8Array(0)
    return events
  }

  private scan(chunk: Uint8Array, final: boolean): SseEvent[] {
    const buf = this.pending.length === 0 ? chunk : concatBytes([this.pending, chunk])
    const events: SseEvent[] = []
    let eventStart = 0
    let lineStart = 0
    let lines: Array<[number, number]> = []
    const n = buf.length
    let i = 0
    while (i < n) {
      const c = buf[i]
      if (c !== LF && c !== CR) {
        i++
        continue
      }
      let next = i + 1
      if (c === CR) {
        // A CR that ends the chunk may be the first half of CRLF: wait for the next byte.
        if (next === n && !final) break
        if (buf[next] === LF) next++
      }
      if (i === lineStart) {
        // A blank line ends the event; a stray one is still an event so passthrough stays byte-exact.
        events.push(toEvent(buf, eventStart, next, lines))
        eventStart = next
        lines = []
      } else {
        lines.push([lineStart, i])
      }
      lineStart = next
      i = next
    }
    this.pending = eventStart === n ? new Uint8Array(0) : buf.slice(eventStart)
    return events
  }

  // Bytes received but not yet part of a complete event (the spec discards them at end of stream).
  get bufferedBytes(): number {
    return this.pending.length
  }
}

function toEvent(buf: Uint8Array, start: number, end: number, lines: Array<[number, number]>): SseEvent {
  let data: string | undefined
  let event: string | undefined
  let id: string | undefined
  for (const [s, e] of lines) {
    if (buf[s] === 0x3a) continue // ':' starts a comment
    const line = decoder.decode(buf.subarray(s, e))
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') data = data === undefined ? value : `${data}\n${value}`
    else if (field === 'event') event = value
    else if (field === 'id') id = value
  }
  return { raw: buf.subarray(start, end), data, event, id }
}
