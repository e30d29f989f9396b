// The session vectors of spec section "Session vectors"
// (testdata/session-vectors.json): every client-role script runs through
// ClientMachine, the pure client state machine of wsproof.js, as
// protocol.RunSessionVectors runs it through Go's protocol.ClientConn. Each
// step feeds one input at its time and must cause exactly the expected
// actions, in order, and leave the expected state:
//
//   - timers are not actions and are not compared;
//   - a binary send and a delivery are compared octet for octet;
//   - a response is compared structurally, since signatures are randomized:
//     its header is exactly {alg, kid, typ} of the client's key, its claims
//     are exactly aud, sid, nonce and cha (and cb when the challenge it
//     answers demands tls-exporter binding) for that challenge, and its
//     signature verifies with the client's public key from keys.registry;
//   - a close is compared by its error code, its close code and retry.
//
// The runner also proves it can fail: a file without client scripts is
// refused, and scripts with one expectation changed (an error code, a close
// code, retry, a state, an action) must not pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ClientMachine, importKey, loadServerKeys } from '../wsproof.js';

// WSPROOF_SESSION_VECTORS names another file, for checking the runner itself.
const path = process.env.WSPROOF_SESSION_VECTORS || new URL('../../../testdata/session-vectors.json', import.meta.url);
const file = JSON.parse(readFileSync(path, 'utf8'));

const b64 = (s) => new Uint8Array(Buffer.from(s, 'base64url'));
const b64json = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

const VERIFY = {
  ES256: { name: 'ECDSA', hash: 'SHA-256' },
  ES384: { name: 'ECDSA', hash: 'SHA-384' },
  ES512: { name: 'ECDSA', hash: 'SHA-512' },
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
  PS256: { name: 'RSA-PSS', saltLength: 32 },
  EdDSA: { name: 'Ed25519' },
};
const IMPORT = {
  ES256: { name: 'ECDSA', namedCurve: 'P-256' },
  ES384: { name: 'ECDSA', namedCurve: 'P-384' },
  ES512: { name: 'ECDSA', namedCurve: 'P-521' },
  RS256: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  PS256: { name: 'RSA-PSS', hash: 'SHA-256' },
  EdDSA: { name: 'Ed25519' },
};

// env loads the keys of a session vector file once.
async function loadEnv(f) {
  const pinned = await loadServerKeys(f.keys.server_public);
  const clients = new Map();
  for (const jwk of f.keys.client_private.keys) {
    if (jwk.kid === 'impostor') continue; // a server key, not a client's
    clients.set(jwk.kid, await importKey(jwk));
  }
  const registry = new Map();
  for (const jwk of f.keys.registry.keys) {
    const { kty, crv, x, y, n, e } = jwk;
    const pub = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
    registry.set(jwk.kid, { alg: jwk.alg, key: await crypto.subtle.importKey('jwk', pub, IMPORT[jwk.alg], false, ['verify']) });
  }
  return { f, pinned, clients, registry };
}

// payloadOf decodes a step input's or an action's payload: data exactly (a
// text) or as base64url (binary), or size octets of 'A' (text) or zero.
function payloadOf(text, data, size) {
  if (data !== undefined && size !== undefined) throw new Error('both data and size');
  if (size !== undefined) return text ? 'A'.repeat(size) : new Uint8Array(size);
  if (text) return data;
  return b64(data ?? '');
}

// checkResponse checks a response the client sent for the challenge it
// answers: exact header, exact claims, and the signature.
async function checkResponse(env, kid, response, challenge, exporter) {
  const parts = response.split('.');
  if (parts.length !== 3) throw new Error('the response is not a compact JWS');
  const alg = env.clients.get(kid).alg;
  const header = b64json(parts[0]);
  assert.deepEqual(header, { alg, kid, typ: 'wsproof-response+jwt' }, 'response header');
  const c = b64json(challenge.split('.')[1]);
  const cha = Buffer.from(await crypto.subtle.digest('SHA-256', Buffer.from(challenge))).toString('base64url');
  const want = { aud: c.iss, sid: c.sid, nonce: c.nonce, cha };
  if (c.cb === 'tls-exporter') want.cb = Buffer.from(exporter).toString('base64url');
  assert.deepEqual(b64json(parts[1]), want, 'response claims');
  const reg = env.registry.get(kid);
  if (!reg) throw new Error(`no registry key for ${kid}`);
  assert.equal(reg.alg, alg, 'the registry key\'s algorithm');
  const ok = await crypto.subtle.verify(VERIFY[alg], reg.key, b64(parts[2]), Buffer.from(`${parts[0]}.${parts[1]}`));
  assert.ok(ok, 'the response signature verifies with the registered key');
}

const describeAction = (a) => {
  switch (a.type) {
    case 'send':
      return a.text ? 'send response' : `send binary (${a.data.length} octets)`;
    case 'deliver':
      return `deliver (${a.data.length} octets)`;
    case 'close':
      return `close ${a.code} ${a.closeCode} retry=${a.retry}`;
  }
  return a.type;
};
const describeEvent = (e) => {
  switch (e.action) {
    case 'send':
      return `send ${e.message}`;
    case 'close':
      return `close ${e.error ?? null} ${e.close_code ?? null} retry=${e.retry}`;
  }
  return e.action;
};

