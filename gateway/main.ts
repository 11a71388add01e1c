// Gateway process: the gateway alone (usage to the Redis stream, or only to the log without Redis); started as its own supervisor when it needs workers or more upstream concurrency than its environment gives (see supervisor.ts).
import { runGateway } from './server.ts'
import { launch } from './supervisor.ts'
import { stopWithNpm } from '../shared/parent-watch.ts'

// npm exits on SIGTERM without passing it on: stop with it.
stopWithNpm()

await launch(import.meta.path, () => runGateway())
