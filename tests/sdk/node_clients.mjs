// Real Node.js tracking SDKs against a Tributary gateway, for tests/sdk_clients.rs.
//
//   node node_clients.mjs pins
//       the pinned packages, as JSON: {"<sdk>": {"package", "version", "registry": "npm"}}
//   node node_clients.mjs run <sdk>
//       with SDK_DIR (an `npm install --prefix` folder holding the pinned package), GATEWAY_URL,
//       WRITE_KEY, USER_ID, RUN_ID: sends one identify, one track and one page, each flushed
//       alone, then a batch of BATCH_SIZE events flushed together; closes the client and
//       prints one JSON summary line on stdout (logs go to stderr).
//
// The summary: sdk, package, version, flushes (deliveries the script asked for: what the
// gateway must count if nothing was resent), http_requests and requests (every HTTP attempt
// the SDK made, seen by a hook in its HTTP client: status and messageIds), errors (every error
// callback or event), success (no error at all), events (messageId, type, userId, name).
import { createRequire } from 'node:module'
import path from 'node:path'
import zlib from 'node:zlib'

// Exact versions: the test installs these (and only these) into its SDK cache.
const PINS = {
  'segment-node': { package: '@segment/analytics-node', version: '3.1.0', registry: 'npm' },
  'rudderstack-node': { package: '@rudderstack/rudder-sdk-node', version: '3.0.13', registry: 'npm' },
}

// Small, so that a failing case does not wait out long backoffs; the test asserts that no
// retry happened at all.
const MAX_RETRIES = 1
const FLUSH_INTERVAL_MS = 100
const BATCH_SIZE = 4

