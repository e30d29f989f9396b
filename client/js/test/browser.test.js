// End to end in a real browser: "wsproof serve" serves the demo page, Debian's
// Chromium (driven by playwright-core, which downloads nothing) makes a key in
// the page, the test enrolls it with the command the page shows, and the page
// authenticates and talks to the echo and broadcast room.
//
// Needs Go (to build the command) and /usr/bin/chromium (apt-get install
// chromium); CHROMIUM=/path overrides the browser. A missing browser fails
// the test: it is never skipped. The screenshot goes to $TMPDIR/wsproof-demo.png;
// UPDATE_SCREENSHOT=1 also copies it to test/screenshots/demo.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..', '..');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 15_000;

let tmp;
let bin;
let state;
let server;
let serverLog = '';
let addr;
let browser;

async function waitFor(what, fn, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}\nserver log:\n${serverLog}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  assert.ok(existsSync(chromiumPath),
    `${chromiumPath} is missing: install Debian's Chromium (apt-get install chromium), or set CHROMIUM to a Chromium binary; this test is never skipped`);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wsproof-browser-'));
  bin = path.join(tmp, process.platform === 'win32' ? 'wsproof.exe' : 'wsproof');
  state = path.join(tmp, 'state');
  await run('go', ['build', '-o', bin, './cmd/wsproof'], { cwd: repo, timeout: 300_000 });

  const addrFile = path.join(tmp, 'addr');
  server = spawn(bin, ['serve', '--state', state, '--listen', '127.0.0.1:0', '--addr-file', addrFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WSPROOF_STATE: state },
  });
  server.stdout.on('data', (d) => { serverLog += d; });
  server.stderr.on('data', (d) => { serverLog += d; });
  server.on('exit', (code, sig) => { serverLog += `[wsproof serve exited: ${code ?? sig}]\n`; });
  addr = await waitFor('the server address', async () => (await readFile(addrFile, 'utf8')).trim());
  await waitFor('/healthz', async () => (await fetch(`http://${addr}/healthz`)).ok);

  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

