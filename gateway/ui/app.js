// The admin console: keys, budgets, spend and the request log, over the gateway's admin API. The token stays in this tab's sessionStorage; every value shown goes in as text, never as HTML.
const TOKEN = 'gateway-admin-token'
const $ = (sel) => document.querySelector(sel)

function token() {
  return sessionStorage.getItem(TOKEN)
}

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  const data = await res.json().catch(() => ({}))
  if (res.status === 401) {
    logout()
    throw new Error('The admin token was refused.')
  }
  if (!res.ok) throw new Error(data?.error?.message ?? `HTTP ${res.status}`)
  return data
}

function cell(row, value, cls) {
  const td = document.createElement('td')
  td.textContent = value === null || value === undefined ? '—' : String(value)
  if (cls) td.className = cls
  row.append(td)
  return td
}

function button(label, onClick, quiet = true) {
  const b = document.createElement('button')
  b.type = 'button'
  b.textContent = label
  if (quiet) b.className = 'quiet'
  b.addEventListener('click', onClick)
  return b
}

function fail(where, err) {
  $(where).textContent = err instanceof Error ? err.message : String(err)
}

// Login and tabs.
function show(tab) {
  for (const s of document.querySelectorAll('section.tab')) s.hidden = s.id !== tab
  for (const b of document.querySelectorAll('#tabs button[data-tab]')) b.classList.toggle('active', b.dataset.tab === tab)
  ;({ keys: loadKeys, budgets: loadBudgets, spend: loadSpend, requests: loadRequests })[tab]?.()
}

function logout() {
  sessionStorage.removeItem(TOKEN)
  $('#tabs').hidden = true
  for (const s of document.querySelectorAll('section.tab')) s.hidden = true
  $('#login').hidden = false
}

async function login(value) {
  sessionStorage.setItem(TOKEN, value)
  try {
    await api('GET', '/admin/keys')
  } catch (err) {
    sessionStorage.removeItem(TOKEN)
    fail('#login-error', err)
    return
  }
  $('#login-error').textContent = ''
  $('#login').hidden = true
  $('#tabs').hidden = false
  show('keys')
}

$('#login-form').addEventListener('submit', (e) => {
  e.preventDefault()
  void login($('#token').value)
})
$('#logout').addEventListener('click', logout)
for (const b of document.querySelectorAll('#tabs button[data-tab]')) b.addEventListener('click', () => show(b.dataset.tab))

// Keys.
async function loadKeys() {
  try {
    const { data } = await api('GET', '/admin/keys')
    const body = $('#keys-table tbody')
    body.replaceChildren()
    for (const k of data) {
      const row = document.createElement('tr')
      row.dataset.keyId = k.key_id
      cell(row, `${k.prefix}… (${k.key_id})`)
      cell(row, k.client_id)
      cell(row, k.team_id)
      cell(row, k.name)
      cell(row, k.status, `status-${k.status}`)
      cell(row, k.rpm_limit)
      cell(row, k.tpm_limit)
      cell(row, k.last_used_at)
      const actions = cell(row, '')
      if (k.status !== 'revoked') {
        actions.append(
          button('Rotate', async () => {
            const grace = prompt('Grace period for the old key, in seconds', '3600')
            if (grace === null) return
            await act(async () => showSecret((await api('POST', `/admin/keys/${k.key_id}/rotate`, { grace_seconds: Number(grace) })).key))
          }),
          button('Limits', async () => {
            const rpm = prompt('Requests per minute (empty: none)', k.rpm_limit ?? '')
            if (rpm === null) return
            const tpm = prompt('Tokens per minute (empty: none)', k.tpm_limit ?? '')
            if (tpm === null) return
            await act(() => api('PATCH', `/admin/keys/${k.key_id}`, { rpm_limit: rpm === '' ? null : Number(rpm), tpm_limit: tpm === '' ? null : Number(tpm) }))
          }),
          button('Revoke', async () => {
            if (confirm(`Revoke ${k.prefix}…? Every request with it is refused from now on.`)) await act(() => api('DELETE', `/admin/keys/${k.key_id}`))
          }),
        )
      }
      body.append(row)
    }
    $('#keys-error').textContent = ''
  } catch (err) {
    fail('#keys-error', err)
  }
}

