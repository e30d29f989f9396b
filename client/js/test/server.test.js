// wsproof.js against the real Go server (`wsproof serve`): every algorithm
// this platform's WebCrypto supports over ws:// and wss:// (with TLS channel
// binding), the server identity taken from the URL dialed, refresh under
// continuous traffic, the accept's max_size, Pings, revocation, impostor
// pinned sets, an unenrolled key, servers that do not bind to the TLS
// channel (behind a TLS-terminating proxy, or on TLS 1.2) and reconnection
// with keep().
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { WebSocket, WebSocketServer } from 'ws';
import { ProtocolError, connect, generateKey, keep, publicJwk, supportedAlgorithms } from '../wsproof.js';
import {
  buildWsproof, cleanup, enroll, newRegistry, pinnedTLS, revoke, startServer, stopAll, tempDir, waitForKeys,
} from '../test-support/wsproof-server.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (bytes) => new TextDecoder().decode(bytes);

// within rejects when p does not settle in ms.
function within(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, reject) => (t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)))])
    .finally(() => clearTimeout(t));
}

// nextMessage resolves with the next application message, as text.
function nextMessage(conn, ms = 5000) {
  return within(new Promise((resolve) => {
    const on = (ev) => {
      conn.removeEventListener('message', on);
      resolve(text(ev.data));
    };
    conn.addEventListener('message', on);
  }), ms, 'message');
}

let dir, bin, registry, plain, fast, secure, unbound;
let algs;
const enrolled = []; // {alg, keyPair, kid}
let nKeys = 0;

async function newKey(alg, sub, groups = ['devices']) {
  const keyPair = await generateKey(alg);
  const jwk = await publicJwk(keyPair);
  await enroll(bin, registry, jwk, { sub, groups });
  nKeys++;
  return { alg, keyPair, kid: jwk.kid, sub, groups };
}

function options(srv, k, extra = {}) {
  return {
    keyId: k.kid,
    keyPair: k.keyPair,
    serverKeys: srv.pinned,
    serverIdentity: srv.identity,
    WebSocket,
    wsOptions: srv.ca ? pinnedTLS(srv) : undefined,
    ...extra,
  };
}

before(async () => {
  dir = tempDir();
  bin = await buildWsproof(dir);
  registry = newRegistry(dir);
  const st = (name) => {
    const d = `${dir}/${name}`;
    return d;
  };
  const short = ['--token-lifetime', '3s', '--refresh-before', '1500ms'];
  [plain, fast, secure, unbound] = await Promise.all([
    startServer(bin, { state: st('plain'), registry }),
    startServer(bin, { state: st('fast'), registry, args: short }),
    startServer(bin, { state: st('secure'), registry, tls: true, args: short }),
    // TLS without channel binding: what a client sees of a server behind a
    // proxy that terminates TLS.
    startServer(bin, { state: st('unbound'), registry, tls: true, args: ['--no-channel-binding'] }),
  ]);
  algs = await supportedAlgorithms();
  for (const alg of algs) enrolled.push(await newKey(alg, `device:${alg}`, ['devices', 'broadcast']));
});

after(async () => {
  await stopAll();
  cleanup(dir);
});

