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
// TLS: `wsproof probe client` has no TLS mode (it listens on plain TCP and
// serves ws:// URLs only), so this test runs over ws:// only; the wss://
// path of wsproof.js is covered by server.test.js against `wsproof serve
// --tls-dev`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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
let probe; // the child process
let probeLog = '';
let probeExit; // resolves with the exit code
let addr;

function within(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, reject) => (t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)))])
    .finally(() => clearTimeout(t));
}

before(async () => {
  dir = tempDir();
  bin = await buildWsproof(dir);
  const addrFile = join(dir, 'addr');
  const argv = ['probe', 'client', '--listen', '127.0.0.1:0', '--addr-file', addrFile, '--state', join(dir, 'state'),
    '--json', join(dir, 'report.json'), '--case-timeout', CASE_TIMEOUT, '--timeout', PROBE_TIMEOUT,
    '--diagnostic-reasons', '--ping-wait', '3s'];
  probe = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  probe.stdout.on('data', (b) => (probeLog += b));
  probe.stderr.on('data', (b) => (probeLog += b));
  probeExit = new Promise((r) => probe.on('exit', (code, sig) => r(code ?? sig)));
  let exited = false;
  probeExit.then(() => (exited = true));
  const deadline = Date.now() + 20000;
  while (!existsSync(addrFile) || !readFileSync(addrFile, 'utf8').endsWith('\n')) {
    if (exited) throw new Error(`wsproof probe client exited:\n${probeLog}`);
    if (Date.now() > deadline) throw new Error(`wsproof probe client did not start:\n${probeLog}`);
    await sleep(20);
  }
  addr = readFileSync(addrFile, 'utf8').trim();
});

after(async () => {
  if (probe && probe.exitCode === null && probe.signalCode === null) {
    probe.kill('SIGTERM');
    await probeExit;
  }
  if (dir) cleanup(dir);
});

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

function describeOutcome(o) {
  if (o.hung) return `no outcome within ${3 * HANDSHAKE_TIMEOUT} ms`;
  const how = o.accepted ? 'accepted, then closed' : 'refused';
  const err = o.error ? ` [${o.error.code ?? 'no code'}${o.error.remote ? ', by the server' : ''}: ${o.error.message}]` : '';
  return `${how} ${o.code ?? '(no close code)'}${o.reason ? ` "${o.reason}"` : ''}${err}`;
}

test('wsproof.js passes every case of `wsproof probe client`', { timeout: 90_000 }, async (t) => {
  const list = await (await fetch(`http://${addr}/cases.json`)).json();
  assert.ok(Array.isArray(list.cases) && list.cases.length > 0, 'cases.json lists no case');
  assert.match(list.identity, /^ws:\/\/127\.0\.0\.1:\d+\/probe$/);

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
  const status = await within(probeExit, 15000, 'the probe to exit after the last case');
  const reportPath = join(dir, 'report.json');
  assert.ok(existsSync(reportPath), `no JSON report (probe exit ${status}):\n${probeLog}`);
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
  assert.equal(bad.length, 0, `${summary}:\n${lines.join('\n')}\n\nprobe output:\n${probeLog}`);
  assert.equal(report.passed, list.cases.length);
  assert.equal(report.diagnostic, true, 'the probe did not check the exact codes');
  assert.deepEqual(report.cases.filter((c) => c.code_not_checked).map((c) => c.id), [], 'cases passed without the exact code');
  assert.equal(status, 0, `the probe exited with ${status}:\n${probeLog}`);
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
});
