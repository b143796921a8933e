// Segment's mapping-kit (`transform` from @segment/actions-core) on the benchmark mapping.
//
//   node render.mjs EVENT.json [--iterations N] [--repeats R] [--warmup W]
//       prints one JSON object: {versions, node, body, warmup, validate_ns_per_call,
//       iterations, ns: [per repeat]}
//   node render.mjs EVENT.json --serve [--warmup W]
//       prints {versions, node, body, warmup, validate_ns_per_call} on one line, then for each line "N" read from
//       stdin times N transforms and prints {"ns": total}; ends at EOF. bench/mapping.py uses
//       this mode to run Segment in turn with the Python renderers, in the same run.
//
// The mapping mirrors bench/benchmark-mapping.yaml field for field. `transform` is Segment's
// per-event entry point; it validates the mapping, resolves it and drops undefined keys.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'

// The package's ESM build uses extension-less directory imports that Node's ESM loader
// refuses, so load its CommonJS build (the `require` export condition) instead.
const require = createRequire(import.meta.url)
const { transform } = require('@segment/actions-core')
const validate = require('@segment/actions-core/mapping-kit/validate').default
const installed = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), 'utf8')).version
const versions = { '@segment/actions-core': installed('@segment/actions-core'), liquidjs: installed('liquidjs') }

const path = (p) => ({ '@path': p })

export const MAPPING = {
  profile: {
    source: 'shoppingnow',
    type: 'customer',
    name: path('$.data.customer.name'),
    identifiers: [
      { type: 'email', value: path('$.xdm.identityMap.Email[0].id') },
      { type: 'external_id', value: path('$.xdm.identityMap.CRMID[0].id') }
    ]
  },
  event: {
    source: 'shoppingnow',
    type: path('$.xdm.eventType'),
    created_at: path('$.xdm.timestamp'),
    properties: {
      order_id: path('$.xdm.commerce.order.purchaseID'),
      total: path('$.xdm.commerce.order.priceTotal'),
      currency: path('$.xdm.commerce.order.currencyCode'),
      items: {
        '@arrayPath': [
          '$.xdm.productListItems',
          { sku: path('$.SKU'), name: path('$.name'), qty: path('$.quantity') }
        ]
      },
      url: path('$.xdm.web.webPageDetails.URL'),
      tier: path('$.data.customer.tier')
    }
  }
}

function option(name, fallback) {
  const at = process.argv.indexOf(name)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}

function timeRenders(event, n) {
  let sink = 0
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    sink += transform(MAPPING, event).event.properties.items.length
  }
  const ns = process.hrtime.bigint() - start
  if (sink !== n * event.xdm.productListItems.length) throw new Error('unexpected body')
  return Number(ns)
}

// For context only: the share of `transform` spent re-validating the mapping on each call.
function timeValidate(n) {
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) validate(MAPPING)
  return Number(process.hrtime.bigint() - start)
}

const eventFile = process.argv[2]
if (!eventFile) {
  console.error('usage: node render.mjs EVENT.json [--serve] [--iterations N] [--repeats R] [--warmup W]')
  process.exit(2)
}
const event = JSON.parse(readFileSync(eventFile, 'utf8'))
const body = transform(MAPPING, event)
const warmup = option('--warmup', 50000)
timeRenders(event, warmup)
timeValidate(warmup)
const validateNsPerCall = Math.min(...[0, 1, 2].map(() => timeValidate(warmup / 5))) / (warmup / 5)
const header = { versions, node: process.version, body, warmup, validate_ns_per_call: validateNsPerCall }

if (process.argv.includes('--serve')) {
  console.log(JSON.stringify(header))
  for await (const line of createInterface({ input: process.stdin })) {
    const n = Number(line.trim())
    if (!Number.isInteger(n) || n <= 0) break
    console.log(JSON.stringify({ ns: timeRenders(event, n) }))
  }
} else {
  const iterations = option('--iterations', 20000)
  const repeats = option('--repeats', 9)
  const ns = []
  for (let r = 0; r < repeats; r++) ns.push(timeRenders(event, iterations))
  console.log(JSON.stringify({ ...header, iterations, ns }))
}
