// The test vectors of spec section "Test vectors" (testdata/vectors.json),
// run two ways:
//
//  1. through wsproof.js: every client-role and exchange vector's challenge
//     goes through verifyChallenge, and the outcome must equal the vector's
//     result or error code exactly, as protocol.RunVectors does for Go;
//  2. through an independent JOSE implementation (panva/jose): every valid
//     vector's challenge, response and token must verify, and every vector
//     marked "jose": true must be refused by jose configured as spec section
//     "Negative cases" prescribes (pinned keys named by kid, an allow-list of
//     that key's algorithm, issuer and audience checks, zero clock leeway).
//     A survey of every negative vector reports which ones jose refuses, for
//     the maintainers of the "jose" field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as jose from 'jose';
import { ProtocolError, importKey, loadServerKeys, processAccept, verifyChallenge } from '../wsproof.js';
import { goCommand, repoRoot } from '../test-support/wsproof-server.js';

const file = JSON.parse(readFileSync(new URL('../../../testdata/vectors.json', import.meta.url), 'utf8'));
const { server, keys, vectors } = file;

const b64 = (s) => new Uint8Array(Buffer.from(s, 'base64url'));
const byKid = (set) => new Map(set.keys.map((k) => [k.kid, k]));
const clientPrivate = byKid(keys.client_private);
const registry = byKid(keys.registry);
const pinned = byKid(keys.server_public);
const tokenKeys = new Map(keys.server_private.keys.filter((k) => k.kty === 'oct').map((k) => [k.kid, k]));

const clientKeys = new Map();
async function clientKey(kid) {
  if (!clientKeys.has(kid)) clientKeys.set(kid, await importKey(clientPrivate.get(kid)));
  return clientKeys.get(kid);
}

// outcome runs fn and maps its result to a vector outcome: "valid", or the
// code of the ProtocolError it throws. Any other exception fails the test.
async function outcome(fn) {
  try {
    await fn();
    return 'valid';
  } catch (e) {
    if (e instanceof ProtocolError) return e.code;
    throw e;
  }
}

const want = (v) => (v.result === 'valid' ? 'valid' : v.error);

test('vector file', () => {
  assert.equal(file.spec, 'wsproof-v1');
  assert.ok(vectors.length > 100);
  assert.equal(new Set(vectors.map((v) => v.id)).size, vectors.length, 'duplicate vector ids');
});

test('client role and exchange vectors through wsproof.js', async (t) => {
  // One shared, loaded pinned set: passing the JWK Set as JSON text also
  // exercises the strict JSON path of loadServerKeys.
  const serverKeys = await loadServerKeys(JSON.stringify(keys.server_public));
  let n = 0;
  for (const v of vectors.filter((v) => v.role === 'client' || v.role === 'exchange')) {
    n++;
    await t.test(v.id, async () => {
      const kid = v.role === 'client' ? v.client_kid : v.expected.ckid;
      const keyPair = await clientKey(kid);
      let verified;
      const got = await outcome(async () => {
        // A client requires channel binding when its connection is TLS
        // and it is not configured for a deployment without binding (spec
        // section "When channel binding is required"); the vector's
        // require_channel_binding names the outcome, as protocol.RunVectors
        // reads it: TLS when the vector has an exporter value, unbound
        // accepted unless the vector requires binding.
        verified = await verifyChallenge(v.challenge, {
          keyId: kid,
          keyPair,
          serverKeys,
          serverIdentity: server.identity,
          tls: !!v.channel_binding,
          allowUnbound: !v.require_channel_binding,
          clockSkew: server.clock_skew,
          exporter: v.channel_binding ? b64(v.channel_binding) : null,
          sessionSid: v.session ? v.session.sid : undefined,
          sessionExp: v.session ? v.session.exp : undefined,
          now: v.now * 1000,
        });
      });
      assert.equal(got, want(v));
      if (v.role !== 'exchange') return;

      // Our response commits to the same claims as the vector's, in the same
      // bytes (the header and payload segments are deterministic), and an
      // independent implementation verifies its signature with the
      // registered key.
      const [h, p] = verified.response.split('.');
      assert.equal(`${h}.${p}`, v.response.split('.').slice(0, 2).join('.'));
      const reg = registry.get(kid);
      await jose.compactVerify(verified.response, await jose.importJWK(reg, reg.alg), { algorithms: [reg.alg] });
      assert.equal(verified.channelBound, !!v.channel_binding);

      const a = processAccept(v.accept, { clockSkew: server.clock_skew, now: v.now * 1000 });
      assert.equal(a.token, v.token);
      assert.equal(a.sub, v.expected.sub);
      assert.deepEqual(a.groups, v.expected.groups);
      assert.equal(a.exp, v.expected.exp);
      assert.equal(a.maxSize, JSON.parse(v.accept).max_size);
    });
  }
  assert.ok(n >= 20, 'too few client and exchange vectors');
});

