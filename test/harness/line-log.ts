// A child process's stdout as lines: kept in order, and awaitable by predicate (past or future lines).
export class LineLog {
  // Every line so far; a caller may empty it (length = 0) between phases.
  readonly lines: string[] = []
  private waiters: Array<{ predicate: (line: string) => boolean; resolve: (line: string) => void }> = []

  constructor(stream: ReadableStream<Uint8Array>) {
    void this.pump(stream)
  }

  waitFor(predicate: (line: string) => boolean): Promise<string> {
    const seen = this.lines.find(predicate)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve) => this.waiters.push({ predicate, resolve }))
  }

  private add(line: string): void {
    this.lines.push(line)
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]
      if (w?.predicate(line)) {
        this.waiters.splice(i, 1)
        w.resolve(line)
      }
    }
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder()
    let buf = ''
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true })
      let nl = buf.indexOf('\n')
      while (nl !== -1) {
        this.add(buf.slice(0, nl))
        buf = buf.slice(nl + 1)
        nl = buf.indexOf('\n')
      }
    }
  }
}

// A predicate over JSON lines; lines that are not JSON never match.
export function jsonLine(predicate: (line: Record<string, unknown>) => boolean): (line: string) => boolean {
  return (line) => {
    try {
      return predicate(JSON.parse(line) as Record<string, unknown>)
    } catch {
      return false
    }
  }
}
