// Prints the sha256 to put in config for a virtual key: npm run hash-key -- <key>
import { hashKey } from '../gateway/auth.ts'

const key = process.argv[2]
if (!key) {
  process.stderr.write('usage: npm run hash-key -- <virtual key>\n')
  process.exit(2)
}
process.stdout.write(`${hashKey(key)}\n`)