// Key vectors and private keys through both clients. Go's outcomes come from
// internal/vectors/keyoutcomes, which loads every key vector with
// keys.ParseRegistry and keys.ParsePublicSet, and each private JWK below
// with keys.ParseJWK; wsproof.js loads the same bytes with loadServerKeys
// and importKey. A key vector is a registry: its expected outcome is
// ParseRegistry's. The JS client never loads a registry (that is the
// server's job), only pinned sets, which have the same format without the
// registry members (sub, groups, nbf, exp, revoked, cb_required: spec
// section "Format" says a pinned set ignores them). So wsproof.js must agree
// with ParsePublicSet on every key vector, and ParsePublicSet must agree with
// ParseRegistry except on the vectors whose only fault is a registry member,
// which both pinned-set loaders accept; the test names those vectors, so
// that any other disagreement fails it.
const REGISTRY_ONLY = ['key-groups-not-array', 'key-missing-sub'];

const b64bump = (v) => {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  return v.slice(0, -1) + A[A.indexOf(v.at(-1)) + 1];
};

// privateCases are private JWKs, as JSON texts, that import (or not) the
// same way in both clients: each client key of the vector file, and edits of
// it that the load-time rules refuse or allow.
function privateCases() {
  const out = [];
  const add = (label, jwk) => out.push({ label, text: JSON.stringify(jwk) });
  const serverPriv = byKid(keys.server_private);
  const otherD = { 'P-256': serverPriv.get('server-es256-2026').d, Ed25519: serverPriv.get('server-ed25519-2025').d };
  for (const jwk of keys.client_private.keys) {
    const k = jwk.kid;
    const without = (m) => Object.fromEntries(Object.entries(jwk).filter(([n]) => n !== m));
    add(`${k} as is`, jwk);
    add(`${k} key_ops ["sign"]`, { ...jwk, key_ops: ['sign'] });
    add(`${k} key_ops ["sign","verify"]`, { ...jwk, key_ops: ['sign', 'verify'] });
    add(`${k} key_ops ["verify"]`, { ...jwk, key_ops: ['verify'] });
    add(`${k} key_ops ["sign","sign"]`, { ...jwk, key_ops: ['sign', 'sign'] });
    add(`${k} key_ops "sign"`, { ...jwk, key_ops: 'sign' });
    add(`${k} use ""`, { ...jwk, use: '' });
    add(`${k} d null`, { ...jwk, d: null });
    add(`${k} d with a line break`, { ...jwk, d: jwk.d.slice(0, 2) + '\n' + jwk.d.slice(2) });
    add(`${k} d padded`, { ...jwk, d: jwk.d + '=' });
    if (jwk.d.length % 4 >= 2) add(`${k} d with unused bits`, { ...jwk, d: b64bump(jwk.d) });
    add(`${k} without alg`, without('alg'));
    add(`${k} k member`, { ...jwk, k: 'AQ' });
    add(`${k} oth member`, { ...jwk, oth: [] });
    if (jwk.kty === 'RSA') {
      for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi']) add(`${k} without ${m}`, without(m));
      add(`${k} dp of dq`, { ...jwk, dp: jwk.dq });
      add(`${k} qi wrong`, { ...jwk, qi: 'AQ' });
      add(`${k} d with a leading zero`, { ...jwk, d: jose.base64url.encode(new Uint8Array([0, ...b64(jwk.d)])) });
      add(`${k} crv member`, { ...jwk, crv: 'P-256' });
    } else {
      add(`${k} without d`, without('d'));
      if (otherD[jwk.crv]) add(`${k} d of another key`, { ...jwk, d: otherD[jwk.crv] });
      add(`${k} n member`, { ...jwk, n: 'AQAB' });
    }
  }
  return out;
}