// compare checks that acts, without timers, are exactly want.
async function compare(env, kid, acts, want, lastChallenge, exporter) {
  const got = acts.filter((a) => a.type !== 'timer');
  if (got.length !== want.length) {
    throw new Error(`actions [${got.map(describeAction).join(', ')}], want [${want.map(describeEvent).join(', ')}]`);
  }
  for (let i = 0; i < got.length; i++) {
    const a = got[i];
    const e = want[i];
    const mismatch = () => new Error(`action ${i} is ${describeAction(a)}, want ${describeEvent(e)}`);
    switch (e.action) {
      case 'send':
        if (a.type !== 'send') throw mismatch();
        if (e.message === 'binary') {
          if (a.text || !eq(a.data, payloadOf(false, e.data, e.size))) throw mismatch();
        } else if (e.message === 'response') {
          if (!a.text) throw mismatch();
          if (lastChallenge === null) throw new Error('a response without a challenge');
          await checkResponse(env, kid, a.data, lastChallenge, exporter);
        } else {
          throw new Error(`a client sends no ${e.message}`);
        }
        break;
      case 'ping':
        if (a.type !== 'ping') throw mismatch();
        break;
      case 'deliver':
        if (a.type !== 'deliver' || !eq(a.data, payloadOf(false, e.data, e.size))) throw mismatch();
        break;
      case 'accepted':
        if (a.type !== 'accepted') throw mismatch();
        break;
      case 'close':
        if (typeof e.retry !== 'boolean') throw new Error('a client-role close has no retry');
        if (a.type !== 'close' || a.code !== (e.error ?? null) || a.closeCode !== (e.close_code ?? null) || a.retry !== e.retry) {
          throw mismatch();
        }
        break;
      default:
        throw new Error(`unknown action ${e.action}`);
    }
  }
}

// runScript runs one client-role script; it throws at the first step that
// does not cause exactly its expected actions and state.
async function runScript(env, v) {
  const { f } = env;
  const cfg = { ...f.client, ...(v.config || {}) };
  const s = v.start;
  const keyPair = env.clients.get(s.client_kid);
  if (!keyPair) throw new Error(`no private key for ${s.client_kid}`);
  const exporter = s.channel_binding ? b64(s.channel_binding) : null;
  const m = new ClientMachine({
    keyId: s.client_kid,
    keyPair,
    serverKeys: env.pinned,
    serverIdentity: f.server.identity,
    tls: !!s.tls,
    exporter,
    allowUnbound: !!s.allow_unbound,
    clockSkew: cfg.clock_skew,
    handshakeTimeout: cfg.handshake_timeout * 1000,
    pingInterval: cfg.ping_interval * 1000,
    maxMessageSize: cfg.max_message_size,
  }, s.at * 1000);
  let lastChallenge = null;
  for (const [i, st] of v.steps.entries()) {
    const now = st.at * 1000;
    const inp = st.input;
    let acts;
    const where = `step ${i} (${inp.type} at ${st.at})`;
    switch (inp.type) {
      case 'text':
      case 'binary': {
        const text = inp.type === 'text';
        const p = payloadOf(text, inp.data, inp.size);
        if (text && !p.startsWith('{')) lastChallenge = p;
        acts = await m.message(now, text, p);
        break;
      }
      case 'pong':
        acts = m.pong(now);
        break;
      case 'timer':
        acts = m.timer(now);
        break;
      case 'send':
        try {
          acts = m.send(now, payloadOf(false, inp.data, inp.size));
        } catch (e) {
          if (!Array.isArray(e.actions)) throw e;
          acts = e.actions; // refused (too large, or not open): only the timed rows' actions
        }
        break;
      case 'write_timeout':
        acts = m.writeTimeout(now);
        break;
      case 'close':
        acts = m.close(now);
        break;
      case 'peer_close':
        acts = m.peerClose(now, inp.code);
        break;
      case 'lost':
        acts = m.lost(now);
        break;
      default:
        throw new Error(`${where}: input ${inp.type} is not a client input`);
    }
    try {
      await compare(env, s.client_kid, acts, st.expect, lastChallenge, exporter);
    } catch (e) {
      throw new Error(`${where}: ${e.message}`);
    }
    if (m.state !== st.state) throw new Error(`${where}: state ${m.state}, want ${st.state}`);
  }
}

/**
 * Runs every client-role script of a session vector file and returns one
 * result per script. Throws when the file holds no client script or repeats
 * an id.
 */
async function runClientScripts(f, env) {
  const scripts = f.vectors.filter((v) => v.role === 'client');
  if (scripts.length === 0) throw new Error('the session vector file has no client-role script');
  const ids = new Set();
  const out = [];
  for (const v of scripts) {
    if (ids.has(v.id)) throw new Error(`duplicate session vector id ${v.id}`);
    ids.add(v.id);
    try {
      await runScript(env, v);
      out.push({ id: v.id, ok: true });
    } catch (e) {
      out.push({ id: v.id, ok: false, why: e.message });
    }
  }
  return out;
}

