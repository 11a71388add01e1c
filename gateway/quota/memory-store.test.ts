// The quota store contract against the in-process memory store.
import { MemoryQuotaStore } from './memory-store.ts'
import { describeQuotaStore } from './store.contract.ts'

let n = 0
describeQuotaStore('memory', async () => ({ store: new MemoryQuotaStore(), entity: () => `e${++n}` }))