test('every key vector and private key through both clients: Go and wsproof.js agree', async (t) => {
  const cases = privateCases();
  const r = spawnSync(goCommand(), ['run', './internal/vectors/keyoutcomes'], {
    cwd: repoRoot, input: JSON.stringify(cases.map((c) => c.text)), maxBuffer: 1 << 24, encoding: 'utf8',
  });
  assert.equal(r.status, 0, `keyoutcomes: ${r.stderr}`);
  const go = JSON.parse(r.stdout);

  const keyVectors = vectors.filter((v) => v.role === 'key');
  assert.deepEqual(Object.keys(go.vectors).sort(), keyVectors.map((v) => v.id).sort(), 'Go loaded another set of key vectors');
  for (const v of keyVectors) {
    await t.test(v.id, async () => {
      assert.equal(typeof v.key_set, 'string', 'key_set is the JSON text of the set');
      const g = go.vectors[v.id];
      assert.equal(g.registry, want(v), 'Go ParseRegistry disagrees with the vector');
      assert.equal(g.pinned, REGISTRY_ONLY.includes(v.id) ? 'valid' : want(v), 'Go ParsePublicSet');
      // key_set is the exact JSON text, so key-duplicate-member reaches the
      // strict parser with its duplicate member intact.
      assert.equal(await outcome(() => loadServerKeys(v.key_set)), g.pinned, 'wsproof.js loadServerKeys disagrees with Go ParsePublicSet');
    });
  }
  assert.deepEqual(keyVectors.filter((v) => go.vectors[v.id].registry !== go.vectors[v.id].pinned).map((v) => v.id).sort(), REGISTRY_ONLY);

  assert.equal(go.private.length, cases.length);
  let valid = 0;
  for (const [i, c] of cases.entries()) {
    await t.test(`private: ${c.label}`, async () => {
      const js = await outcome(() => importKey(JSON.parse(c.text)));
      assert.equal(js, go.private[i], 'wsproof.js importKey disagrees with Go keys.ParseJWK');
      if (js === 'valid') valid++;
    });
  }
  assert.ok(valid >= 3 * keys.client_private.keys.length, 'too few private keys import');
});

// ---------------------------------------------------------------------------
// jose

const importCache = new Map();
async function joseKey(jwk, alg) {
  const id = JSON.stringify([jwk, alg]);
  if (!importCache.has(id)) importCache.set(id, await jose.importJWK(jwk, alg));
  return importCache.get(id);
}

class NoKey extends Error {}

// bestEffortHeader reads a JWS or JWE protected header without judging it,
// to find the kid whose key and algorithm a verifier would use.
function bestEffortHeader(s) {
  try {
    return jose.decodeProtectedHeader(s);
  } catch {}
  try {
    const o = JSON.parse(s);
    return jose.decodeProtectedHeader(o.signatures ? o.signatures[0] : o);
  } catch {}
  return {};
}

// fallbackAlg is the allow-list when kid names no key: the header's own
// algorithm if it is a wsproof one, so that jose's refusal is about the
// missing key rather than the algorithm.
const fallbackAlg = (hdr) => (['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA'].includes(hdr.alg) ? hdr.alg : 'ES256');

// verifyJWS verifies a compact JWS the way a careful JOSE consumer does: the
// key is the one named by kid in set, the algorithm allow-list is that key's
// registered algorithm.
async function verifyJWS(s, set) {
  const hdr = bestEffortHeader(s);
  const named = set.get(hdr.kid);
  const algorithms = [named ? named.alg : fallbackAlg(hdr)];
  return jose.compactVerify(s, async (h) => {
    const k = set.get(h.kid);
    if (!k) throw new NoKey('no key for kid');
    return joseKey(k, k.alg);
  }, { algorithms });
}

// openToken decrypts a session token with the token key named by its kid,
// under an allow-list of that key's algorithm, then verifies the inner JWT
// with the server key named by its kid, with jose's claims checks for the
// server identity and the vector's clock with zero leeway: the
// configuration of spec section "Negative cases".
async function openToken(token, now) {
  const tokenKey = tokenKeys.get(bestEffortHeader(token).kid);
  const { plaintext } = await jose.compactDecrypt(token, async (h) => {
    const k = tokenKeys.get(h.kid);
    if (!k) throw new NoKey('no token key for kid');
    return jose.base64url.decode(k.k);
  }, { keyManagementAlgorithms: [tokenKey ? tokenKey.alg : 'dir'], contentEncryptionAlgorithms: ['A256GCM'] });
  const inner = new TextDecoder().decode(plaintext);
  const hdr = bestEffortHeader(inner);
  const named = pinned.get(hdr.kid);
  return jose.jwtVerify(inner, async (h) => {
    const k = pinned.get(h.kid);
    if (!k) throw new NoKey('no server key for kid');
    return joseKey(k, k.alg);
  }, {
    algorithms: [named ? named.alg : fallbackAlg(hdr)],
    issuer: server.identity,
    audience: server.identity,
    currentDate: new Date(now * 1000),
    clockTolerance: 0, // exp and nbf exactly; a leeway would accept token-expired
  });
}