async function act(fn) {
  try {
    await fn()
    await loadKeys()
  } catch (err) {
    fail('#keys-error', err)
  }
}

function showSecret(secret) {
  $('#secret').hidden = false
  $('#secret-value').textContent = secret
}

$('#copy-secret').addEventListener('click', async () => {
  await navigator.clipboard?.writeText($('#secret-value').textContent).catch(() => undefined)
  $('#copy-secret').textContent = 'Copied'
})

$('#key-form').addEventListener('submit', async (e) => {
  e.preventDefault()
  const f = new FormData(e.target)
  const body = { client_id: f.get('client_id') }
  for (const k of ['team_id', 'name']) if (f.get(k)) body[k] = f.get(k)
  for (const k of ['rpm_limit', 'tpm_limit']) if (f.get(k)) body[k] = Number(f.get(k))
  if (f.get('expires_at')) body.expires_at = new Date(f.get('expires_at')).toISOString()
  await act(async () => {
    showSecret((await api('POST', '/admin/keys', body)).key)
    e.target.reset()
  })
})

// Budgets: every budget line per entity, used and reserved now.
async function loadBudgets() {
  try {
    const { quotas } = await api('GET', '/admin/quotas')
    const body = $('#budgets-table tbody')
    body.replaceChildren()
    for (const q of quotas) {
      const row = document.createElement('tr')
      const usd = q.cost_limit_usd !== null
      const used = usd ? q.used_usd : q.used_tokens
      const limit = usd ? q.cost_limit_usd : q.token_limit
      cell(row, q.quota_id)
      cell(row, q.entity)
      cell(row, `${q.period} (${q.window})`)
      cell(row, usd ? `$${used.toFixed(4)}` : used)
      cell(row, usd ? `$${q.reserved_usd.toFixed(4)}` : q.reserved_tokens)
      cell(row, usd ? `$${limit}` : limit)
      const bar = document.createElement('div')
      bar.className = 'bar'
      const fill = document.createElement('span')
      fill.style.width = `${Math.min(100, limit > 0 ? (100 * used) / limit : 0)}%`
      bar.append(fill)
      cell(row, '').append(bar)
      body.append(row)
    }
  } catch (err) {
    $('#budgets-table tbody').replaceChildren()
    alert(err.message)
  }
}

// Spend: cost per day by a dimension, from the analytics worker's rollups.
const day = (offset) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10)
$('#spend-form').from.value = day(-13)
$('#spend-form').to.value = day(0)

async function loadSpend() {
  const f = $('#spend-form')
  try {
    const by = f.by.value
    const { rows } = await api('GET', `/admin/analytics/v1/costs?from=${f.from.value}&to=${f.to.value}&by=day,${by}`)
    drawChart(rows, by)
    const totals = new Map()
    for (const r of rows) {
      const t = totals.get(r[by]) ?? { requests: 0, input: 0, output: 0, usd: 0 }
      t.requests += Number(r.requests)
      t.input += Number(r.input_tokens)
      t.output += Number(r.output_tokens)
      t.usd += Number(r.cost_usd)
      totals.set(r[by], t)
    }
    const body = $('#spend-table tbody')
    body.replaceChildren()
    for (const [group, t] of totals) {
      const row = document.createElement('tr')
      cell(row, group)
      cell(row, t.requests)
      cell(row, t.input)
      cell(row, t.output)
      cell(row, `$${t.usd.toFixed(6)}`)
      body.append(row)
    }
    const hits = rows.reduce((n, r) => n + Number(r.cache_hits ?? 0), 0)
    const saved = rows.reduce((n, r) => n + Number(r.cache_saved_usd ?? 0), 0)
    $('#saved').textContent = hits > 0 ? `The response cache answered ${hits} requests, saving $${saved.toFixed(6)}.` : ''
    $('#spend-error').textContent = rows.length === 0 ? 'No spend in these days yet (rollups run every few minutes; "Roll up today first" makes today\'s now).' : ''
  } catch (err) {
    fail('#spend-error', err)
  }
}

