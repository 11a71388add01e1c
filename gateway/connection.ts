// What a request does with its socket: a deadline while its body arrives, no idle timeout while the gateway works on it, the server's idle timeout again once answered.
export interface Connection {
  // The body must have arrived within ms (the socket is closed a little after, should our own
  // 408 not have gone out first).
  bodyDeadline(ms: number): void
  // Accepted: the provider's deadlines bound the request from here, not the idle timeout (which
  // would cut a caller waiting on a slow answer or a quiet stream).
  hold(): void
  // Answered: between requests the socket idles under the server's timeout again.
  release(): void
}

export const NO_CONNECTION: Connection = { bodyDeadline() {}, hold() {}, release() {} }

// Bun keeps a timeout set for a request on its socket after the answer, so release() sets the
// idle timeout back explicitly.
export function bunConnection(server: { timeout(request: Request, seconds: number): void } | null | undefined, request: Request, idleSeconds: number): Connection {
  if (!server) return NO_CONNECTION
  const set = (seconds: number) => {
    try {
      server.timeout(request, seconds)
    } catch {
      // The request already ended (its socket closed): nothing to set.
    }
  }
  return {
    // Bun takes whole seconds up to 255; our own timer answers first.
    bodyDeadline: (ms) => set(Math.min(255, Math.ceil(ms / 1000) + 2)),
    hold: () => set(0),
    release: () => set(idleSeconds),
  }
}

// Half the process's open-file limit less a reserve: each request in progress holds the caller's
// socket and one to the provider. Linux only; elsewhere a fixed figure.
export function defaultRequestCap(limitsText: () => string): number {
  try {
    const soft = /^Max open files\s+(\d+)/m.exec(limitsText())?.[1]
    if (soft) return Math.max(16, Math.floor((Number(soft) - 64) / 2))
  } catch {
    // No /proc: fall through.
  }
  return 4096
}