// useKey imports each key of a key set with jose and uses it once: a key
// jose accepts at import but refuses at use (RSA under 2048 bits) counts as
// refused.
async function useKeys(keySet) {
  for (const jwk of keySet.keys) {
    const key = await jose.importJWK(jwk, jwk.alg);
    const jws = `${jose.base64url.encode(JSON.stringify({ alg: jwk.alg }))}.e30.${jose.base64url.encode(new Uint8Array(64))}`;
    try {
      await jose.compactVerify(jws, key, { algorithms: [jwk.alg] });
    } catch (e) {
      if (e.code !== 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') throw e;
    }
  }
}

// joseRun processes a vector with jose as the task description says and
// resolves to null when jose accepts it, or to the error jose raised.
async function joseRun(v) {
  try {
    switch (v.role) {
      case 'server':
        await verifyJWS(v.response, registry);
        break;
      case 'client':
        await verifyJWS(v.challenge, pinned);
        break;
      case 'token':
        await openToken(v.token, v.now);
        break;
      case 'key':
        await useKeys(JSON.parse(v.key_set));
        break;
      default:
        throw new Error(`no jose processing for role ${v.role}`);
    }
    return null;
  } catch (e) {
    return e;
  }
}

const describeError = (e) => (e instanceof NoKey ? `no key: ${e.message}` : `${e.code || e.name}: ${e.message}`);

test('jose verifies every valid vector', async (t) => {
  for (const v of vectors.filter((v) => v.result === 'valid' && v.role !== 'key')) {
    await t.test(v.id, async () => {
      if (v.challenge) {
        const { protectedHeader } = await verifyJWS(v.challenge, pinned);
        assert.equal(protectedHeader.typ, 'wsproof-challenge+jwt');
      }
      if (v.response) {
        const { protectedHeader } = await verifyJWS(v.response, registry);
        assert.equal(protectedHeader.typ, 'wsproof-response+jwt');
      }
      if (v.token) {
        const { payload, protectedHeader } = await openToken(v.token, v.now);
        assert.equal(protectedHeader.typ, 'wsproof-session+jwt');
        const x = v.expected;
        assert.equal(payload.sid, x.sid);
        assert.equal(payload.sub, x.sub);
        assert.deepEqual(payload.groups, x.groups);
        assert.equal(payload.ckid, x.ckid);
        assert.equal(payload.cnf.jkt, x.jkt);
        assert.equal(payload.exp, x.exp);
        if (x.cbh) assert.equal(payload.cbh, x.cbh);
      }
    });
  }
});

test('jose refuses every vector marked "jose": true', async (t) => {
  const marked = vectors.filter((v) => v.jose === true);
  assert.ok(marked.length > 0, 'no vector has "jose": true; the field is required');
  for (const v of marked) {
    await t.test(v.id, async () => {
      assert.equal(v.result, 'invalid', 'only negative vectors can be marked jose');
      const err = await joseRun(v);
      assert.ok(err, `jose accepts ${v.id}`);
    });
  }
});

test('survey: which negative vectors jose refuses', async (t) => {
  const rows = [];
  for (const v of vectors.filter((v) => v.result === 'invalid')) {
    const err = await joseRun(v);
    rows.push({ id: v.id, role: v.role, error: v.error, marked: v.jose === true, refused: !!err, why: err ? describeError(err) : '' });
  }
  const refused = rows.filter((r) => r.refused);
  const accepted = rows.filter((r) => !r.refused);
  t.diagnostic(`jose refuses ${refused.length} of ${rows.length} negative vectors`);
  for (const r of refused) t.diagnostic(`refuses ${r.id}${r.marked ? ' [jose]' : ''}: ${r.why}`);
  for (const r of accepted) t.diagnostic(`accepts ${r.id}${r.marked ? ' [jose] !!' : ''} (${r.error})`);
  if (process.env.WSPROOF_JOSE_REPORT) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(process.env.WSPROOF_JOSE_REPORT, JSON.stringify(rows, null, 2) + '\n');
  }
  assert.deepEqual(rows.filter((r) => r.marked && !r.refused).map((r) => r.id), []);
});
