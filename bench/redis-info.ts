// redis-server's own figures from INFO: commands run (those inside scripts included) and CPU used, to price what a bench sends it.
export interface RedisFigures {
  calls: number
  cpuUs: number
}

export async function redisFigures(info: () => Promise<string>): Promise<RedisFigures> {
  const text = await info()
  let calls = 0
  for (const m of text.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) calls += Number(m[1])
  const cpu = Number(/^used_cpu_user:([\d.]+)/m.exec(text)?.[1] ?? 0) + Number(/^used_cpu_sys:([\d.]+)/m.exec(text)?.[1] ?? 0)
  return { calls, cpuUs: cpu * 1e6 }
}
