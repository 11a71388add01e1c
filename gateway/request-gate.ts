// How many requests the process holds at once: past the cap a request is refused at once (503) instead of queuing behind sockets and file descriptors it cannot have.
export class RequestGate {
  inFlight = 0
  // Requests refused for being one too many (for /metrics).
  refused = 0

  constructor(private readonly capOf: () => number) {}

  // True when admitted; the caller must leave() exactly once after.
  enter(): boolean {
    if (this.inFlight >= this.capOf()) {
      this.refused++
      return false
    }
    this.inFlight++
    return true
  }

  leave(): void {
    this.inFlight--
  }
}
