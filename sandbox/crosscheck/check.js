// Fidelity cross-check: the official FreshBooks Node SDK (@freshbooks/api) against the sandbox.
// Usage: node check.js <sandbox base url>  (sandbox/crosscheck/run starts one for you)
// Prints what the SDK got back; never prints tokens or the client secret.
'use strict'
const http = require('http')

const base = process.argv[2] || process.env.FB_SANDBOX_URL
const clientId = process.env.FB_CLIENT_ID || 'sandbox-client-id'
const clientSecret = process.env.FB_CLIENT_SECRET
const redirectUri = process.env.FB_REDIRECT_URI || 'http://localhost:8976/callback'
if (!base || !clientSecret) {
  console.error('usage: FB_CLIENT_SECRET=... node check.js http://127.0.0.1:PORT')
  process.exit(2)
}
process.env.FRESHBOOKS_AUTH_URL = base // the SDK builds its authorize URL from this

const { Client } = require('@freshbooks/api')

// GET the authorize URL without following the redirect; return the code from Location.
function authorize (url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      res.resume()
      const loc = res.headers.location
      if (res.statusCode !== 302 || !loc) return reject(new Error(`authorize answered ${res.statusCode}`))
      resolve(new URL(loc).searchParams.get('code'))
    }).on('error', reject)
  })
}

async function main () {
  let failures = 0
  const step = async (name, fn) => {
    try {
      const out = await fn()
      console.log(`ok   ${name}${out ? ': ' + out : ''}`)
    } catch (e) {
      failures++
      console.log(`FAIL ${name}: ${e.code || ''} ${e.message}`)
      if (process.env.CROSSCHECK_DEBUG) console.log(e.stack)
    }
  }
  const fb = new Client(clientId, { clientSecret, redirectUri, apiUrl: base, retryOptions: { retries: 0 } })
  const url = fb.getAuthRequestUrl(['user:profile:read', 'user:clients:read', 'user:invoices:read', 'user:projects:read',
    'user:time_entries:read'])
  console.log(`authorize URL host+path: ${new URL(url).origin}${new URL(url).pathname}`)
  let code
  await step('authorize (auto-consent) -> code', async () => { code = await authorize(url); return `code of ${code.length} hex chars` })
  await step('getAccessToken(code)', async () => {
    const t = await fb.getAccessToken(code)
    return `accessTokenExpiresAt=${t.accessTokenExpiresAt.toISOString()}`
  })
  const firstRefresh = fb.refreshToken
  await step('refreshAccessToken()', async () => {
    const t = await fb.refreshAccessToken()
    if (t.refreshToken === firstRefresh) throw new Error('refresh token did not rotate')
    return 'new refresh token issued'
  })
  await step('refreshAccessToken(old token) is refused', async () => {
    try { await fb.refreshAccessToken(firstRefresh) } catch (e) { return `refused: ${e.code || ''} ${e.message}` }
    throw new Error('old refresh token was accepted')
  })
  let accountId, businessId
  await step('users.me()', async () => {
    const { data } = await fb.users.me()
    const m = data.businessMemberships || []
    accountId = m[0] && m[0].business.accountId
    businessId = m[0] && m[0].business.id
    return `id=${data.id} ${data.firstName} ${data.lastName}, ${m.length} businesses: ` +
      m.map((x) => `${x.business.name} (account ${x.business.accountId}, business ${x.business.id}, role ${x.role})`).join('; ')
  })
  await step('clients.list(accountId)', async () => {
    const { data } = await fb.clients.list(accountId)
    const c = data.clients[0]
    return `${data.clients.length} clients, pages=${JSON.stringify(data.pages)}; first: ${c.id} ${c.organization} <${c.email}>`
  })
  await step('invoices.list(accountId)', async () => {
    const { data } = await fb.invoices.list(accountId)
    const i = data.invoices[0]
    return `${data.invoices.length} invoices, pages=${JSON.stringify(data.pages)}; first: #${i.invoiceNumber} ` +
      `amount=${JSON.stringify(i.amount)} outstanding=${JSON.stringify(i.outstanding)} status=${i.v3Status || i.status} due=${i.dueDate}`
  })
  await step('invoices.single(accountId, 1)', async () => {
    const { data } = await fb.invoices.single(accountId, '1')
    return `#${data.invoiceNumber} customer ${data.customerId} created ${data.createDate}`
  })
  await step('clients.single(accountId, missing) -> error parsed', async () => {
    try { await fb.clients.single(accountId, '4242') } catch (e) {
      return `${e.name} code=${e.code} message=${e.message} errors=${JSON.stringify(e.errors)}`
    }
    throw new Error('no error')
  })
  await step('projects.list(businessId)', async () => {
    const { data } = await fb.projects.list(businessId)
    return `${data.projects.length} projects, pages=${JSON.stringify(data.pages)}; first: ${data.projects[0].title}`
  })
  await step('timeEntries.list(businessId)', async () => {
    const { data } = await fb.timeEntries.list(businessId)
    return `${data.timeEntries.length} time entries, pages=${JSON.stringify(data.pages)}`
  })
  await step('projects.list with a token lacking user:projects:read -> error parsed', async () => {
    const narrow = new Client(clientId, { clientSecret, redirectUri, apiUrl: base, retryOptions: { retries: 0 } })
    await narrow.getAccessToken(await authorize(narrow.getAuthRequestUrl(['user:profile:read'])))
    try { await narrow.projects.list(businessId) } catch (e) { return `${e.code} ${e.message}` }
    throw new Error('no error')
  })
  console.log(failures === 0 ? 'crosscheck: all steps passed' : `crosscheck: ${failures} step(s) failed`)
  process.exit(failures === 0 ? 0 : 1)
}

main().catch((e) => { console.error('crosscheck crashed:', e.message); process.exit(1) })
