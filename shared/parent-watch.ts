// A process npm started (npm start, npm run demo, npm run analytics, ...) stops when npm is gone: npm exits on SIGTERM without passing it on, which would leave the process, and its ports, behind.
export function stopWithNpm(env: NodeJS.ProcessEnv = process.env, everyMs = 500): void {
  if (!env.npm_lifecycle_event) return
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent) return
    clearInterval(timer)
    // The process's own SIGTERM handling: drain, record, stop its children.
    process.kill(process.pid, 'SIGTERM')
  }, everyMs)
  timer.unref()
}
