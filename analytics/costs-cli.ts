// npm run costs -- --team platform --model demo-model --from 2026-11-26 --to 2026-11-26 --by model,day: cost, tokens and requests from the worker's API.
import { parseArgs } from 'node:util'

const HELP = `usage: npm run costs -- [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--client ID] [--team ID]
                        [--provider ID] [--model NAME] [--key KEY_ID] [--by client,team,provider,model,key,day]
                        [--refresh] [--json] [--url http://127.0.0.1:8081]
  --from/--to   inclusive UTC days (default: today, rolled up first so its records are in)
  --by          group by these (default: one total row)
  --refresh     recompute the rollups of those days first (they are otherwise refreshed every few minutes)
  ANALYTICS_URL and ADMIN_TOKEN are read from the environment when set.`

interface Row {
  [key: string]: string | number | undefined
}

async function main(): Promise<number> {
  let values
  try {
    ;({ values } = parseArgs({
      options: {
        from: { type: 'string' },
        to: { type: 'string' },
        client: { type: 'string' },
        team: { type: 'string' },
        provider: { type: 'string' },
        model: { type: 'string' },
        key: { type: 'string' },
        by: { type: 'string' },
        refresh: { type: 'boolean' },
        json: { type: 'boolean' },
        url: { type: 'string' },
        help: { type: 'boolean' },
      },
    }))
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${HELP}\n`)
    return 2
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`)
    return 0
  }
  const today = new Date().toISOString().slice(0, 10)
  const from = values.from ?? values.to ?? today
  const to = values.to ?? from
  const base = values.url ?? process.env.ANALYTICS_URL ?? 'http://127.0.0.1:8081'
  const headers: Record<string, string> = process.env.ADMIN_TOKEN ? { authorization: `Bearer ${process.env.ADMIN_TOKEN}` } : {}
  // Today is still being written: it is rolled up first, so its records are in (the other days
  // were rolled up by the worker's schedule; --refresh recomputes them all).
  if (!values.refresh && from <= today && today <= to) {
    const res = await fetch(`${base}/v1/rollups?${new URLSearchParams({ from: today, to: today })}`, { method: 'POST', headers })
    if (!res.ok) return fail(res)
  }
  if (values.refresh) {
    const res = await fetch(`${base}/v1/rollups?${new URLSearchParams({ from, to })}`, { method: 'POST', headers })
    if (!res.ok) return fail(res)
  }
  const params = new URLSearchParams({ from, to, by: values.by ?? '' })
  for (const f of ['client', 'team', 'provider', 'model', 'key'] as const) {
    const v = values[f]
    if (v !== undefined) params.set(f, v)
  }
  const res = await fetch(`${base}/v1/costs?${params}`, { headers })
  if (!res.ok) return fail(res)
  const { rows } = (await res.json()) as { rows: Row[] }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    return 0
  }
  const dims = (values.by ?? '').split(',').filter(Boolean)
  // What the response cache saved shows when it saved anything.
  const cached = rows.some((r) => Number(r.cache_hits ?? 0) > 0)
  const columns = [...dims, 'requests', 'errors', 'fallbacks', 'input_tokens', 'output_tokens', 'cost_usd', ...(cached ? ['cache_hits', 'cache_saved_usd'] : [])]
  const table = [columns, ...rows.map((r) => columns.map((c) => String(r[c] ?? '')))]
  const widths = columns.map((_, i) => Math.max(...table.map((line) => (line[i] ?? '').length)))
  const render = (line: string[]) => line.map((cell, i) => (i < dims.length ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ')
  process.stdout.write(`${from === to ? from : `${from} to ${to}`} (UTC)\n${[render(columns), ...table.slice(1).map(render)].join('\n')}\n`)
  if (rows.length === 0) process.stdout.write(`(no usage between ${from} and ${to}${values.refresh ? '' : '; --refresh recomputes the rollups first'})\n`)
  return 0
}

async function fail(res: Response): Promise<number> {
  const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } }
  process.stderr.write(`costs: ${res.status} ${body.error?.message ?? res.statusText}\n`)
  return 1
}

process.exit(await main().catch((err: unknown) => {
  process.stderr.write(`costs: ${(err as Error).message} (is the analytics worker running?)\n`)
  return 1
}))