let env;
const getEnv = async () => (env ??= await loadEnv(file));

test('session vector file', () => {
  assert.equal(file.spec, 'wsproof-v1');
  assert.ok(Array.isArray(file.vectors));
  const client = file.vectors.filter((v) => v.role === 'client');
  assert.ok(client.length > 0, 'the file has no client-role script');
  // Spec section "Session vectors": every row of the client table but C1 and
  // C2 (the HTTP upgrade) has a script.
  const rows = new Set(client.flatMap((v) => v.rows));
  const missing = [];
  for (let n = 3; n <= 29; n++) if (!rows.has(`C${n}`)) missing.push(`C${n}`);
  assert.deepEqual(missing, [], 'client rows without a script');
});

test('every client-role script through ClientMachine', async (t) => {
  const e = await getEnv();
  const results = await runClientScripts(file, e);
  for (const r of results) {
    await t.test(r.id, () => assert.ok(r.ok, r.why));
  }
  t.diagnostic(`${results.filter((r) => r.ok).length}/${results.length} client scripts as expected`);
  assert.ok(results.length >= 40, `only ${results.length} client scripts`);
});

test('the runner refuses a file without client scripts', async () => {
  const e = await getEnv();
  const serverOnly = { ...file, vectors: file.vectors.filter((v) => v.role !== 'client') };
  await assert.rejects(runClientScripts(serverOnly, e), /no client-role script/);
});

// mutate returns a copy of the script id with edit applied to its steps.
function mutate(id, edit) {
  const v = structuredClone(file.vectors.find((x) => x.id === id && x.role === 'client'));
  assert.ok(v, `no client script ${id}`);
  edit(v.steps);
  return v;
}

const lastStep = (steps) => steps[steps.length - 1];

test('mutations: a script with one expectation changed fails', async (t) => {
  const e = await getEnv();
  const mutations = [
    ['client-handshake-too-large', 'error code too_large → malformed', (s) => (lastStep(s).expect[0].error = 'malformed')],
    ['client-handshake-other-identity', 'error code audience_mismatch → bad_signature', (s) => (lastStep(s).expect[0].error = 'bad_signature')],
    ['client-peer-close-4011', 'error code session_revoked → none', (s) => delete lastStep(s).expect[0].error],
    ['client-handshake-timeout', 'close code 4008 → 4002', (s) => (lastStep(s).expect[0].close_code = 4002)],
    ['client-peer-close-1001', 'retry true → false', (s) => (lastStep(s).expect[0].retry = false)],
    ['client-peer-close-4099', 'retry false → true', (s) => (lastStep(s).expect[0].retry = true)],
    ['client-handshake', 'state OPEN → REFRESHING', (s) => (lastStep(s).state = 'REFRESHING')],
    ['client-keepalive', 'one ping fewer', (s) => (s[3].expect = [])],
    ['client-deliver', 'other delivered octets', (s) => (lastStep(s).expect[0].data = 'dHdw')],
    ['client-send-too-large', 'the refused send expected to be sent', (s) => (s[2].expect = [{ action: 'send', message: 'binary', size: 101 }])],
  ];
  for (const [id, what, edit] of mutations) {
    await t.test(`${id}: ${what}`, async () => {
      const v = mutate(id, edit);
      const err = await runScript(e, v).then(() => null, (x) => x);
      assert.ok(err, `the mutated script ${id} (${what}) passed`);
      t.diagnostic(`${id}: ${err.message}`);
      // The unmutated script passes, so the failure is the mutation's.
      await runScript(e, file.vectors.find((x) => x.id === id && x.role === 'client'));
    });
  }
});

test('a response for another challenge fails the structural check', async () => {
  const e = await getEnv();
  const v = file.vectors.find((x) => x.id === 'client-handshake');
  const C = v.steps[0].input.data;
  const m = new ClientMachine({
    keyId: v.start.client_kid, keyPair: e.clients.get(v.start.client_kid), serverKeys: e.pinned,
    serverIdentity: file.server.identity, clockSkew: 60,
  }, v.start.at * 1000);
  const [send] = await m.message(v.start.at * 1000, true, C);
  await checkResponse(e, v.start.client_kid, send.data, C, null);
  const other = file.vectors.find((x) => x.id === 'client-rechallenge-other-socket').steps[2].input.data;
  await assert.rejects(checkResponse(e, v.start.client_kid, send.data, other, null), /claims/);
  // A response with a flipped signature bit does not verify.
  const [h, p, sig] = send.data.split('.');
  const bad = Buffer.from(sig, 'base64url');
  bad[0] ^= 1;
  await assert.rejects(checkResponse(e, v.start.client_kid, `${h}.${p}.${bad.toString('base64url')}`, C, null), /signature/);
});