function env(name) {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set`)
  return v
}

function bodyMessageIds(body) {
  try {
    let text = body
    if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
      const buf = Buffer.from(body)
      text = (buf[0] === 0x1f && buf[1] === 0x8b ? zlib.gunzipSync(buf) : buf).toString('utf8')
    }
    const parsed = typeof text === 'string' ? JSON.parse(text) : text
    return (parsed.batch || [parsed]).map((e) => e.messageId)
  } catch (e) {
    return [`<unreadable body: ${e}>`]
  }
}

// The events of one run: ids are unique per run, the user is the test's.
function plan(runId, userId) {
  const id = (n) => `${runId}-${n}`
  const singles = [
    { type: 'identify', messageId: id('identify'), userId, traits: { email: `${userId}@example.com`, plan: 'pro' } },
    { type: 'track', messageId: id('track'), userId, event: 'Order Completed', properties: { total: 42.5, currency: 'EUR' } },
    { type: 'page', messageId: id('page'), userId, name: 'Pricing', properties: { path: '/pricing' } },
  ]
  const batch = [
    { type: 'track', messageId: id('batch-0'), userId, event: 'Product Viewed', properties: { sku: 'A-1' } },
    { type: 'track', messageId: id('batch-1'), userId, event: 'Product Added', properties: { sku: 'A-1', quantity: 2 } },
    { type: 'page', messageId: id('batch-2'), userId, name: 'Cart', properties: { path: '/cart' } },
    { type: 'identify', messageId: id('batch-3'), userId, traits: { last_cart_total: 85 } },
  ]
  if (batch.length !== BATCH_SIZE) throw new Error('batch size')
  return { singles, batch }
}

function describe(e) {
  return { message_id: e.messageId, type: e.type, user_id: e.userId, name: e.event ?? e.name ?? null }
}

function errText(err) {
  if (!err) return String(err)
  const status = err.response?.status
  return `${err.name ?? 'Error'}: ${err.message ?? err}${status ? ` (HTTP ${status})` : ''}`
}

async function segmentNode(req, pin, cfg) {
  const { Analytics } = req(pin.package)
  const version = req(`${pin.package}/package.json`).version
  const requests = []
  const errors = []
  const analytics = new Analytics({
    writeKey: cfg.writeKey,
    host: cfg.gatewayUrl,
    flushAt: BATCH_SIZE,
    flushInterval: FLUSH_INTERVAL_MS,
    maxRetries: MAX_RETRIES,
    httpRequestTimeout: 15000,
  })
  // Emitted once per HTTP attempt (retries included), before and after the request.
  const bodies = []
  analytics.on('http_request', (r) => {
    requests.push({ status: null, message_ids: bodyMessageIds(r.body) })
    bodies.push(r.body)
  })
  analytics.on('http_response', (r) => {
    // the answer to the oldest unanswered attempt with this body
    const i = requests.findIndex((q, n) => q.status === null && bodies[n] === r.body)
    if (i >= 0) requests[i].status = r.status
  })
  analytics.on('error', (e) => errors.push(`error event: ${e.code}: ${errText(e.reason)}`))

  const { singles, batch, flushes } = await sendPlan(analytics, errors, cfg)
  await analytics.closeAndFlush({ timeout: 30000 })
  return { version, flushes, requests, errors, events: [...singles, ...batch].map(describe) }
}

async function rudderstackNode(req, pin, cfg) {
  const Analytics = req(pin.package)
  const version = req(`${pin.package}/package.json`).version
  // The SDK's own axios (its dependency), for its HTTP adapter.
  const sdkReq = createRequire(req.resolve(pin.package))
  const axios = sdkReq('axios')
  const baseAdapter = axios.getAdapter(axios.defaults.adapter)
  const requests = []
  const errors = []
  // Every HTTP attempt goes through the adapter, axios-retry's retries included.
  const adapter = async (config) => {
    const entry = { status: null, message_ids: bodyMessageIds(config.data) }
    requests.push(entry)
    try {
      const res = await baseAdapter(config)
      entry.status = res.status
      return res
    } catch (err) {
      entry.status = err.response?.status ?? `${err.code ?? err.message}`
      throw err
    }
  }
  const analytics = new Analytics(cfg.writeKey, {
    dataPlaneUrl: cfg.gatewayUrl,
    flushAt: BATCH_SIZE,
    flushInterval: FLUSH_INTERVAL_MS,
    retryCount: MAX_RETRIES,
    axiosConfig: { adapter, timeout: 15000 },
    logLevel: 'error',
    errorHandler: (err) => errors.push(`errorHandler: ${errText(err)}`),
  })

  const { singles, batch, flushes } = await sendPlan(analytics, errors, cfg)
  await new Promise((resolve) =>
    analytics.flush((err) => {
      if (err) errors.push(`flush callback: ${errText(err)}`)
      resolve()
    })
  )
  return { version, flushes, requests, errors, events: [...singles, ...batch].map(describe) }
}

const RUNNERS = { 'segment-node': segmentNode, 'rudderstack-node': rudderstackNode }

async function main() {
  const [mode, sdk] = process.argv.slice(2)
  if (mode === 'pins') {
    process.stdout.write(JSON.stringify(PINS) + '\n')
    return
  }
  if (mode !== 'run' || !PINS[sdk]) {
    throw new Error(`usage: node_clients.mjs pins | run <${Object.keys(PINS).join('|')}>`)
  }
  const pin = PINS[sdk]
  const cfg = {
    sdkDir: env('SDK_DIR'),
    gatewayUrl: env('GATEWAY_URL'),
    writeKey: env('WRITE_KEY'),
    userId: env('USER_ID'),
    runId: env('RUN_ID'),
  }
  // Resolve the SDK from its cache folder, not from the source tree.
  const req = createRequire(path.join(cfg.sdkDir, 'package.json'))
  const started = Date.now()
  const r = await RUNNERS[sdk](req, pin, cfg)
  const summary = {
    sdk,
    package: pin.package,
    pinned_version: pin.version,
    version: r.version,
    max_retries: MAX_RETRIES,
    flushes: r.flushes,
    http_requests: r.requests.length,
    requests: r.requests,
    errors: r.errors,
    success: r.errors.length === 0,
    events: r.events,
    elapsed_ms: Date.now() - started,
  }
  process.stdout.write(JSON.stringify(summary) + '\n')
}

main().then(
  // the SDKs may leave timers or sockets behind: the summary is out, so stop here
  () => process.exit(0),
  (err) => {
    process.stderr.write(`node_clients.mjs: ${err?.stack ?? err}\n`)
    process.exit(2)
  }
)

// The plan's single events one at a time (each its own request: the client's flush timer sends
// it before the next is given), then the batch in one tick (a full batch: one request). Both
// SDKs take `(fields, callback)` per call type. Returns the events and the flushes made.
async function sendPlan(analytics, errors, cfg) {
  const send = (e) =>
    new Promise((resolve) => {
      const { type, ...fields } = e
      analytics[type](fields, (err) => {
        if (err) errors.push(`${type} ${e.messageId} callback: ${errText(err)}`)
        resolve()
      })
    })
  const { singles, batch } = plan(cfg.runId, cfg.userId)
  let flushes = 0
  for (const e of singles) {
    await send(e)
    flushes += 1
  }
  await Promise.all(batch.map(send))
  flushes += 1
  return { singles, batch, flushes }
}