const COLORS = ['#2457d6', '#d66b24', '#2a9d5c', '#9b3fc4', '#c43f5d', '#3fa7c4', '#8a6d00', '#555']

// A stacked bar per day, one color per group.
function drawChart(rows, by) {
  const svg = $('#chart')
  svg.replaceChildren()
  // Every day of the range, spent on or not.
  const f = $('#spend-form')
  const days = []
  for (let t = Date.parse(`${f.from.value}T00:00:00Z`); t <= Date.parse(`${f.to.value}T00:00:00Z`) && days.length < 400; t += 86_400_000) days.push(new Date(t).toISOString().slice(0, 10))
  const groups = [...new Set(rows.map((r) => r[by]))]
  const perDay = new Map(days.map((d) => [d, rows.filter((r) => r.day === d)]))
  const max = Math.max(1e-12, ...days.map((d) => perDay.get(d).reduce((n, r) => n + Number(r.cost_usd), 0)))
  const width = svg.clientWidth || 600
  const height = 240
  const ns = 'http://www.w3.org/2000/svg'
  const slot = width / Math.max(1, days.length)
  groups.forEach((g, i) => {
    const legend = document.createElementNS(ns, 'text')
    legend.setAttribute('x', String(8 + i * 140))
    legend.setAttribute('y', String(height + 14))
    legend.setAttribute('font-size', '11')
    legend.setAttribute('fill', COLORS[i % COLORS.length])
    legend.textContent = `■ ${g}`
    svg.append(legend)
  })
  days.forEach((d, i) => {
    let y = height
    for (const r of perDay.get(d)) {
      const h = (Number(r.cost_usd) / max) * (height - 30)
      const rect = document.createElementNS(ns, 'rect')
      rect.setAttribute('x', String(i * slot + slot * 0.15))
      rect.setAttribute('width', String(slot * 0.7))
      rect.setAttribute('y', String(y - h))
      rect.setAttribute('height', String(h))
      rect.setAttribute('fill', COLORS[groups.indexOf(r[by]) % COLORS.length])
      rect.setAttribute('data-group', String(r[by]))
      const title = document.createElementNS(ns, 'title')
      title.textContent = `${d} ${r[by]}: $${Number(r.cost_usd).toFixed(6)}`
      rect.append(title)
      svg.append(rect)
      y -= h
    }
    const label = document.createElementNS(ns, 'text')
    label.setAttribute('x', String(i * slot + slot / 2))
    label.setAttribute('y', '14')
    label.setAttribute('text-anchor', 'middle')
    label.setAttribute('font-size', '10')
    label.textContent = d.slice(5)
    svg.append(label)
  })
}

$('#spend-form').addEventListener('submit', (e) => {
  e.preventDefault()
  void loadSpend()
})
$('#refresh').addEventListener('click', async () => {
  try {
    await api('POST', `/admin/analytics/v1/rollups?from=${day(0)}&to=${day(0)}`)
    await loadSpend()
  } catch (err) {
    fail('#spend-error', err)
  }
})

// Requests: the request log.
async function loadRequests() {
  const f = $('#requests-form')
  const params = new URLSearchParams()
  for (const k of ['request_id', 'client', 'status']) if (f[k].value) params.set(k, f[k].value)
  try {
    const { rows } = await api('GET', `/admin/analytics/v1/requests?${params}`)
    const body = $('#requests-table tbody')
    body.replaceChildren()
    for (const r of rows) {
      const row = document.createElement('tr')
      cell(row, r.created_at)
      cell(row, r.request_id)
      cell(row, r.client_id)
      cell(row, r.model)
      cell(row, r.provider_id)
      cell(row, r.error_code ? `${r.status} (${r.error_code})` : r.status, r.status === 'error' ? 'status-revoked' : '')
      cell(row, `${r.input_tokens} / ${r.output_tokens}`)
      cell(row, `$${(Number(r.cost_pico) / 1e12).toFixed(6)}`)
      body.append(row)
    }
    $('#requests-error').textContent = rows.length === 0 ? 'No request found.' : ''
  } catch (err) {
    fail('#requests-error', err)
  }
}

$('#requests-form').addEventListener('submit', (e) => {
  e.preventDefault()
  void loadRequests()
})

if (token()) void login(token())