test('Node WebCrypto supports the algorithms', () => {
  for (const a of ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA']) assert.ok(algs.includes(a), a);
});

describe('every algorithm', () => {
  before(() => waitForKeys([plain, fast, secure, unbound], nKeys));

  for (const transport of ['ws', 'wss']) {
    test(`over ${transport}`, async (t) => {
      const srv = transport === 'ws' ? plain : secure;
      for (const k of enrolled) {
        await t.test(k.alg, async () => {
          const steps = [];
          // No serverIdentity: the client expects the URL it dials, which is
          // the server's default identity. Over wss:// it requires channel
          // binding, which the server gives (TLS 1.3 ends at it).
          const conn = await connect(srv.url, options(srv, k, {
            serverIdentity: undefined,
            onStep: (s) => steps.push(s),
          }));
          try {
            const s = conn.session;
            assert.equal(s.subject, k.sub);
            assert.deepEqual([...s.groups], k.groups);
            assert.equal(s.channelBound, transport === 'wss');
            assert.ok(s.expiry instanceof Date && s.expiry.getTime() > Date.now());
            assert.match(s.socketId, /^[A-Za-z0-9_-]{22,43}$/);
            assert.ok(s.token.split('.').length === 5, 'the token is a compact JWE');
            assert.equal(s.serverKeyId, JSON.parse(srv.pinned).keys[0].kid);
            assert.equal(s.maxSize, 65536, 'the accept\'s max_size');
            assert.deepEqual(steps, ['open', 'challenge', 'verified', 'response', 'accept']);
            const got = nextMessage(conn);
            conn.send(`hello ${k.alg}`);
            assert.equal(await got, `echo: hello ${k.alg}`);
          } finally {
            conn.close();
            const c = await conn.closed;
            assert.equal(c.code, 1000);
            assert.equal(c.retryable, false);
          }
        });
      }
    });
  }
});

describe('refresh under continuous traffic', () => {
  let k;
  before(async () => {
    k = await newKey('ES256', 'device:refresh');
    await waitForKeys([plain, fast, secure, unbound], nKeys);
  });

  for (const transport of ['ws', 'wss']) {
    test(`over ${transport}: no message lost or reordered across refreshes`, async () => {
      const srv = transport === 'ws' ? fast : secure;
      const conn = await connect(srv.url, options(srv, k));
      const first = conn.session;
      const sessions = [];
      const echoes = [];
      conn.addEventListener('refresh', (ev) => sessions.push(ev.session));
      conn.addEventListener('message', (ev) => echoes.push(text(ev.data)));
      let sent = 0;
      // Send a numbered message every few milliseconds until two refreshes
      // have completed and a little more, so that messages are in flight in
      // both directions while each refresh is outstanding.
      const deadline = Date.now() + 8000;
      while ((sessions.length < 2 || sent < 50) && Date.now() < deadline) {
        conn.send(String(sent++));
        await sleep(5);
      }
      for (let i = 0; i < 20; i++) conn.send(String(sent++));
      await within((async () => {
        while (echoes.length < sent) await sleep(10);
      })(), 5000, 'all echoes');
      conn.close();
      await conn.closed;
      assert.ok(sessions.length >= 2, `only ${sessions.length} refreshes`);
      assert.deepEqual(echoes, Array.from({ length: sent }, (_, i) => `echo: ${i}`));
      const tokens = new Set([first.token, ...sessions.map((s) => s.token)]);
      assert.equal(tokens.size, sessions.length + 1, 'every refresh brings a new token');
      for (const s of sessions) {
        assert.equal(s.socketId, first.socketId);
        assert.equal(s.channelBound, transport === 'wss');
        assert.ok(s.expiry >= first.expiry);
      }
      assert.equal(conn.session, sessions[sessions.length - 1]);
    });
  }
});

describe('failures', () => {
  let victim, stranger, good;
  before(async () => {
    victim = await newKey('EdDSA', 'device:victim');
    good = await newKey('ES256', 'device:good');
    stranger = { alg: 'ES256', keyPair: await generateKey('ES256'), sub: 'nobody' };
    stranger.kid = (await publicJwk(stranger.keyPair)).kid; // never enrolled
    await waitForKeys([plain, fast, secure, unbound], nKeys);
  });

  test('revocation closes the socket with 4011 and keep() stops, rejecting done', async () => {
    let conns = 0;
    const closes = [];
    const failures = [];
    const k = keep(plain.url, options(plain, victim), (conn) => {
      conns++;
      conn.addEventListener('close', (ev) => closes.push(ev));
      revoke(bin, registry, victim.kid);
    }, { initial: 50, max: 200 });
    k.addEventListener('failure', (ev) => failures.push(ev));
    const err = await within(k.done.then(() => assert.fail('done resolved'), (e) => e), 5000, 'keep to end');
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.code, 'session_revoked');
    assert.equal(err.closeCode, 4011);
    assert.equal(err.retryable, false);
    assert.equal(err.remote, true);
    assert.deepEqual(failures.map((ev) => [ev.code, ev.closeCode, ev.willRetry, ev.error]), [['session_revoked', 4011, false, err]]);
    assert.equal(conns, 1);
    assert.equal(closes.length, 1);
    assert.equal(closes[0].code, 4011);
    assert.equal(closes[0].reason, 'session revoked');
    await sleep(300);
    assert.equal(conns, 1, 'keep reconnected after a terminal code');
  });

  test('a pinned set with the right kid but another key: the client closes with 4003', async () => {
    const real = JSON.parse(plain.pinned);
    const forged = { keys: [] };
    for (const j of real.keys) {
      const kp = await generateKey(j.alg);
      forged.keys.push({ ...(await publicJwk(kp)), kid: j.kid });
    }
    const err = await connect(plain.url, options(plain, good, { serverKeys: forged })).then(() => null, (e) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.code, 'bad_signature');
    assert.equal(err.closeCode, 4003);
    assert.equal(err.remote, false);
    assert.equal(err.retryable, false);
  });

  test('another server\'s pinned set: the client closes with 4003', async () => {
    const err = await connect(plain.url, options(plain, good, { serverKeys: fast.pinned })).then(() => null, (e) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.code, 'unknown_key');
    assert.equal(err.closeCode, 4003);
    assert.equal(err.remote, false);
  });

  test('the wrong server identity: the client closes with 4003', async () => {
    const err = await connect(plain.url, options(plain, good, { serverIdentity: 'wss://elsewhere.example/ws' })).then(() => null, (e) => e);
    assert.equal(err.code, 'audience_mismatch');
    assert.equal(err.closeCode, 4003);
  });

  test('a wss:// server that does not bind to the TLS channel: channel_binding_required unless allowUnbound', async () => {
    const err = await connect(unbound.url, options(unbound, good)).then(() => null, (e) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.code, 'channel_binding_required');
    assert.equal(err.closeCode, 4003);
    assert.equal(err.remote, false);
    assert.equal(err.retryable, false);

    const conn = await connect(unbound.url, options(unbound, good, { allowUnbound: true }));
    assert.equal(conn.session.channelBound, false);
    const got = nextMessage(conn);
    conn.send('unbound');
    assert.equal(await got, 'echo: unbound');
    conn.close();
    await conn.closed;
  });

  test('TLS 1.2 has no exporter value: channel_binding_required unless allowUnbound', async () => {
    // wsproof serve speaks TLS 1.3 only, so this is a scripted TLS 1.2
    // server with the development certificate of the secure server, whose
    // challenges say cb "none", as a conforming server's must over TLS 1.2.
    const https = createServer({
      cert: readFileSync(`${dir}/secure/tls-dev.crt`), key: readFileSync(`${dir}/secure/tls-dev.key`), maxVersion: 'TLSv1.2',
    });
    const wss = new WebSocketServer({ server: https, perMessageDeflate: false, handleProtocols: () => 'wsproof.v1' });
    https.listen(0, '127.0.0.1');
    await once(https, 'listening');
    const url = `wss://127.0.0.1:${https.address().port}/ws`;
    const signer = await generateKey('ES256');
    const serverKeys = { keys: [{ ...(await publicJwk(signer)), kid: 'tls12' }] };
    const protocols = [];
    wss.on('connection', async (ws) => {
      protocols.push(ws._socket.getProtocol());
      const t = Math.floor(Date.now() / 1000);
      const b = (x) => Buffer.from(x).toString('base64url');
      const input = `${b(JSON.stringify({ alg: 'ES256', kid: 'tls12', typ: 'wsproof-challenge+jwt' }))}.${b(JSON.stringify({
        iss: url, sid: b(Buffer.alloc(16, 1)), nonce: b(Buffer.alloc(32, 2)), iat: t, exp: t + 30, algs: ['ES256'], cb: 'none',
      }))}`;
      const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, signer.privateKey, Buffer.from(input));
      ws.send(`${input}.${b(new Uint8Array(sig))}`);
      ws.once('message', () => ws.send(JSON.stringify({ token: 't', sub: 's', groups: [], exp: t + 300, max_size: 16 })));
    });
    try {
      const o = { keyId: good.kid, keyPair: good.keyPair, serverKeys, WebSocket, wsOptions: pinnedTLS(secure) };
      const err = await connect(url, o).then(() => null, (e) => e);
      assert.ok(err instanceof ProtocolError, String(err));
      assert.equal(err.code, 'channel_binding_required');
      const conn = await connect(url, { ...o, allowUnbound: true });
      assert.equal(conn.session.channelBound, false);
      assert.equal(conn.session.maxSize, 16);
      conn.close();
      await conn.closed;
      assert.deepEqual(protocols, ['TLSv1.2', 'TLSv1.2']);
    } finally {
      for (const c of wss.clients) c.terminate();
      wss.close();
      https.close();
    }
  });

  test('send refuses a message over the accept\'s max_size; the socket stays open', async () => {
    const conn = await connect(plain.url, options(plain, good));
    try {
      assert.throws(() => conn.send(new Uint8Array(65537)), RangeError);
      const got = nextMessage(conn);
      conn.send('still open');
      assert.equal(await got, 'echo: still open');
    } finally {
      conn.close();
      await conn.closed;
    }
  });

  test('the server answers the client\'s Pings', async () => {
    const conn = await connect(plain.url, options(plain, good, { pingInterval: 100 }));
    let closed = null;
    conn.addEventListener('close', (ev) => (closed = ev));
    await sleep(600);
    assert.equal(closed, null, 'the socket closed: no Pong');
    conn.close();
    assert.equal((await conn.closed).code, 1000);
  });

  test('an untrusted TLS certificate is terminal', async () => {
    const err = await connect(secure.url, options(secure, good, { wsOptions: {} })).then(() => null, (e) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.match(err.message, /certificate/);
    assert.equal(err.retryable, false);
  });

  // The server's 4003 is the same for every authentication failure (spec
  // section "Uniform denials and kid enumeration"), so the client cannot say
  // which it was; its message says what to check.
  const HINT = /authentication failed \(4003\): the server refused key id "[^"]+": is the key enrolled under this key id \(by default its RFC 7638 thumbprint\)/;

  test('an unenrolled key: the server closes with 4003, terminal, and the error says what to check', async () => {
    const err = await connect(plain.url, options(plain, stranger)).then(() => null, (e) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.closeCode, 4003);
    assert.equal(err.remote, true);
    assert.equal(err.retryable, false);
    assert.equal(err.code, null, '4003 does not say which check failed');
    assert.match(err.message, HINT);
    assert.ok(err.message.includes(`"${stranger.kid}"`), err.message);

    let opens = 0;
    const failures = [];
    const k = keep(plain.url, options(plain, stranger, { onStep: (s) => s === 'open' && opens++ }), () => {
      assert.fail('no connection expected');
    }, { initial: 50, max: 100 });
    k.addEventListener('failure', (ev) => failures.push(ev));
    const end = await within(k.done.then(() => assert.fail('done resolved'), (e) => e), 5000, 'keep to end');
    assert.ok(end instanceof ProtocolError, String(end));
    assert.equal(end.closeCode, 4003);
    assert.equal(end.retryable, false);
    assert.match(end.message, HINT);
    assert.deepEqual(failures.map((ev) => [ev.code, ev.closeCode, ev.retryable, ev.willRetry]), [[null, 4003, false, false]]);
    assert.equal(opens, 1);
  });

  test('an enrolled key under another key id than the one it was enrolled with: 4003 with the hint', async () => {
    // good is enrolled under its thumbprint; "good" is a plausible mistake.
    const err = await connect(plain.url, options(plain, { ...good, kid: 'good' })).then(() => null, (e) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.closeCode, 4003);
    assert.equal(err.retryable, false);
    assert.match(err.message, HINT);
    assert.ok(err.message.includes('"good"'), err.message);
  });

  test('an Origin the server does not allow: origin_not_allowed (HTTP 403), terminal, with its cause', async () => {
    // wsproof serve allows no browser Origin on /ws (spec section "Opening
    // handshake"); the ws package sends the header only when asked.
    const failures = [];
    const k = keep(plain.url, options(plain, good, { origin: 'https://evil.example' }), () => {
      assert.fail('no connection expected');
    }, { initial: 50, max: 100 });
    k.addEventListener('failure', (ev) => failures.push(ev));
    const err = await within(k.done.then(() => assert.fail('done resolved'), (e) => e), 5000, 'keep to end');
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.code, 'origin_not_allowed');
    assert.equal(err.retryable, false);
    assert.match(String(err.cause && err.cause.message), /403/);
    assert.deepEqual(failures.map((ev) => [ev.code, ev.retryable, ev.willRetry]), [['origin_not_allowed', false, false]]);
  });

  test('keep() reconnects after the server goes away (1001)', async () => {
    const state = `${dir}/restart`;
    let srv = await startServer(bin, { state, registry });
    try {
      await waitForKeys([srv], nKeys);
      const sockets = [];
      const k = keep(srv.url, options(srv, good), (conn) => sockets.push(conn), { initial: 50, max: 200 });
      await within((async () => {
        while (sockets.length < 1) await sleep(10);
      })(), 5000, 'first connection');
      await srv.stop();
      const c = await sockets[0].closed;
      assert.equal(c.code, 1001);
      assert.equal(c.retryable, true);
      srv = await startServer(bin, { state, registry, listen: srv.addr });
      await within((async () => {
        while (sockets.length < 2) await sleep(10);
      })(), 8000, 'reconnection');
      assert.equal(sockets[1].session.subject, 'device:good');
      k.stop();
      assert.deepEqual(await k.done, { stopped: true });
      await sockets[1].closed;
    } finally {
      await srv.stop();
    }
  });
});
