// One contender of bench/run.lua: the official FreshBooks Node SDK (@freshbooks/api).
//   node bench/node/bench.js get URL N | export URL | mem URL N   (the token in FB_TOKEN)
// Prints the same figures as bench/client.lua. The SDK has no parallel paging: export walks pages.
'use strict'
const { Client } = require('@freshbooks/api')
const [mode, url, nArg] = process.argv.slice(2)
const n = Number(nArg)
const make = () => new Client('sandbox-client-id', { accessToken: process.env.FB_TOKEN, apiUrl: url,
  retryOptions: { retries: 0 } })
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 }

async function main () {
  if (mode === 'get') {
    const fb = make()
    await fb.clients.single('aBcD1', '10001')
    const c0 = cpu(); const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) await fb.clients.single('aBcD1', '10001')
    const took = Number(process.hrtime.bigint() - t0) / 1e9
    console.log(`${(n / took).toFixed(1)} ${((cpu() - c0) / n * 1e6).toFixed(2)}`)
  } else if (mode === 'export') {
    const fb = make()
    const t0 = process.hrtime.bigint()
    let count = 0
    for (let page = 1; ; page++) {
      const { data } = await fb.invoices.list('aBcD1', [PageBuilder(page)])
      count += data.invoices.length
      if (page >= data.pages.pages) break
    }
    console.log(`${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(3)} ${count}`)
  } else if (mode === 'mem') {
    const keep = [make()]
    await keep[0].clients.single('aBcD1', '10001')
    global.gc && global.gc()
    const before = process.memoryUsage()
    for (let i = 0; i < n; i++) { const fb = make(); await fb.clients.single('aBcD1', '10001'); keep.push(fb) }
    global.gc && global.gc()
    const after = process.memoryUsage()
    console.log(`${((after.rss - before.rss) / 1024 / n).toFixed(2)} ${((after.heapUsed - before.heapUsed) / 1024 / n).toFixed(2)}`)
  }
}
const { PaginationQueryBuilder } = require('@freshbooks/api/dist/models/builders/PaginationQueryBuilder')
const PageBuilder = function (page) { return new PaginationQueryBuilder().page(page).perPage(100) }
main().catch((e) => { console.error('node bench failed:', e.message); process.exit(1) })
