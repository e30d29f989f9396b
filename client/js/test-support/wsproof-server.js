// Helpers that run the real Go server for the Node tests: build the wsproof
// command once per process (or use $WSPROOF_BIN), start `wsproof serve` on a
// free port with its own state folder, edit the key registry with
// `wsproof keys`, and read /metrics.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The repository root, found relative to this file (client/js/test-support). */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

// Scratch space lives under node_modules/.cache (ignored by git, removed by
// npm ci) rather than in the shared temporary folder.
const cacheDir = fileURLToPath(new URL('../node_modules/.cache/wsproof/', import.meta.url));

/** A fresh scratch folder, removed by cleanup(). */
export function tempDir() {
  mkdirSync(cacheDir, { recursive: true });
  return mkdtempSync(join(cacheDir, 'run-'));
}

/** The go command: on PATH, else /usr/local/go/bin/go. */
export function goCommand() {
  for (const dir of (process.env.PATH || '').split(':')) {
    if (dir && existsSync(join(dir, 'go'))) return join(dir, 'go');
  }
  if (existsSync('/usr/local/go/bin/go')) return '/usr/local/go/bin/go';
  throw new Error('go not found: put it on PATH, or set WSPROOF_BIN to a built wsproof command');
}

let built;

/**
 * Builds ./cmd/wsproof into dir once per process; $WSPROOF_BIN, when set,
 * names a binary to use instead.
 * @param {string} dir
 * @returns {Promise<string>} the binary's path
 */
export function buildWsproof(dir) {
  if (process.env.WSPROOF_BIN) return Promise.resolve(process.env.WSPROOF_BIN);
  built ??= (async () => {
    const out = join(dir, 'wsproof');
    await run(goCommand(), ['build', '-o', out, './cmd/wsproof'], { cwd: repoRoot, maxBuffer: 16 << 20 });
    return out;
  })();
  return built;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every server this process started and that is still running: stopAll()
// ends them, and so does the process's exit, so that a failed test never
// leaves a server behind (or keeps the test runner waiting on its pipes).
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Stops every server this process started. */
export async function stopAll() {
  await Promise.all([...children].map((c) => {
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    return exited;
  }));
}

/**
 * @typedef {object} Server
 * @property {string} addr host:port
 * @property {string} url the WebSocket URL, ws://addr/ws or wss://addr/ws
 * @property {string} identity the server identity its challenges carry
 * @property {string} pinned the server's public key set (server.pub.jwks), as JSON text
 * @property {string} [ca] the development certificate (PEM), with --tls-dev
 * @property {string} [pin] the certificate's SHA-256 pin (hex), with --tls-dev
 * @property {() => string} log everything the server wrote to stderr so far
 * @property {() => Promise<number>} registryKeys the wsproof_registry_keys gauge
 * @property {() => Promise<void>} stop SIGTERM, and wait for the process to exit
 */

/**
 * Starts `wsproof serve` on 127.0.0.1 with the state folder state.
 * @param {string} bin
 * @param {{state: string, registry: string, tls?: boolean, listen?: string, args?: string[]}} o
 * @returns {Promise<Server>}
 */
export async function startServer(bin, { state, registry, tls = false, listen = '127.0.0.1:0', args = [] }) {
  const addrFile = join(state, 'addr');
  rmSync(addrFile, { force: true });
  const argv = ['serve', '--state', state, '--registry', registry, '--listen', listen, '--addr-file', addrFile, ...args];
  if (tls) argv.push('--tls-dev');
  const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let log = '';
  child.stdout.on('data', (b) => (log += b));
  child.stderr.on('data', (b) => (log += b));
  const exited = new Promise((r) => child.on('exit', r));
  let dead = false;
  exited.then(() => (dead = true));

  const deadline = Date.now() + 20000;
  while (!existsSync(addrFile) || !readFileSync(addrFile, 'utf8').endsWith('\n')) {
    if (dead) throw new Error(`wsproof serve exited:\n${log}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`wsproof serve did not start:\n${log}`);
    }
    await sleep(20);
  }
  const addr = readFileSync(addrFile, 'utf8').trim();
  const scheme = tls ? 'wss' : 'ws';
  const srv = {
    addr,
    url: `${scheme}://${addr}/ws`,
    identity: `${scheme}://${addr}/ws`,
    pinned: readFileSync(join(state, 'server.pub.jwks'), 'utf8'),
    log: () => log,
    async registryKeys() {
      const body = await get(`${tls ? 'https' : 'http'}://${addr}/metrics`, srv.ca);
      const m = /^wsproof_registry_keys (\d+)/m.exec(body);
      return m ? Number(m[1]) : -1;
    },
    async stop() {
      if (!dead) child.kill('SIGTERM');
      await exited;
    },
  };
  if (tls) {
    // The pin "wsproof serve" prints is the SHA-256 of the certificate's DER.
    srv.ca = readFileSync(join(state, 'tls-dev.crt'), 'utf8');
    const der = Buffer.from(srv.ca.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    srv.pin = createHash('sha256').update(der).digest('hex');
  }
  return srv;
}

function get(url, ca) {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, ca ? { ca } : {}, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
  });
}

/**
 * The ws options that trust the server's development certificate only by its
 * pin: the certificate itself is the only CA, and checkServerIdentity compares
 * the SHA-256 of its DER encoding with the pin the server printed.
 * @param {Server} srv
 */
export function pinnedTLS(srv) {
  return {
    ca: srv.ca,
    checkServerIdentity(host, cert) {
      const got = createHash('sha256').update(cert.raw).digest('hex');
      return got === srv.pin ? undefined : new Error('certificate does not match the pin');
    },
  };
}

/** Creates an empty registry file and returns its path. */
export function newRegistry(dir) {
  const p = join(dir, 'registry.jwks');
  writeFileSync(p, '{"keys":[]}\n');
  return p;
}

/**
 * Enrolls a public JWK with `wsproof keys add --jwk`.
 * @param {string} bin
 * @param {string} registry
 * @param {object} jwk
 * @param {{sub: string, groups?: string[]}} o
 */
export async function enroll(bin, registry, jwk, { sub, groups = [] }) {
  const argv = ['keys', 'add', '--registry', registry, '--jwk', JSON.stringify(jwk), '--sub', sub];
  for (const g of groups) argv.push('--groups', g);
  await run(bin, argv);
}

/** Revokes a key with `wsproof keys revoke`. */
export async function revoke(bin, registry, kid) {
  await run(bin, ['keys', 'revoke', '--registry', registry, kid]);
}

/**
 * Waits until every server's registry holds n keys (the servers reload the
 * registry file when it changes).
 * @param {Server[]} servers
 * @param {number} n
 */
export async function waitForKeys(servers, n, timeout = 5000) {
  const deadline = Date.now() + timeout;
  for (const s of servers) {
    while ((await s.registryKeys()) !== n) {
      if (Date.now() > deadline) throw new Error(`registry of ${s.addr} did not reach ${n} keys`);
      await sleep(25);
    }
  }
}

/** Removes the temporary folders. */
export function cleanup(...dirs) {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
