// A throwaway self-signed certificate (made by openssl) for TLS tests: it is its own CA, so a client trusts it by trusting the file.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCertificate {
  // The certificate, PEM: also the CA file a client trusts (NODE_EXTRA_CA_CERTS, redis-cli --cacert).
  certFile: string
  keyFile: string
  remove(): void
}

// altNames as openssl writes them: 'DNS:localhost', 'IP:127.0.0.1'.
export async function makeTestCertificate(altNames: readonly string[] = ['DNS:localhost', 'IP:127.0.0.1']): Promise<TestCertificate> {
  const dir = mkdtempSync(join(tmpdir(), 'tls-test-'))
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  const cn = (altNames[0] ?? 'DNS:localhost').replace(/^\w+:/, '')
  const proc = Bun.spawn(
    ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${altNames.join(',')}`],
    { stdout: 'ignore', stderr: 'pipe' },
  )
  const err = await new Response(proc.stderr).text()
  if ((await proc.exited) !== 0) throw new Error(`openssl could not make a certificate: ${err}`)
  return { certFile, keyFile, remove: () => rmSync(dir, { recursive: true, force: true }) }
}
