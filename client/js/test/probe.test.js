// wsproof.js against `wsproof probe client`: the deliberately misbehaving
// server of the Go package conformance (the client suite). The probe serves one case per URL
// (bad challenges, bad accepts, state-machine violations, RFC 6455 framing
// abuse, broken opening handshakes, and the controls that must succeed) and
// lists them at /cases.json with the identity and the pinned key set. This
// test connects wsproof.js once to each case URL, in order, waits for each
// connection's outcome, and then reads the probe's JSON report, which must
// show every case passed.
//
// The probe has no registry: any client key will do (it checks the structure
// and bindings of responses, not their signature), so the key is generated
// here, as `--run-go-client` does for the Go client.
//
// The client runs in diagnostic mode (spec section "Diagnostic reasons"),
// and the probe is told so: every negative case then checks the exact spec
// code in the client's close reason, not only the close code that fourteen
// codes share. With --ping-wait and a 1 s ping interval the keepalive cases
// run too: nothing is skipped.
//
// TLS: the suite runs twice, over ws:// and over wss:// (`--tls`: the probe
// makes a throwaway CA, writes it to its state folder, and every challenge
// demands tls-exporter binding, which wsproof.js computes in Node from the
// `ws` socket; the TLS case checks that a challenge without binding is
// refused on TLS). Each run must pass every one of its cases.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { connect, generateKey, publicJwk } from '../wsproof.js';
import { buildWsproof, cleanup, tempDir } from '../test-support/wsproof-server.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// How long the probe waits for the client at each step of a case, and how
// long the client waits for an accept: short, because a correct client never
// makes either wait, and a wrong one should fail fast.
const CASE_TIMEOUT = '3s';
const HANDSHAKE_TIMEOUT = 4000;
// The probe gives up (reporting unvisited cases as skipped) after this.
const PROBE_TIMEOUT = '60s';

let dir;
let bin;

function within(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, reject) => (t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)))])
    .finally(() => clearTimeout(t));
}

before(async () => {
  dir = tempDir();
  bin = await buildWsproof(dir);
});

after(() => {
  if (dir) cleanup(dir);
});

// startProbe starts `wsproof probe client` with extra flags, in a folder of
// its own under dir, and resolves once it listens.
async function startProbe(name, extra) {
  const pdir = join(dir, name);
  const addrFile = join(pdir, 'addr');
  const argv = ['probe', 'client', '--listen', '127.0.0.1:0', '--addr-file', addrFile, '--state', join(pdir, 'state'),
    '--json', join(pdir, 'report.json'), '--case-timeout', CASE_TIMEOUT, '--timeout', PROBE_TIMEOUT,
    '--diagnostic-reasons', '--ping-wait', '3s', ...extra];
  const probe = { dir: pdir, log: '' };
  probe.child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  probe.child.stdout.on('data', (b) => (probe.log += b));
  probe.child.stderr.on('data', (b) => (probe.log += b));
  probe.exit = new Promise((r) => probe.child.on('exit', (code, sig) => r(code ?? sig)));
  let exited = false;
  probe.exit.then(() => (exited = true));
  const deadline = Date.now() + 20000;
  while (!existsSync(addrFile) || !readFileSync(addrFile, 'utf8').endsWith('\n')) {
    if (exited) throw new Error(`wsproof probe client exited:\n${probe.log}`);
    if (Date.now() > deadline) throw new Error(`wsproof probe client did not start:\n${probe.log}`);
    await sleep(20);
  }
  probe.addr = readFileSync(addrFile, 'utf8').trim();
  return probe;
}

function stopProbe(probe) {
  if (probe && probe.child.exitCode === null && probe.child.signalCode === null) probe.child.kill('SIGTERM');
}

// runCase connects once to url and waits for the connection's outcome: the
// accept and then the closure (the probe closes a successful exchange with
// 1000, or sends a bad message that the client must refuse), or a refusal
// before the accept.
async function runCase(url, opts) {
  try {
    const conn = await connect(url, opts);
    const info = await conn.closed;
    return { accepted: true, code: info.code, reason: info.reason, error: info.error };
  } catch (e) {
    return { accepted: false, code: e.closeCode ?? null, reason: e.reason ?? '', error: e };
  }
}

// getJSON fetches url as JSON, trusting ca (a PEM) over https.
function getJSON(url, ca) {
  const get = url.startsWith('https:') ? httpsGet : httpGet;
  return new Promise((resolve, reject) => {
    get(url, ca ? { ca } : {}, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(new Error(`${url}: ${res.statusCode} ${e.message}`));
        }
      });
    }).on('error', reject);
  });
}

function describeOutcome(o) {
  if (o.hung) return `no outcome within ${3 * HANDSHAKE_TIMEOUT} ms`;
  const how = o.accepted ? 'accepted, then closed' : 'refused';
  const err = o.error ? ` [${o.error.code ?? 'no code'}${o.error.remote ? ', by the server' : ''}: ${o.error.message}]` : '';
  return `${how} ${o.code ?? '(no close code)'}${o.reason ? ` "${o.reason}"` : ''}${err}`;
}