async function stopServer(child) {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

let tlsServer;

after(async () => {
  await browser?.close();
  await stopServer(server);
  await stopServer(tlsServer);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function metric(name) {
  const body = await (await fetch(`http://${addr}/metrics`)).text();
  const quoted = name.replace(/[{}]/g, '\\$&');
  const m = body.match(new RegExp(`^${quoted} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
}

test('the demo page enrolls a browser key and talks to the room', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`);
  });

  // The page and its assets: no inline code, a strict policy.
  const res = await page.goto(`http://${addr}/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'], /default-src 'none'/);
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.locator('#fatal').isHidden(), true, await page.locator('#fatal').textContent());

  // A new non-extractable key, with its thumbprint and the command that
  // enrolls it.
  const kid = (await page.locator('#kid').textContent()).trim();
  assert.match(kid, /^[A-Za-z0-9_-]{43}$/, 'the key id is a SHA-256 thumbprint');
  assert.equal((await page.locator('#key-alg').textContent()).trim(), 'ES256');
  await page.fill('#sub', 'pagetester');
  const cmd = (await page.locator('#enroll-cmd').textContent()).trim();
  const m = cmd.match(/^wsproof keys add --jwk '(\{[^']*\})' --sub (\S+) --groups broadcast$/);
  assert.ok(m, `unexpected enroll command: ${cmd}`);
  const jwk = JSON.parse(m[1]);
  assert.equal(jwk.kid, kid);
  assert.equal(jwk.alg, 'ES256');
  assert.equal(jwk.d, undefined, 'the command holds no private key');
  assert.equal(m[2], 'pagetester');

  // The key survives a reload: it lives in IndexedDB.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal((await page.locator('#kid').textContent()).trim(), kid);
  assert.equal(await page.inputValue('#sub'), 'pagetester');
  assert.equal((await page.locator('#enroll-cmd').textContent()).trim(), cmd);
  assert.match(await page.locator('#key-note').textContent(), /loaded from IndexedDB/);

  // Before enrollment the server refuses the key, and the page says why.
  await page.click('#connect');
  const err = page.locator('#error');
  await err.waitFor({ state: 'visible' });
  assert.match(await err.textContent(), /4003/);
  assert.match(await err.textContent(), /enroll it with the command above/);

  // Enroll it as the page says, then wait for the server to reload its
  // registry.
  await run(bin, ['keys', 'add', '--state', state, '--jwk', m[1], '--sub', m[2], '--groups', 'broadcast']);
  await waitFor('the registry reload', async () => (await metric('wsproof_registry_keys')) === 1);

  await page.click('#connect');
  await page.locator('#status[data-state="connected"]').waitFor();
  assert.equal(await err.isHidden(), true);
  const steps = await page.locator('#steps li').evaluateAll((lis) => lis.map((li) => li.dataset.step));
  assert.ok(steps.length >= 3, `handshake steps shown: ${steps.join(', ')}`);
  assert.equal((await page.locator('#s-subject').textContent()).trim(), 'pagetester');
  assert.equal((await page.locator('#s-groups').textContent()).trim(), 'broadcast');
  assert.match(await page.locator('#s-cb').textContent(), /^off/);
  assert.match(await page.locator('#s-socket').textContent(), /^[A-Za-z0-9_-]{22}$/);
  assert.match(await page.locator('#s-expiry').textContent(), /in \d+m/);
  assert.match(await page.locator('#s-server-kid').textContent(), /^sig-/);
  assert.equal(await metric('wsproof_sessions{endpoint="browser"}'), 1);

  // Echo, then broadcast.
  await page.fill('#message', 'hello from chromium');
  await page.press('#message', 'Enter');
  await page.locator('#log li.echo', { hasText: 'echo: hello from chromium' }).waitFor();
  await page.fill('#message', '/all hi everyone <b>not bold</b>');
  await page.click('#send');
  await page.locator('#log li.broadcast', { hasText: 'pagetester: hi everyone <b>not bold</b>' }).waitFor();
  assert.equal(await page.locator('#log b').count(), 0, 'messages are shown as text, not HTML');

  const shot = path.join(os.tmpdir(), 'wsproof-demo.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`# screenshot: ${shot}`);
  if (process.env.UPDATE_SCREENSHOT === '1') {
    const keep = path.join(here, 'screenshots', 'demo.png');
    await mkdir(path.dirname(keep), { recursive: true });
    await copyFile(shot, keep);
    console.log(`# screenshot copied to ${keep}`);
  }

  // Disconnecting closes the socket normally.
  await page.click('#disconnect');
  await page.locator('#status[data-state="idle"]').waitFor();
  await waitFor('the session to end', async () => (await metric('wsproof_sessions{endpoint="browser"}')) === 0);

  // Revoking the key ends a live session within a second, and the page says
  // why with the spec's code.
  await page.click('#connect');
  await page.locator('#status[data-state="connected"]').waitFor();
  await run(bin, ['keys', 'revoke', '--state', state, kid]);
  await err.waitFor({ state: 'visible' });
  assert.match(await err.textContent(), /session revoked \(session_revoked, 4011\)/);
  assert.equal(await page.locator('#status').getAttribute('data-state'), 'failed');
  assert.equal(await page.locator('#message').isDisabled(), true);

  // Another algorithm: a new key replaces the stored one.
  await page.selectOption('#alg', 'EdDSA');
  await page.click('#new-key');
  await page.locator('#key-alg', { hasText: 'EdDSA' }).waitFor();
  const kid2 = (await page.locator('#kid').textContent()).trim();
  assert.notEqual(kid2, kid);
  assert.match(await page.locator('#enroll-cmd').textContent(), /"crv":"Ed25519".*"alg":"EdDSA"/);

  assert.deepEqual(problems, []);
  await context.close();
});

// Over https:// and wss://: the connection is TLS, and the page cannot read
// its exporter value, so the client must know it runs in a browser and apply
// the spec's browser profile, accepting the challenges of /ws/browser, whose
// cb is "none". A client that took the page for Node would refuse them with
// channel_binding_required.
test('a refused Origin is terminal in the browser: connect and keep say origin_not_allowed', async () => {
  // The demo page's origin is allowed on /ws/browser only. A browser hides
  // the 403 of the refused upgrade; the client asks the endpoint (spec
  // section "Opening handshake") instead of retrying forever.
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(`http://${addr}/`);
  await page.waitForSelector('body[data-ready="true"]');
  const got = await page.evaluate(async (a) => {
    const w = await import('/wsproof.js');
    const bounded = (p, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what} did not settle`)), 10000))]);
    const keyPair = await w.generateKey('ES256');
    const { kid } = await w.publicJwk(keyPair);
    const serverKeys = await (await fetch('/server.pub.jwks')).json();
    const opts = { keyId: kid, keyPair, serverKeys };
    const out = {};
    try {
      await bounded(w.connect(`ws://${a}/ws`, opts), 'connect');
      out.connect = 'connected';
    } catch (e) {
      out.connect = { code: e.code, retryable: e.retryable, message: e.message };
    }
    const k = w.keep(`ws://${a}/ws`, opts, async () => {}, { initial: 50, max: 100 });
    let failures = 0;
    k.addEventListener('failure', () => { failures++; });
    try {
      await bounded(k.done, 'keep');
      out.keep = 'resolved';
    } catch (e) {
      out.keep = { code: e.code, retryable: e.retryable, failures, message: e.code ? undefined : e.message };
      k.stop();
    }
    // An unenrolled key on the endpoint that allows the page: not an
    // Origin refusal, but the server's 4003.
    try {
      await bounded(w.connect(`ws://${a}/ws/browser`, opts), 'connect to /ws/browser');
    } catch (e) {
      out.browserEndpoint = { code: e.code, closeCode: e.closeCode };
    }
    return out;
  }, addr);
  assert.equal(got.connect.code, 'origin_not_allowed', JSON.stringify(got));
  assert.equal(got.connect.retryable, false);
  assert.match(got.connect.message, /does not allow this page's origin \(http:\/\/127\.0\.0\.1:\d+\)/);
  assert.deepEqual(got.keep, { code: 'origin_not_allowed', retryable: false, failures: 1, message: undefined }, JSON.stringify(got));
  assert.equal(got.browserEndpoint.closeCode, 4003, JSON.stringify(got));
  await context.close();
});

test('over wss:// the page runs the browser profile', async () => {
  const tlsState = path.join(tmp, 'tls-state');
  const addrFile = path.join(tmp, 'tls-addr');
  let log = '';
  tlsServer = spawn(bin, ['serve', '--state', tlsState, '--listen', '127.0.0.1:0', '--addr-file', addrFile, '--tls-dev'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  tlsServer.stdout.on('data', (d) => { log += d; });
  tlsServer.stderr.on('data', (d) => { log += d; });
  const tlsAddr = await waitFor('the TLS server address', async () => (await readFile(addrFile, 'utf8')).trim());

  // The development certificate is self-signed: this context trusts it.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.goto(`https://${tlsAddr}/`);
  await page.waitForSelector('body[data-ready="true"]');
  const cmd = (await page.locator('#enroll-cmd').textContent()).trim();
  const m = cmd.match(/^wsproof keys add --jwk '(\{[^']*\})' --sub (\S+) --groups broadcast$/);
  assert.ok(m, `unexpected enroll command: ${cmd}`);
  await run(bin, ['keys', 'add', '--state', tlsState, '--jwk', m[1], '--sub', 'tlspage', '--groups', 'broadcast']);

  // The server reloads its registry within a moment; until then it refuses
  // the key (4003), after which the page connects.
  await waitFor('a connection over wss://', async () => {
    await page.click('#connect');
    await page.waitForFunction(() => ['connected', 'failed'].includes(document.getElementById('status').dataset.state));
    return (await page.locator('#status').getAttribute('data-state')) === 'connected';
  });
  assert.match(await page.locator('#s-cb').textContent(), /^off/);
  assert.equal((await page.locator('#s-subject').textContent()).trim(), 'tlspage');
  await page.fill('#message', 'over tls');
  await page.press('#message', 'Enter');
  await page.locator('#log li.echo', { hasText: 'echo: over tls' }).waitFor();
  assert.ok(log.includes('wss://'), `the server does not serve TLS:\n${log}`);
  assert.deepEqual(problems, []);
  await context.close();
});
