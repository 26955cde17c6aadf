'use strict'
// HTTP load generator for paths B, D, E, F and S: autocannon (npm, devDependency) driven from a config file.
//
//   node bench/loadgen.cjs CONFIG.json   ->  one JSON object on stdout
//
// CONFIG: { url, path, method, headers, connections, duration_s, tickets_file, vary, body }
//   tickets_file: one ticket per line, each used by exactly one request (a fresh customer per session)
//   vary "body":   the ticket is the request body (B: the RPC's JSON arguments)
//   vary "bearer": the ticket is a customer's access token, `body` is fixed (D: POST /api/intake/start)
//   vary "flow":   the ticket is a customer's access token, used for a whole customer's session in turn
//                  on one connection (S): POST `path` with `body`, GET /api/sessions/active x polls,
//                  GET /api/sessions/{id}, POST /api/sessions/{id}/cancel (`polls` in CONFIG, default 3)
// The run stops after duration_s or when the tickets are used up, whichever is first. Latencies are
// every response's, percentiles over 2xx responses; cpu_*_s are this process's own user/system CPU
// over the run (process.cpuUsage), so node's start-up is not in it.

const fs = require('fs')
const autocannon = require('autocannon')

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const tickets = fs.readFileSync(cfg.tickets_file, 'utf8').split('\n').filter((line) => line.length > 0)
if (tickets.length < cfg.connections) {
  process.stderr.write(`need at least ${cfg.connections} tickets, got ${tickets.length}\n`)
  process.exit(2)
}

let next = 0
const polls = cfg.polls === undefined ? 3 : cfg.polls
const steps = cfg.vary === 'flow' ? 3 + polls : 1

function setupRequest (req) {
  const ticket = tickets[Math.min(next, tickets.length - 1)]
  next += 1
  if (cfg.vary === 'body') {
    req.body = ticket
  } else {
    req.headers = { ...cfg.headers, authorization: `Bearer ${ticket}` }
  }
  return req
}

// S: each connection plays one customer at a time; the intake's answer names the session for the rest.
function flowRequests () {
  const auth = (context) => ({ ...cfg.headers, authorization: `Bearer ${context.token}` })
  const sessionPath = (context) => `/api/sessions/${context.sessionId || '00000000-0000-0000-0000-000000000000'}`
  const intake = {
    method: 'POST',
    path: cfg.path,
    body: cfg.body,
    setupRequest: (req, context) => {
      context.token = tickets[Math.min(next, tickets.length - 1)]
      context.sessionId = null
      next += 1
      return { ...req, headers: auth(context) }
    },
    onResponse: (status, body, context) => {
      if (status >= 200 && status < 300) context.sessionId = JSON.parse(body).sessionId
    },
  }
  const get = (path) => ({ method: 'GET', setupRequest: (req, context) => ({ ...req, path: path(context), headers: auth(context) }) })
  const cancel = {
    method: 'POST',
    body: '{}',
    setupRequest: (req, context) => ({ ...req, path: `${sessionPath(context)}/cancel`, headers: auth(context) }),
  }
  return [intake, ...Array.from({ length: polls }, () => get(() => '/api/sessions/active')), get(sessionPath), cancel]
}

const ok = []
const statuses = {}
const cpu0 = process.cpuUsage()
const t0 = process.hrtime.bigint()
const instance = autocannon({
  url: cfg.url,
  connections: cfg.connections,
  pipelining: 1,
  amount: tickets.length * steps, // each ticket once; the timer below ends a duration-bound run
  timeout: 30,
  sampleInt: 50, // how often autocannon looks at its stop flag
  headers: cfg.headers,
  requests: cfg.vary === 'flow'
    ? flowRequests()
    : [{ method: cfg.method, path: cfg.path, body: cfg.body, headers: cfg.headers, setupRequest }],
}, (err, result) => {
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  clearTimeout(timer)
  if (err) {
    process.stderr.write(`${err.stack || err}\n`)
    process.exit(1)
  }
  ok.sort((a, b) => a - b)
  const pct = (q) => (ok.length ? ok[Math.min(ok.length, Math.max(1, Math.ceil((q / 100) * ok.length))) - 1] : null)
  process.stdout.write(JSON.stringify({
    tool: `autocannon ${require('autocannon/package.json').version}`,
    elapsed_s: elapsed,
    requests: Object.values(statuses).reduce((a, b) => a + b, 0),
    tickets_used: next,
    responses: Object.values(statuses).reduce((a, b) => a + b, 0),
    ok: ok.length,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    p50_ms: pct(50),
    p95_ms: pct(95),
    p99_ms: pct(99),
    cpu_user_s: cpu.user / 1e6,
    cpu_system_s: cpu.system / 1e6,
    tickets_ran_out: next >= tickets.length,
  }) + '\n')
})

instance.on('response', (client, statusCode, resBytes, responseTime) => {
  statuses[statusCode] = (statuses[statusCode] || 0) + 1
  if (statusCode >= 200 && statusCode < 300) ok.push(responseTime)
})

const timer = setTimeout(() => instance.stop(), cfg.duration_s * 1000)