for (const transport of ['ws', 'wss']) {
  const flags = transport === 'wss' ? ['--tls'] : [];
  test(`wsproof.js passes every case of \`wsproof probe client${transport === 'wss' ? ' --tls' : ''}\``, { timeout: 90_000 }, async (t) => {
    const probe = await startProbe(transport, flags);
    try {
      await runSuite(t, probe, transport);
    } finally {
      stopProbe(probe);
      await probe.exit;
    }
  });
}

// runSuite connects wsproof.js to every case the probe lists, then checks
// the probe's report.
async function runSuite(t, probe, transport) {
  const { addr } = probe;
  // Over TLS the probe's CA, in its state folder, is the one to trust.
  const ca = transport === 'wss' ? readFileSync(join(probe.dir, 'state', 'probe-ca.pem')) : null;
  const list = await getJSON(`${transport === 'wss' ? 'https' : 'http'}://${addr}/cases.json`, ca);
  assert.ok(Array.isArray(list.cases) && list.cases.length > 0, 'cases.json lists no case');
  assert.match(list.identity, new RegExp(`^${transport}://127\\.0\\.0\\.1:\\d+/probe$`));
  assert.ok(list.cases.every((c) => c.url.startsWith(`${transport}://`)), `cases.json lists URLs that are not ${transport}://`);

  const keyPair = await generateKey('ES256');
  const { kid } = await publicJwk(keyPair);
  const opts = {
    keyId: kid,
    keyPair,
    serverKeys: list.server_keys,
    serverIdentity: list.identity,
    WebSocket,
    handshakeTimeout: HANDSHAKE_TIMEOUT,
    diagnosticReasons: true,
    pingInterval: 1000,
    ...(ca ? { wsOptions: { ca } } : {}),
  };

  // What the client saw, case by case, to print next to the probe's verdict.
  const seen = new Map();
  for (const c of list.cases) {
    // A client that hangs is noted and the run goes on: the probe's own
    // case timeout then decides the case, and the report says how.
    const o = await within(runCase(c.url, opts), 3 * HANDSHAKE_TIMEOUT, `case ${c.id}`)
      .catch((e) => ({ accepted: false, code: null, reason: '', error: e, hung: true }));
    seen.set(c.id, o);
  }

  // Every case was visited: the probe ends the run, prints its table and
  // writes the report (exit status 1 when a case failed).
  const status = await within(probe.exit, 15000, 'the probe to exit after the last case');
  const reportPath = join(probe.dir, 'report.json');
  assert.ok(existsSync(reportPath), `no JSON report (probe exit ${status}):\n${probe.log}`);
  const report = JSON.parse(readFileSync(reportPath, 'utf8'));

  assert.equal(report.role, 'client');
  assert.deepEqual(report.cases.map((c) => c.id), list.cases.map((c) => c.id), 'the report lists other cases than cases.json');
  const bad = report.cases.filter((c) => c.result !== 'pass');
  const lines = bad.map((c) => {
    const o = seen.get(c.id);
    return `  ${c.result.toUpperCase()} ${c.id} (${c.section})\n`
      + `    expected: ${c.expected}\n`
      + `    got:      ${c.got}${c.note ? `\n    note:     ${c.note}` : ''}\n`
      + `    client:   ${o ? describeOutcome(o) : 'not run'}`;
  });
  const summary = `${report.passed}/${report.cases.length} probe cases passed, ${report.failed} failed, ${report.skipped} skipped`;
  assert.equal(bad.length, 0, `${summary}:\n${lines.join('\n')}\n\nprobe output:\n${probe.log}`);
  assert.equal(report.passed, list.cases.length);
  assert.equal(report.diagnostic, true, 'the probe did not check the exact codes');
  assert.deepEqual(report.cases.filter((c) => c.code_not_checked).map((c) => c.id), [], 'cases passed without the exact code');
  assert.equal(status, 0, `the probe exited with ${status}:\n${probe.log}`);
  t.diagnostic(summary);

  // The client's own account agrees with the probe's: the controls were
  // accepted and closed normally, every other case ended in an error, and
  // where the spec names a close code, connect() or conn.closed reports it.
  const disagree = [];
  for (const c of list.cases) {
    const o = seen.get(c.id);
    const e = c.expect;
    if (e.success) {
      if (!o.accepted || o.code !== 1000 || o.error) disagree.push(`${c.id}: expected success, client ${describeOutcome(o)}`);
    } else if (!o.error) {
      disagree.push(`${c.id}: expected a failure, client ${describeOutcome(o)}`);
    } else if (e.close && !e.fail_connection && (o.code !== e.close || o.error.code !== e.code)) {
      disagree.push(`${c.id}: expected ${e.close} (${e.code}), client ${describeOutcome(o)}`);
    }
  }
  assert.deepEqual(disagree, [], `the client's outcomes disagree with cases.json:\n${disagree.join('\n')}`);
}
