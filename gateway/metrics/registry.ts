// A small Prometheus registry: counters, gauges and histograms with fixed label names, rendered in the text format.

type Labels = readonly string[]

interface Metric {
  render(out: string[]): void
}

function labelText(names: Labels, values: Labels, extra = ''): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`)
  if (extra) parts.push(extra)
  return parts.length === 0 ? '' : `{${parts.join(',')}}`
}

export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

// Values by the joined label values: one Map lookup per observation.
const SEP = '\u0001'

export class Counter implements Metric {
  private readonly values = new Map<string, { labels: Labels; value: number }>()

  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly labelNames: Labels = [],
  ) {}

  inc(labels: Labels = [], by = 1): void {
    const key = labels.join(SEP)
    const v = this.values.get(key)
    if (v) v.value += by
    else this.values.set(key, { labels: [...labels], value: by })
  }

  get(labels: Labels = []): number {
    return this.values.get(labels.join(SEP))?.value ?? 0
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`)
    for (const { labels, value } of this.values.values()) out.push(`${this.name}${labelText(this.labelNames, labels)} ${value}`)
  }
}

// A gauge read when rendered: the value lives with its owner (open streams, buffered records).
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly read: () => number,
  ) {}

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, `${this.name} ${this.read()}`)
  }
}

// A counter read when rendered, one series per value of one label: the counts live with their
// owner (budget settles that booked nothing, by reason).
export class CounterOf implements Metric {
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly labelName: string,
    private readonly read: () => Readonly<Record<string, number>>,
  ) {}

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`)
    for (const [value, n] of Object.entries(this.read())) out.push(`${this.name}${labelText([this.labelName], [value])} ${n}`)
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>()

  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly labelNames: Labels,
    // Upper bounds, ascending; +Inf is implied.
    private readonly buckets: readonly number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = labels.join(SEP)
    let s = this.series.get(key)
    if (!s) {
      s = { labels: [...labels], counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 }
      this.series.set(key, s)
    }
    // Counts per bucket are not cumulative here; render adds them up.
    let i = 0
    while (i < this.buckets.length && value > (this.buckets[i] ?? Infinity)) i++
    if (i < this.buckets.length) s.counts[i] = (s.counts[i] ?? 0) + 1
    s.sum += value
    s.count++
  }

  count(labels: Labels): number {
    return this.series.get(labels.join(SEP))?.count ?? 0
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`)
    for (const s of this.series.values()) {
      let cumulative = 0
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i] ?? 0
        out.push(`${this.name}_bucket${labelText(this.labelNames, s.labels, `le="${le}"`)} ${cumulative}`)
      })
      out.push(`${this.name}_bucket${labelText(this.labelNames, s.labels, 'le="+Inf"')} ${s.count}`)
      out.push(`${this.name}_sum${labelText(this.labelNames, s.labels)} ${s.sum}`)
      out.push(`${this.name}_count${labelText(this.labelNames, s.labels)} ${s.count}`)
    }
  }
}

export class Registry {
  private readonly metrics: Metric[] = []

  register<M extends Metric>(m: M): M {
    this.metrics.push(m)
    return m
  }

  render(): string[] {
    const out: string[] = []
    for (const m of this.metrics) m.render(out)
    return out
  }
}
