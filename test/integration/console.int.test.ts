// The admin console in a real browser (Debian's chromium, headless, driven by puppeteer-core): log in, create a key, see it listed, revoke it, see spend from an analytics worker fed by real traffic, find a request in the log. Screenshots go to test/artifacts/.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import OpenAI from 'openai'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, testConfig, type GatewayProcess } from '../harness/gateway-process.ts'

const ADMIN = 'console-admin-token-1'
const ARTIFACTS = join(import.meta.dir, '..', 'artifacts')
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

let emulator: Emulator
let gw: GatewayProcess
let browser: Browser
let page: Page
let dir: string

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  dir = mkdtempSync(join(tmpdir(), 'console-'))
  emulator = startEmulator()
  emulator.setBehavior('*', { reply: 'Hello from the console test.' })
  gw = await startGateway({ config: testConfig({ upstreamBaseUrl: emulator.baseUrl }), entry: 'start', env: { ADMIN_TOKEN: ADMIN, ANALYTICS_DATA_DIR: join(dir, 'ch'), ANALYTICS_PORT: '0', ANALYTICS_FLUSH_MS: '20', GATEWAY_DATA_DIR: join(dir, 'data') } })
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  page = await browser.newPage()
  // A loaded 2-core machine runs chromium slowly: waits get the tests' own time.
  page.setDefaultTimeout(25_000)
  await page.setViewport({ width: 1200, height: 900 })
  // Confirm and prompt dialogs (revoke, rotate) are answered yes / with their default.
  page.on('dialog', (d) => void d.accept(d.defaultValue()))
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await gw?.stop()
  await emulator?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const rowsOf = (selector: string) => page.$$eval(`${selector} tbody tr`, (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? ''))) as Promise<string[][]>

describe('the admin console', () => {
  it('refuses a wrong token and logs in with the right one', async () => {
    await page.goto(`${gw.url}/ui`)
    await page.type('#token', 'not-the-token')
    await page.click('#login-form button')
    await page.waitForFunction("(document.querySelector('#login-error')?.textContent ?? '') !== ''")
    expect(await page.$eval('#login-error', (e) => e.textContent)).toContain('refused')
    await page.$eval('#token', (e) => ((e as unknown as { value: string }).value = ''))
    await page.type('#token', ADMIN)
    await page.click('#login-form button')
    await page.waitForSelector('#keys:not([hidden])')
    await page.screenshot({ path: join(ARTIFACTS, 'console-keys-empty.png') })
  }, 30_000)

  it('creates a key, shows its secret once, lists it, and revokes it', async () => {
    await page.click('#new-key summary')
    await page.type('#key-form input[name=client_id]', 'browser-client')
    await page.type('#key-form input[name=team_id]', 'browser-team')
    await page.type('#key-form input[name=name]', 'made in the console')
    await page.type('#key-form input[name=rpm_limit]', '100')
    await page.click('#key-form button')
    await page.waitForSelector('#secret:not([hidden])')
    const secret = await page.$eval('#secret-value', (e) => e.textContent ?? '')
    expect(secret).toStartWith('sk-gw-')
    await page.waitForFunction("document.querySelectorAll('#keys-table tbody tr').length === 1")
    const [row] = await rowsOf('#keys-table')
    expect(row?.slice(1, 5)).toEqual(['browser-client', 'browser-team', 'made in the console', 'active'])
    // The list never shows the secret.
    expect(await page.$eval('#keys-table', (e) => e.textContent ?? '')).not.toContain(secret)
    // The key works, and its traffic feeds the analytics worker.
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: secret, maxRetries: 0 })
    for (let i = 0; i < 3; i++) await client.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: `hello ${i}` }] })
    await page.screenshot({ path: join(ARTIFACTS, 'console-keys.png') })
    await page.click('#keys-table tbody tr button:last-child')
    await page.waitForFunction("document.querySelector('#keys-table tbody tr td.status-revoked') !== null")
    const refused = await client.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'again' }] }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError)
    // Both changes are audit events in ClickHouse too (the gateway sends them to its worker).
    const keyId = row?.[0]?.match(/\((key_[0-9a-f]+)\)/)?.[1] ?? ''
    const deadline = Date.now() + 10_000
    let actions: string[] = []
    while (actions.length < 2) {
      if (Date.now() > deadline) throw new Error(`audit events in ClickHouse: ${actions.join(', ')}`)
      const res = await fetch(`${gw.url}/admin/analytics/v1/audit?key_id=${keyId}`, { headers: { authorization: `Bearer ${ADMIN}` } })
      actions = ((await res.json()) as { rows: Array<{ action: string; actor: string }> }).rows.map((r) => r.action).sort()
    }
    expect(actions).toEqual(['key.create', 'key.revoke'])
  }, 30_000)

  it('charts the spend of that traffic, and finds its requests in the log', async () => {
    await gw.waitForLog((l) => l.msg === 'request' && l.client_id === 'browser-client')
    await page.click('#tabs button[data-tab=spend]')
    await page.select('#spend-form select[name=by]', 'team')
    // Today's rollup on demand, then the chart; the worker takes the records as they come.
    const deadline = Date.now() + 20_000
    while ((await page.$$('#chart rect[data-group=browser-team]')).length === 0) {
      if (Date.now() > deadline) throw new Error('no spend bar for browser-team')
      await page.click('#refresh')
      await page.waitForNetworkIdle({ idleTime: 100 })
    }
    const totals = await rowsOf('#spend-table')
    expect(totals.find((r) => r[0] === 'browser-team')?.[1]).toBe('3')
    // Per key: the runtime key the traffic was made with.
    const keyId = (await gw.waitForLog((l) => l.msg === 'request' && l.client_id === 'browser-client')).key_id as string
    expect(keyId).toStartWith('key_')
    await page.select('#spend-form select[name=by]', 'key')
    await page.click('#spend-form button[type=submit]')
    await page.waitForSelector(`#chart rect[data-group="${keyId}"]`)
    await page.screenshot({ path: join(ARTIFACTS, 'console-spend.png') })
    await page.click('#tabs button[data-tab=requests]')
    await page.type('#requests-form input[name=client]', 'browser-client')
    await page.click('#requests-form button')
    await page.waitForFunction("document.querySelectorAll('#requests-table tbody tr').length >= 3")
    expect((await rowsOf('#requests-table')).every((r) => r[2] === 'browser-client' && r[5] === 'success')).toBe(true)
    await page.screenshot({ path: join(ARTIFACTS, 'console-requests.png') })
  }, 60_000)

  it('shows budgets, and fits a phone screen', async () => {
    await page.click('#tabs button[data-tab=budgets]')
    await page.waitForSelector('#budgets:not([hidden])')
    await page.setViewport({ width: 390, height: 844 })
    await page.click('#tabs button[data-tab=keys]')
    // Nothing wider than the screen but the tables' own scrolling boxes.
    const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number
    expect(overflow).toBeLessThanOrEqual(0)
    await page.screenshot({ path: join(ARTIFACTS, 'console-phone.png') })
  }, 30_000)
})
