// Gateway process: the gateway alone (usage to the Redis stream, or only to the log without Redis).
import { runGateway } from './server.ts'

await runGateway()
