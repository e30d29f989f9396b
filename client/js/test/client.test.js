// wsproof.js against a scripted server (the `ws` package's WebSocketServer
// with a server key made here), for the rows of spec section "Client state
// machine" that the real server never exercises, and unit tests of the
// encodings, keys and the error table.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { WebSocket, WebSocketServer } from 'ws';
import {
  diagnosticReason, ALGORITHMS, ClientMachine, ERRORS, ProtocolError, SUBPROTOCOL, closeRetryable, codeForClose, connect, generateKey, importKey, keep,
  loadServerKeys, processAccept, publicJwk, thumbprint, verifyChallenge,
} from '../wsproof.js';

const IDENTITY = 'wss://fake.example/ws';
const enc = (s) => Buffer.from(s).toString('base64url');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Math.floor(Date.now() / 1000);

let serverKey, pinned, client, clientJwk;

before(async () => {
  serverKey = await generateKey('ES256');
  pinned = { keys: [{ ...(await publicJwk(serverKey)), kid: 'srv' }] };
  client = await generateKey('ES256');
  clientJwk = await publicJwk(client);
});

// challengeText signs a challenge with the scripted server's key. claims
// and header override the defaults; raw* replace whole segments.
async function challengeText({ claims = {}, header = {}, rawPayload, sigMangle } = {}) {
  const t = now();
  const c = {
    iss: IDENTITY, sid: enc(Buffer.alloc(16, 7)), nonce: enc(Buffer.alloc(32, 9)), iat: t, exp: t + 30,
    algs: ['ES256', 'EdDSA'], cb: 'none', ...claims,
  };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete c[k];
  const h = { alg: 'ES256', kid: 'srv', typ: 'wsproof-challenge+jwt', ...header };
  const input = `${enc(JSON.stringify(h))}.${rawPayload ?? enc(JSON.stringify(c))}`;
  const sig = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, serverKey.privateKey, Buffer.from(input)));
  const s = Buffer.from(sig).toString('base64url');
  return `${input}.${sigMangle ? sigMangle(s) : s}`;
}

// A scripted server: each connection becomes a Peer whose messages the test
// reads in order.
class Peer {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    ws.on('message', (data, isBinary) => this.push({ data: isBinary ? data : data.toString(), isBinary }));
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  }
  push(m) {
    const w = this.waiters.shift();
    if (w) w(m);
    else this.queue.push(m);
  }
  next() {
    return this.queue.length ? Promise.resolve(this.queue.shift()) : new Promise((r) => this.waiters.push(r));
  }
  // handshake sends a challenge, checks the response and sends an accept.
  async handshake({ accept = {}, challenge } = {}) {
    const C = challenge ?? (await challengeText());
    this.ws.send(C);
    const r = await this.next();
    assert.equal(r.isBinary, false);
    const sid = await checkResponse(r.data, C);
    this.ws.send(JSON.stringify({ token: 'a.b.c.d.e', sub: 'alice', groups: ['g'], exp: now() + 300, max_size: 65536, ...accept }));
    return sid;
  }
}

// checkResponse verifies a response the way a server would, for the checks
// that concern the client: exact header, claims, cha and the signature.
async function checkResponse(R, C, cb) {
  const [h, p, s] = R.split('.');
  assert.equal(Buffer.from(h, 'base64url').toString(), JSON.stringify({ alg: 'ES256', kid: clientJwk.kid, typ: 'wsproof-response+jwt' }));
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const cc = JSON.parse(Buffer.from(C.split('.')[1], 'base64url').toString());
  const cha = Buffer.from(await crypto.subtle.digest('SHA-256', Buffer.from(C))).toString('base64url');
  const want = { aud: cc.iss, sid: cc.sid, nonce: cc.nonce, cha };
  if (cb) want.cb = cb;
  assert.deepEqual(claims, want);
  const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, client.publicKey, Buffer.from(s, 'base64url'), Buffer.from(`${h}.${p}`));
  assert.ok(ok, 'response signature');
  return cc.sid;
}

async function scripted(script, wssOptions = {}) {
  const wss = new WebSocketServer({
    host: '127.0.0.1', port: 0, perMessageDeflate: false,
    handleProtocols: (p) => (p.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    ...wssOptions,
  });
  await once(wss, 'listening');
  const peers = [];
  wss.on('connection', (ws) => {
    const peer = new Peer(ws);
    peers.push(peer);
    Promise.resolve(script(peer, peers.length)).catch((e) => {
      peer.error = e;
    });
  });
  return {
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    peers,
    close: () => new Promise((r) => {
      for (const c of wss.clients) c.terminate();
      wss.close(r);
    }),
  };
}

const opts = (extra = {}) => ({
  keyId: clientJwk.kid, keyPair: client, serverKeys: pinned, serverIdentity: IDENTITY, WebSocket, handshakeTimeout: 3000, ...extra,
});

const failure = (p) => p.then(() => assert.fail('expected a failure'), (e) => e);

describe('handshake states', () => {
  const cases = [
    ['a binary message before the challenge', async (p) => p.ws.send(Buffer.from('x')), 'unexpected_message'],
    ['an oversized binary message before the challenge (size before type)', async (p) => p.ws.send(Buffer.alloc(5000)), 'too_large'],
    ['an accept before the challenge', async (p) => p.ws.send('{"token":"t"}'), 'unexpected_message'],
    ['an oversized challenge', async (p) => p.ws.send('a'.repeat(4097)), 'too_large'],
    ['a challenge with non-ASCII text', async (p) => p.ws.send('é.b.c'), 'malformed'],
    ['a challenge with a padded signature', async (p) => p.ws.send(await challengeText({ sigMangle: (s) => s + '=' })), 'malformed'],
    ['a challenge with a standard-alphabet signature', async (p) => p.ws.send(await challengeText({ sigMangle: (s) => s.replace(/-/g, '+').replace(/_/g, '/') + (/[-_]/.test(s) ? '' : '+') })), 'malformed'],
    ['a challenge with a DER signature length', async (p) => p.ws.send(await challengeText({ sigMangle: (s) => s + 'AA' })), 'bad_signature'],
    ['a challenge with a case-variant claim', async (p) => {
      const t = now();
      const raw = enc(`{"iss":"${IDENTITY}","sid":"${enc(Buffer.alloc(16))}","nonce":"${enc(Buffer.alloc(32))}","iat":${t},"exp":${t + 30},"algs":["ES256"],"cb":"none","ISS":"x"}`);
      p.ws.send(await challengeText({ rawPayload: raw }));
    }, 'malformed'],
    ['a challenge with iat written as 1.0e9', async (p) => {
      const raw = enc(`{"iss":"${IDENTITY}","sid":"${enc(Buffer.alloc(16))}","nonce":"${enc(Buffer.alloc(32))}","iat":${now()}.0,"exp":${now() + 30},"algs":["ES256"],"cb":"none"}`);
      p.ws.send(await challengeText({ rawPayload: raw }));
    }, 'malformed'],
    ['a challenge with a zip header', async (p) => p.ws.send(await challengeText({ header: { zip: 'DEF' } })), 'header_not_allowed'],
    ['a challenge typed with an application/ prefix', async (p) => p.ws.send(await challengeText({ header: { typ: 'application/wsproof-challenge+jwt' } })), 'wrong_type'],
    ['a challenge with a 33-byte sid', async (p) => p.ws.send(await challengeText({ claims: { sid: enc(Buffer.alloc(33)) } })), 'malformed'],
    ['a challenge with a 257-octet iss', async (p) => p.ws.send(await challengeText({ claims: { iss: 'é'.repeat(129) } })), 'malformed'],
    ['a challenge with an unknown cb', async (p) => p.ws.send(await challengeText({ claims: { cb: 'tls-unique' } })), 'malformed'],
    ['a challenge without algs', async (p) => p.ws.send(await challengeText({ claims: { algs: undefined } })), 'malformed'],
    ['a challenge that demands channel binding over ws://', async (p) => p.ws.send(await challengeText({ claims: { cb: 'tls-exporter' } })), 'channel_binding_mismatch'],
    ['a binary message before the accept', async (p) => {
      p.ws.send(await challengeText());
      await p.next();
      p.ws.send(Buffer.from('early'));
    }, 'unexpected_message'],
    ['a second challenge instead of the accept', async (p) => {
      p.ws.send(await challengeText());
      await p.next();
      p.ws.send(await challengeText());
    }, 'unexpected_message'],
    ['an accept with a case-variant member inside an unknown member', async (p) => {
      p.ws.send(await challengeText());
      await p.next();
      p.ws.send(`{"token":"t","sub":"s","groups":[],"exp":${now() + 60},"max_size":1,"x":[{"a":1,"A":2}]}`);
    }, 'malformed'],
    ['an accept with an expired exp', async (p) => {
      p.ws.send(await challengeText());
      await p.next();
      p.ws.send(`{"token":"t","sub":"s","groups":[],"exp":${now() - 61},"max_size":65536}`);
    }, 'token_expired'],
    ['an accept without max_size', async (p) => {
      p.ws.send(await challengeText());
      await p.next();
      p.ws.send(`{"token":"t","sub":"s","groups":[],"exp":${now() + 60}}`);
    }, 'malformed'],
    ['a challenge from another server identity', async (p) => p.ws.send(await challengeText({ claims: { iss: 'wss://other.example/ws' } })), 'audience_mismatch'],
    ['an oversized accept', async (p) => {
      p.ws.send(await challengeText());
      await p.next();
      p.ws.send(`{"token":"t","sub":"s","groups":[],"exp":${now() + 60},"max_size":1,"pad":"${'x'.repeat(16384)}"}`);
    }, 'too_large'],
  ];
  for (const [name, script, code] of cases) {
    test(name, async () => {
      const srv = await scripted(script);
      try {
        const err = await failure(connect(srv.url, opts()));
        assert.ok(err instanceof ProtocolError, String(err));
        assert.equal(err.code, code);
        assert.equal(err.closeCode, ERRORS[code].close);
        assert.equal(err.remote, false);
        assert.doesNotMatch(err.message, /fake\.example|é|xxxx/);
        const c = await srv.peers[0].closed;
        assert.equal(c.code, ERRORS[code].close);
        assert.equal(c.reason, ERRORS[code].reason);
      } finally {
        await srv.close();
      }
    });
  }

  test('the handshake timeout closes with 4008 and is retryable', async () => {
    const srv = await scripted(() => {});
    try {
      const err = await failure(connect(srv.url, opts({ handshakeTimeout: 200 })));
      assert.equal(err.code, 'handshake_timeout');
      assert.equal(err.retryable, true);
      assert.deepEqual(await srv.peers[0].closed, { code: 4008, reason: 'handshake timed out' });
    } finally {
      await srv.close();
    }
  });

  test('a server that does not select wsproof.v1 fails the connection', async () => {
    const srv = await scripted(() => {}, { handleProtocols: () => false });
    try {
      const err = await failure(connect(srv.url, opts()));
      assert.match(err.message, /did not select subprotocol/);
      assert.equal(err.retryable, false);
    } finally {
      await srv.close();
    }
  });

  test('HTTP 429 is rate_limited and retryable; 403 is origin_not_allowed', async () => {
    for (const [status, code, retryable] of [[429, 'rate_limited', true], [403, 'origin_not_allowed', false]]) {
      const srv = await scripted(() => {}, { verifyClient: (_info, cb) => cb(false, status) });
      try {
        const err = await failure(connect(srv.url, opts()));
        assert.equal(err.code, code);
        assert.equal(err.retryable, retryable);
      } finally {
        await srv.close();
      }
    }
  });

  test('the origin option sets the Origin header', async () => {
    let origin;
    const srv = await scripted(() => {}, { verifyClient: (info, cb) => { origin = info.origin; cb(false, 403); } });
    try {
      await failure(connect(srv.url, opts({ origin: 'https://app.example' })));
      assert.equal(origin, 'https://app.example');
    } finally {
      await srv.close();
    }
  });

  test('a server closure during the handshake rejects with its code', async () => {
    const srv = await scripted(async (p) => {
      p.ws.send(await challengeText());
      await p.next();
      p.ws.close(4003, 'authentication failed');
    });
    try {
      const err = await failure(connect(srv.url, opts()));
      assert.equal(err.code, null);
      assert.equal(err.closeCode, 4003);
      assert.equal(err.remote, true);
      assert.equal(err.retryable, false);
    } finally {
      await srv.close();
    }
  });
});

describe('open and refreshing states', () => {
  test('re-challenges are answered while messages flow both ways, in order', async () => {
    const got = [];
    const srv = await scripted(async (p) => {
      const sid = await p.handshake();
      // Binary messages before, around and after a re-challenge.
      p.ws.send(Buffer.from('m1'));
      const C = await challengeText({ claims: { sid, nonce: enc(Buffer.alloc(32, 1)) } });
      p.ws.send(C);
      p.ws.send(Buffer.from('m2'));
      // The client's application messages and its response arrive in the
      // order it sent them.
      for (;;) {
        const m = await p.next();
        if (!m.isBinary) {
          await checkResponse(m.data, C);
          break;
        }
        got.push(m.data.toString());
      }
      p.ws.send(Buffer.from('m3'));
      p.ws.send(JSON.stringify({ token: 'n.e.w.t.k', sub: 'alice', groups: ['h'], exp: now() + 600, max_size: 100, extra: { ignored: true } }));
      p.ws.send(Buffer.from('m4'));
      for (;;) {
        const m = await p.next();
        got.push(m.data.toString());
        if (m.data.toString() === 'last') break;
      }
      p.ws.close(1000);
    });
    try {
      const steps = [];
      const conn = await connect(srv.url, opts({ onStep: (s) => steps.push(s) }));
      const first = conn.session;
      assert.equal(first.token, 'a.b.c.d.e');
      const msgs = [];
      const refreshed = new Promise((r) => conn.addEventListener('refresh', (ev) => r(ev.session)));
      conn.addEventListener('message', (ev) => {
        msgs.push(new TextDecoder().decode(ev.data));
        conn.send(`re ${msgs.length}`);
      });
      const s = await refreshed;
      conn.send('last');
      const c = await conn.closed;
      assert.equal(c.code, 1000);
      assert.deepEqual(msgs, ['m1', 'm2', 'm3', 'm4']);
      assert.deepEqual(got, ['re 1', 're 2', 're 3', 're 4', 'last']);
      assert.equal(s.token, 'n.e.w.t.k');
      assert.equal(s.maxSize, 100);
      assert.equal(first.maxSize, 65536);
      assert.deepEqual([...s.groups], ['h']);
      assert.equal(s.socketId, first.socketId);
      assert.equal(conn.session, s);
      assert.deepEqual(steps, ['open', 'challenge', 'verified', 'response', 'accept',
        'challenge', 'verified', 'response', 'accept', 'refresh']);
      assert.throws(() => conn.send('after'), /not open/);
    } finally {
      await srv.close();
    }
  });

  const openCases = [
    ['an accept with no response outstanding', async (p) => p.ws.send(`{"token":"t","sub":"s","groups":[],"exp":${now() + 60},"max_size":1}`), 'unexpected_message'],
    ['an application message over maxMessageSize', async (p) => p.ws.send(Buffer.alloc(1025)), 'too_large'],
    ['a text message over 4096 octets in OPEN', async (p) => p.ws.send('x'.repeat(4097)), 'too_large'],
    ['a re-challenge for another socket', async (p) => p.ws.send(await challengeText({ claims: { sid: enc(Buffer.alloc(16, 3)) } })), 'socket_mismatch'],
    ['text other than the accept while refreshing', async (p, sid) => {
      p.ws.send(await challengeText({ claims: { sid } }));
      await p.next();
      p.ws.send(await challengeText({ claims: { sid } }));
    }, 'unexpected_message'],
    ['an expired accept while refreshing', async (p, sid) => {
      p.ws.send(await challengeText({ claims: { sid } }));
      await p.next();
      p.ws.send(`{"token":"t","sub":"s","groups":[],"exp":${now() - 100},"max_size":1}`);
    }, 'token_expired'],
    ['a re-challenge that outlives the session token', async (p, sid) => {
      // The session token expires at now + 300 (Peer.handshake).
      p.ws.send(await challengeText({ claims: { sid, iat: now() + 1, exp: now() + 301 } }));
    }, 'malformed'],
    ['a refresh accept with max_size 0', async (p, sid) => {
      p.ws.send(await challengeText({ claims: { sid } }));
      await p.next();
      p.ws.send(`{"token":"t","sub":"s","groups":[],"exp":${now() + 100},"max_size":0}`);
    }, 'malformed'],
  ];
  for (const [name, script, code] of openCases) {
    test(name, async () => {
      const srv = await scripted(async (p) => script(p, await p.handshake()));
      try {
        const conn = await connect(srv.url, opts({ maxMessageSize: 1024 }));
        const ev = await new Promise((r) => conn.addEventListener('close', r));
        assert.equal(ev.code, ERRORS[code].close);
        assert.equal(ev.error.code, code);
        assert.equal(ev.retryable, ERRORS[code].retryable);
        const c = await srv.peers[0].closed;
        assert.deepEqual(c, { code: ERRORS[code].close, reason: ERRORS[code].reason });
        assert.equal((await conn.closed).code, ERRORS[code].close);
      } finally {
        await srv.close();
      }
    });
  }

  test('a text message up to 16384 octets is an acceptable accept while refreshing', async () => {
    const srv = await scripted(async (p) => {
      const sid = await p.handshake();
      p.ws.send(await challengeText({ claims: { sid } }));
      await p.next();
      p.ws.send(`{"token":"t","sub":"s","groups":[],"exp":${now() + 60},"max_size":5,"pad":"${'x'.repeat(8000)}"}`);
    });
    try {
      const conn = await connect(srv.url, opts());
      const s = await new Promise((r) => conn.addEventListener('refresh', (ev) => r(ev.session)));
      assert.equal(s.subject, 's');
      conn.close();
      await conn.closed;
    } finally {
      await srv.close();
    }
  });

  test('messages that arrive before the first listener are held for it', async () => {
    const srv = await scripted(async (p) => {
      await p.handshake();
      for (let i = 0; i < 5; i++) p.ws.send(Buffer.from([i]));
    });
    try {
      const conn = await connect(srv.url, opts());
      await sleep(100);
      const got = [];
      conn.addEventListener('message', (ev) => got.push(ev.data[0]));
      assert.deepEqual(got, [0, 1, 2, 3, 4]);
      conn.close();
      await conn.closed;
    } finally {
      await srv.close();
    }
  });

  test('send takes strings, Uint8Arrays and ArrayBuffers, always as binary', async () => {
    const got = [];
    const srv = await scripted(async (p) => {
      await p.handshake();
      for (let i = 0; i < 3; i++) got.push(await p.next());
      p.ws.close(1000);
    });
    try {
      const conn = await connect(srv.url, opts());
      conn.send('héllo');
      conn.send(new Uint8Array([1, 2]));
      conn.send(new Uint8Array([9, 3, 4, 9]).subarray(1, 3).buffer.slice(1, 3));
      await conn.closed;
      assert.deepEqual(got.map((m) => m.isBinary), [true, true, true]);
      assert.equal(got[0].data.toString(), 'héllo');
      assert.deepEqual([...got[1].data], [1, 2]);
      assert.deepEqual([...got[2].data], [3, 4]);
    } finally {
      await srv.close();
    }
  });
});

describe('server identity, plaintext and channel binding options', () => {
  test('without serverIdentity the client expects the URL it dials', async () => {
    const srv = await scripted(async (p) => {
      const C = await challengeText({ claims: { iss: srv.url } });
      await p.handshake({ challenge: C });
    });
    try {
      const conn = await connect(srv.url + '?ignored=1', opts({ serverIdentity: undefined }));
      assert.equal(conn.session.subject, 'alice');
      conn.close();
      await conn.closed;
    } finally {
      await srv.close();
    }
  });

  test('the identity is checked even when not configured: another iss is audience_mismatch', async () => {
    // IDENTITY, which the scripted challenges carry, is not the URL dialed.
    const srv = await scripted(async (p) => p.ws.send(await challengeText()));
    try {
      const err = await failure(connect(srv.url, opts({ serverIdentity: undefined })));
      assert.equal(err.code, 'audience_mismatch');
      assert.equal(err.closeCode, 4003);
      assert.deepEqual(await srv.peers[0].closed, { code: 4003, reason: 'authentication failed' });
    } finally {
      await srv.close();
    }
  });

  test('ws:// only to loopback hosts unless insecurePlaintext', async () => {
    for (const url of ['ws://example.com/ws', 'ws://10.0.0.1:7700/ws', 'ws://[::2]/ws', 'ws://localhost.example/ws']) {
      await assert.rejects(connect(url, opts()), (e) => e instanceof TypeError && /loopback/.test(e.message), url);
    }
    // With insecurePlaintext the dial proceeds (and here fails as a network
    // failure, not as a refused option).
    const err = await failure(connect('ws://192.0.2.1:9/ws', opts({ insecurePlaintext: true, handshakeTimeout: 200 })));
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.retryable, true);
  });

  test('requireChannelBinding was removed in favour of allowUnbound', async () => {
    await assert.rejects(connect('ws://127.0.0.1:1/ws', opts({ requireChannelBinding: true })), /allowUnbound/);
    await assert.rejects(verifyChallenge('a.b.c', opts({ requireChannelBinding: false })), /allowUnbound/);
  });

  test('verifyChallenge: a TLS connection requires channel binding unless allowUnbound', async () => {
    const C = await challengeText();
    const exporter = new Uint8Array(32).fill(5);
    for (const [o, code] of [
      [{ tls: true }, 'channel_binding_required'],
      [{ exporter }, 'channel_binding_required'],
      [{ tls: true, allowUnbound: true }, 'valid'],
      [{ exporter, allowUnbound: true }, 'valid'],
      [{ tls: false }, 'valid'],
      [{}, 'valid'],
    ]) {
      const got = await verifyChallenge(C, opts(o)).then(() => 'valid', (e) => e.code);
      assert.equal(got, code, JSON.stringify(Object.keys(o)));
    }
    await assert.rejects(verifyChallenge(C, opts({ serverIdentity: undefined })), TypeError);
  });
});

describe('max_size, keepalive and slow readers', () => {
  test('send refuses a message longer than the accept\'s max_size and the socket stays open', async () => {
    const got = [];
    const srv = await scripted(async (p) => {
      await p.handshake({ accept: { max_size: 10 } });
      for (let i = 0; i < 2; i++) got.push(await p.next());
      p.ws.close(1000);
    });
    try {
      const conn = await connect(srv.url, opts());
      assert.equal(conn.session.maxSize, 10);
      conn.send('0123456789');
      assert.throws(() => conn.send('0123456789A'), (e) => e instanceof RangeError && /max_size/.test(e.message));
      conn.send(new Uint8Array(3));
      const c = await conn.closed;
      assert.equal(c.code, 1000);
      assert.deepEqual(got.map((m) => m.data.length), [10, 3]);
    } finally {
      await srv.close();
    }
  });

  test('Pings keep a socket alive while the server answers them', async () => {
    let pings = 0;
    const srv = await scripted(async (p) => {
      p.ws.on('ping', () => pings++);
      await p.handshake();
    });
    try {
      const conn = await connect(srv.url, opts({ pingInterval: 50 }));
      let closed = false;
      conn.addEventListener('close', () => (closed = true));
      await sleep(400);
      assert.equal(closed, false);
      assert.ok(pings >= 4, `only ${pings} pings`);
      conn.close();
      await conn.closed;
    } finally {
      await srv.close();
    }
  });

  test('nothing received for two ping intervals closes with keepalive_timeout, retryable', async () => {
    const srv = await scripted((p) => p.handshake(), { autoPong: false });
    try {
      const conn = await connect(srv.url, opts({ pingInterval: 100 }));
      const t0 = Date.now();
      const c = await conn.closed;
      assert.ok(Date.now() - t0 >= 150, 'closed before two intervals');
      assert.equal(c.code, 4007);
      assert.equal(c.reason, 'keepalive timed out');
      assert.equal(c.retryable, true);
      assert.equal(c.error.code, 'keepalive_timeout');
      assert.deepEqual(await srv.peers[0].closed, { code: 4007, reason: 'keepalive timed out' });
    } finally {
      await srv.close();
    }
  });

  test('a server that stops reading: slow_reader, retryable', async () => {
    const srv = await scripted(async (p) => {
      await p.handshake();
      p.ws._socket.pause();
    });
    try {
      const conn = await connect(srv.url, opts({ writeTimeout: 300 }));
      await sleep(50);
      const chunk = new Uint8Array(65536);
      for (let i = 0; i < 4000 && conn.bufferedAmount < 4 << 20; i++) conn.send(chunk);
      assert.ok(conn.bufferedAmount > 0, 'nothing queued');
      const c = await conn.closed;
      assert.equal(c.code, 4009);
      assert.equal(c.reason, 'peer too slow');
      assert.equal(c.retryable, true);
      assert.equal(c.error.code, 'slow_reader');
    } finally {
      await srv.close();
    }
  });

  test('the handshake deadline also bounds the wait for the accept', async () => {
    const srv = await scripted(async (p) => {
      p.ws.send(await challengeText());
      await p.next(); // the response; no accept follows
    });
    try {
      const err = await failure(connect(srv.url, opts({ handshakeTimeout: 300 })));
      assert.equal(err.code, 'handshake_timeout');
      assert.equal(err.closeCode, 4008);
      assert.deepEqual(await srv.peers[0].closed, { code: 4008, reason: 'handshake timed out' });
    } finally {
      await srv.close();
    }
  });
});

describe('retry', () => {
  // Spec section "Retry", one row per way a server can end a socket.
  const table = [
    [1000, false], [1001, true], [1005, false], [1006, true], [1008, false], [1011, true], [1012, true], [1013, true],
    [1014, true], [4000, false], [4001, false], [4002, false], [4003, false], [4004, false], [4005, false], [4006, false],
    [4007, true], [4008, true], [4009, true], [4010, true], [4011, false], [4029, true], [4050, true], [4099, false], [4999, false],
  ];

  test('closeRetryable and codeForClose follow the Retry table', () => {
    for (const [code, retry] of table) assert.equal(closeRetryable(code), retry, String(code));
    assert.equal(codeForClose(4003), null);
    assert.equal(codeForClose(4007), 'keepalive_timeout');
    assert.equal(codeForClose(4009), 'slow_reader');
    assert.equal(codeForClose(4011), 'session_revoked');
    assert.equal(codeForClose(4099), null);
    assert.equal(codeForClose(1001), null);
  });

  test('a live socket the server closes reports the Retry table\'s answer', async () => {
    for (const [code, retry] of table.filter(([c]) => c !== 1006)) {
      const srv = await scripted(async (p) => {
        await p.handshake();
        if (code === 1005) p.ws.close();
        else p.ws.close(code);
      });
      try {
        const conn = await connect(srv.url, opts());
        const c = await conn.closed;
        assert.equal(c.code, code);
        assert.equal(c.retryable, retry, String(code));
        assert.equal(c.error === null, code === 1000, String(code));
        if (c.error) assert.equal(c.error.remote, true);
      } finally {
        await srv.close();
      }
    }
  });

  test('a connection lost without a Close frame is retryable', async () => {
    const srv = await scripted(async (p) => {
      await p.handshake();
      p.ws.terminate();
    });
    try {
      const conn = await connect(srv.url, opts());
      const c = await conn.closed;
      assert.equal(c.code, 1006);
      assert.equal(c.retryable, true);
    } finally {
      await srv.close();
    }
  });
});

describe('ClientMachine', () => {
  const machine = async (extra = {}, t = Date.now()) => new ClientMachine({
    keyId: clientJwk.kid, keyPair: client, serverKeys: await loadServerKeys(pinned), serverIdentity: IDENTITY, ...extra,
  }, t);
  const acceptText = () => JSON.stringify({ token: 't', sub: 's', groups: [], exp: now() + 300, max_size: 100 });
  const types = (acts) => acts.filter((a) => a.type !== 'timer').map((a) => (a.type === 'close' ? `close ${a.code ?? a.closeCode}` : a.type));

  test('needs a loaded pinned set and an identity', async () => {
    assert.throws(() => new ClientMachine({ keyId: clientJwk.kid, keyPair: client, serverKeys: pinned, serverIdentity: IDENTITY }, 0), TypeError);
    await assert.rejects(machine({ serverIdentity: '' }), TypeError);
    assert.equal((await machine()).state, 'AWAIT_CHALLENGE');
    assert.equal((await machine({ handshakeTimeout: 500 }, 1000)).timerAt, 1500);
  });

  test('messages wait for a challenge being verified; other inputs do not', async () => {
    const m = await machine();
    const t = Date.now();
    const p1 = m.message(t, true, await challengeText());
    assert.ok(p1 instanceof Promise);
    assert.equal(m.busy, true);
    const p2 = m.message(t, true, acceptText());
    assert.ok(p2 instanceof Promise, 'a message behind a pending one waits');
    assert.deepEqual(types(await p1), ['send']);
    assert.deepEqual(types(await p2), ['accepted']);
    assert.equal(m.state, 'OPEN');
    assert.equal(m.busy, false);
    // In OPEN a binary message is processed at once.
    const d = m.message(t, false, new Uint8Array([1]));
    assert.ok(Array.isArray(d));
    assert.deepEqual(types(d), ['deliver']);
    // A re-challenge, then a binary message: delivered after the response.
    const order = [];
    const r1 = m.message(t, true, await challengeText({ claims: { sid: m.session.socketId } }));
    const r2 = m.message(t, false, new Uint8Array([2]));
    r1.then((a) => order.push(...types(a)));
    r2.then((a) => order.push(...types(a)));
    // The application's send is not held behind the verification.
    assert.deepEqual(types(m.send(t, new Uint8Array(100))), ['send']);
    assert.throws(() => m.send(t, new Uint8Array(101)), (e) => e instanceof RangeError && Array.isArray(e.actions));
    await r2;
    assert.deepEqual(order, ['send', 'deliver']);
    assert.equal(m.state, 'REFRESHING');
  });

  test('diagnostic reasons name the code; without them 4003 says only "authentication failed"', async () => {
    for (const diag of [false, true]) {
      const t = Date.now();
      const closeOf = async (text) => {
        const m = await machine({ diagnosticReasons: diag }, t);
        const acts = await m.message(t, true, text);
        return acts.find((a) => a.type === 'close');
      };
      let a = await closeOf(await challengeText({ claims: { iss: 'wss://another.example/ws' } }));
      assert.equal(a.code, 'audience_mismatch');
      assert.equal(a.closeCode, 4003);
      assert.equal(a.reason, diag ? 'authentication failed [audience_mismatch]' : 'authentication failed');
      a = await closeOf('not a challenge');
      assert.equal(a.code, 'malformed');
      assert.equal(a.reason, diag ? 'malformed message [malformed]' : 'malformed message');
    }
    assert.equal(diagnosticReason('unknown_key'), 'authentication failed [unknown_key]');
  });

  test('a close while a challenge is verified ends the socket at once', async () => {
    const m = await machine();
    const t = Date.now();
    const p = m.message(t, true, await challengeText());
    const q = m.message(t, false, new Uint8Array(1));
    assert.deepEqual(types(m.close(t)), ['close 1000']);
    assert.equal(m.state, 'CLOSED');
    assert.deepEqual(await p, []);
    assert.deepEqual(await q, []);
    assert.deepEqual(m.message(t, true, 'x'), []);
    assert.throws(() => m.send(t, new Uint8Array(1)), /not open/);
  });

  test('Time rule: an input after a deadline is refused by the deadline', async () => {
    const t = Date.now();
    const m = await machine({ handshakeTimeout: 1000 }, t);
    const acts = await m.message(t + 1000, true, await challengeText());
    assert.deepEqual(types(acts), ['close handshake_timeout']);
    assert.equal(acts.find((a) => a.type === 'close').retry, true);
  });

  test('keepalive off (pingInterval 0): no timer in OPEN', async () => {
    const t = Date.now();
    const m = await machine({ pingInterval: 0 }, t);
    await m.message(t, true, await challengeText());
    const acts = m.message(t, true, acceptText());
    assert.deepEqual(types(acts), ['accepted']);
    assert.equal(m.timerAt, null);
    assert.deepEqual(m.timer(t + 3600e3), []);
    assert.equal(m.state, 'OPEN');
  });
});

describe('keep', () => {
  // failures collects keep's 'failure' events.
  const failures = (k) => {
    const got = [];
    k.addEventListener('failure', (ev) => got.push(ev));
    return got;
  };

  test('retries retryable closures with backoff, reporting each, then rejects on a terminal one', async () => {
    const srv = await scripted(async (p, n) => {
      if (n <= 2) {
        p.ws.close(4050, 'internal error');
        return;
      }
      if (n === 3) {
        await p.handshake();
        p.ws.close(4010, 'session expired');
        return;
      }
      p.ws.close(4005, 'header not allowed');
    });
    try {
      const conns = [];
      const t0 = Date.now();
      const k = keep(srv.url, opts(), (c) => conns.push(c), { initial: 40, max: 80, jitter: 0 });
      const got = failures(k);
      const err = await failure(k.done);
      // Spec section "Retry": 4050 and 4010 are retryable, 4005 is not;
      // keep stops there and done rejects with the server's closure.
      assert.ok(err instanceof ProtocolError, String(err));
      assert.equal(err.code, 'header_not_allowed');
      assert.equal(err.closeCode, 4005);
      assert.equal(err.retryable, false);
      assert.equal(err.remote, true);
      assert.deepEqual(got.map((ev) => [ev.type, ev.code, ev.closeCode, ev.retryable, ev.willRetry, ev.delay]), [
        ['failure', 'internal_error', 4050, true, true, 40],
        ['failure', 'internal_error', 4050, true, true, 80],
        ['failure', 'token_expired', 4010, true, true, 80],
        ['failure', 'header_not_allowed', 4005, false, false, null],
      ]);
      for (const ev of got) assert.ok(ev.error instanceof ProtocolError);
      assert.equal(got[3].error, err, 'the event and done carry the same error');
      assert.equal(srv.peers.length, 4);
      assert.equal(conns.length, 1);
      assert.ok(Date.now() - t0 >= 40 + 80 + 80, 'backoff delays');
    } finally {
      await srv.close();
    }
  });

  test('the server\'s 4003 rejects done at once, with the hint about the key', async () => {
    const srv = await scripted(async (p) => {
      p.ws.send(await challengeText());
      await p.next();
      p.ws.close(4003, 'authentication failed');
    });
    try {
      const k = keep(srv.url, opts({ keyId: 'alice' }), () => assert.fail('no connection expected'), { initial: 20 });
      const got = failures(k);
      const err = await failure(k.done);
      assert.ok(err instanceof ProtocolError, String(err));
      assert.equal(err.code, null, '4003 does not say which check failed');
      assert.equal(err.closeCode, 4003);
      assert.equal(err.retryable, false);
      // The client cannot know which check failed (spec section "Uniform
      // denials and kid enumeration"), so the message says what to check.
      assert.match(err.message, /authentication failed \(4003\)/);
      assert.match(err.message, /key id "alice"/);
      assert.match(err.message, /RFC 7638 thumbprint/);
      assert.deepEqual(got.map((ev) => [ev.code, ev.closeCode, ev.retryable, ev.willRetry]), [[null, 4003, false, false]]);
      assert.equal(srv.peers.length, 1);
    } finally {
      await srv.close();
    }
  });

  test('an HTTP 403 (origin_not_allowed) rejects done with the upgrade error as its cause', async () => {
    const srv = await scripted(() => {}, { verifyClient: (_info, cb) => cb(false, 403) });
    try {
      const k = keep(srv.url, opts({ origin: 'https://evil.example' }), () => assert.fail('no connection expected'), { initial: 20 });
      const got = failures(k);
      const err = await failure(k.done);
      assert.ok(err instanceof ProtocolError, String(err));
      assert.equal(err.code, 'origin_not_allowed');
      assert.equal(err.retryable, false);
      assert.match(String(err.cause && err.cause.message), /403/);
      assert.deepEqual(got.map((ev) => [ev.code, ev.retryable, ev.willRetry]), [['origin_not_allowed', false, false]]);
    } finally {
      await srv.close();
    }
  });

  test('onConnection throwing closes the connection, reports it and rejects done with it', async () => {
    const srv = await scripted((p) => p.handshake());
    try {
      const boom = new Error('application bug');
      const k = keep(srv.url, opts(), () => {
        throw boom;
      });
      const got = failures(k);
      assert.equal(await failure(k.done), boom);
      assert.deepEqual(got.map((ev) => [ev.code, ev.retryable, ev.willRetry, ev.error]), [[null, false, false, boom]]);
      assert.equal((await srv.peers[0].closed).code, 1000);
    } finally {
      await srv.close();
    }
  });

  test('invalid options reject done with their TypeError', async () => {
    const k = keep('ws://127.0.0.1:1/ws', opts({ keyId: '' }), () => assert.fail('no connection expected'));
    const got = failures(k);
    assert.ok((await failure(k.done)) instanceof TypeError);
    assert.equal(got.length, 1);
    assert.equal(got[0].willRetry, false);
  });

  test('the application closing its connection ends keep without a failure', async () => {
    const srv = await scripted((p) => p.handshake());
    try {
      const k = keep(srv.url, opts(), (c) => c.close());
      const got = failures(k);
      const end = await k.done;
      assert.equal(end.code, 1000);
      assert.equal(end.error, null);
      assert.equal(got.length, 0);
    } finally {
      await srv.close();
    }
  });

  test('the server closing normally (1000) ends keep without a failure', async () => {
    const srv = await scripted(async (p) => {
      await p.handshake();
      p.ws.close(1000);
    });
    try {
      const k = keep(srv.url, opts(), () => {});
      const got = failures(k);
      const end = await k.done;
      assert.equal(end.code, 1000);
      assert.equal(end.retryable, false);
      assert.equal(end.error, null);
      assert.equal(got.length, 0);
      assert.equal(srv.peers.length, 1);
    } finally {
      await srv.close();
    }
  });

  test('stop() ends keep and closes the connection', async () => {
    const srv = await scripted((p) => p.handshake());
    try {
      let conn;
      const k = keep(srv.url, opts(), (c) => (conn = c));
      const got = failures(k);
      while (!conn) await sleep(5);
      k.stop();
      assert.deepEqual(await k.done, { stopped: true });
      assert.equal((await conn.closed).code, 1000);
      assert.equal(got.length, 0);
    } finally {
      await srv.close();
    }
  });
});

describe('options', () => {
  test('credentials in the URL are refused', async () => {
    await assert.rejects(connect('wss://user:pw@example.com/ws', opts()), TypeError);
    await assert.rejects(connect('https://example.com/ws', opts()), TypeError);
    await assert.rejects(connect('wss://example.com/ws', opts({ wsOptions: { headers: { Cookie: 'a=b' } } })), TypeError);
  });

  test('required options', async () => {
    await assert.rejects(connect('ws://127.0.0.1:1/ws', opts({ keyId: '' })), TypeError);
    await assert.rejects(connect('ws://127.0.0.1:1/ws', opts({ keyPair: { ...client, alg: 'ES384' } })), TypeError);
    await assert.rejects(connect('ws://127.0.0.1:1/ws', opts({ serverKeys: undefined })), TypeError);
  });

  test('a connection refused is retryable', async () => {
    const srv = await scripted(() => {});
    const url = srv.url;
    await srv.close();
    const err = await failure(connect(url, opts()));
    assert.equal(err.closeCode, 1006);
    assert.equal(err.retryable, true);
  });
});

describe('keys', () => {
  test('generateKey, publicJwk and non-extractable private keys', async () => {
    for (const alg of ALGORITHMS) {
      const kp = await generateKey(alg);
      assert.equal(kp.privateKey.extractable, false);
      const jwk = await publicJwk(kp);
      assert.equal(jwk.alg, alg);
      assert.equal(jwk.use, 'sig');
      assert.equal(jwk.kid, await thumbprint(jwk));
      assert.equal(jwk.d, undefined);
      await loadServerKeys({ keys: [jwk] });
    }
    await assert.rejects(generateKey('RS256', { modulusLength: 1024 }), RangeError);
    await assert.rejects(generateKey('HS256'), TypeError);
  });

  test('RFC 7638 section 3.1 thumbprint', async () => {
    const jwk = {
      kty: 'RSA', e: 'AQAB', alg: 'RS256', kid: '2011-04-29',
      n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
    };
    assert.equal(await thumbprint(jwk), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  test('importKey enforces one key, one algorithm and the key rules', async () => {
    const ec = await generateKey('ES256', { extractable: true });
    const priv = await crypto.subtle.exportKey('jwk', ec.privateKey);
    const kp = await importKey({ ...priv, alg: 'ES256' });
    assert.equal(kp.alg, 'ES256');
    assert.equal(kp.privateKey.extractable, false);
    for (const bad of [{ ...priv }, { ...priv, alg: 'ES384' }, { ...priv, alg: 'EdDSA' }, { ...priv, alg: 'ES256', use: 'enc' },
      { ...priv, alg: 'ES256', d: undefined }, { ...priv, alg: 'ES256', y: priv.x }]) {
      const err = await importKey(bad).then(() => null, (e) => e);
      assert.equal(err && err.code, 'bad_key', JSON.stringify(Object.keys(bad)));
    }
  });

  test('loadServerKeys applies the load-time rules', async () => {
    const good = pinned.keys[0];
    const cases = [
      '{"keys":[]}',
      `{"keys":[${JSON.stringify(good)}],"keys":[]}`,
      `{"keys":[${JSON.stringify({ ...good, kid: 'a' })},${JSON.stringify({ ...good, kid: 'a' })}]}`,
      { keys: [{ ...good, alg: undefined }] },
      { keys: [{ ...good, kid: 'has space' }] },
      { keys: [{ ...good, d: 'AAAA' }] },
      { keys: [{ kty: 'oct', k: 'AAAA', alg: 'HS256', kid: 'x' }] },
      { keys: [{ ...good, x: good.x + 'A' }] },
      { nokeys: [] },
    ];
    for (const c of cases) {
      const err = await loadServerKeys(c).then(() => null, (e) => e);
      assert.equal(err && err.code, 'bad_key', JSON.stringify(c));
      assert.equal(err.closeCode, null);
    }
  });
});

describe('strict JSON and NumericDate (through processAccept)', () => {
  const t = now() + 100;
  const base = (extra = '') => `{"token":"t","sub":"s","groups":["g"],"exp":${t},"max_size":65536${extra}}`;
  test('accepted', () => {
    for (const a of [base(), base(',"x":{"a":[1,2.5,-3e2,true,null,"\\u00e9\\ud83d\\ude00"]}'), base(',"Exp2":1'), `{"token":"t","sub":"s","groups":[],"exp":${t},"max_size":1}  `]) {
      assert.equal(processAccept(a).exp, t, a);
    }
    assert.equal(processAccept(base()).maxSize, 65536);
    assert.equal(processAccept(`{"max_size":1073741824,"token":"t","sub":"s","groups":[],"exp":${t}}`).maxSize, 2 ** 30);
    assert.equal(processAccept(`{"token":"t","sub":"s","groups":[],"exp":${t},"max_size":1}`).maxSize, 1);
  });
  test('refused as malformed', () => {
    const cases = [
      base(',"exp":1'), base(',"EXP":1'), base(',"x":{"y":{"a":1,"A":1}}'), base(',"\\u0074oken":"u"'),
      base(' x'), base(',"x":"\\ud800"'), base(',"x":"\\udc00\\ud800"'), base(',"x":"\\uffff"'), base(',"x":"\ufdd0"'),
      base(',"x":"\\q"'), base(',"x":01'), base(',"x":"a\tb"'), base(','), '\ufeff' + base(),
      `{"token":"t","sub":"s","groups":["g"],"exp":${t}.0}`, `{"token":"t","sub":"s","groups":["g"],"exp":1e9}`,
      '{"token":"t","sub":"s","groups":["g"],"exp":-0}', '{"token":"t","sub":"s","groups":["g"],"exp":9007199254740992}',
      `{"token":"t","sub":"s","groups":["g"],"exp":0${t}}`, `{"token":"","sub":"s","groups":[],"exp":${t}}`,
      `{"token":"t","sub":"","groups":[],"exp":${t}}`, `{"token":"t","sub":"s","groups":[""],"exp":${t}}`,
      `{"token":"t","sub":"s","groups":"g","exp":${t}}`, `{"token":"t","sub":"s","exp":${t}}`, `["token"]`,
      `{"token":"${'t'.repeat(8193)}","sub":"s","groups":[],"exp":${t}}`,
      `{"token":"t","sub":"s","groups":${JSON.stringify(Array(65).fill('g'))},"exp":${t}}`,
      `{"token":"t","sub":"s","groups":[],"exp":${t},"max_size":1,"deep":${'['.repeat(40)}${']'.repeat(40)}}`,
      // max_size: REQUIRED, 1 to 2^30, written as a NumericDate.
      `{"token":"t","sub":"s","groups":[],"exp":${t}}`, base().replace('65536', '0'), base().replace('65536', '1073741825'),
      base().replace('65536', '1.0'), base().replace('65536', '1e3'), base().replace('65536', '"65536"'),
      base().replace('65536', '-1'), base().replace('65536', '065536'), base(',"MAX_SIZE":1'),
    ];
    for (const a of cases) {
      const err = (() => {
        try {
          processAccept(a);
        } catch (e) {
          return e;
        }
      })();
      assert.equal(err && err.code, 'malformed', a.slice(0, 200));
    }
  });
  test('exp plus the skew at or before now is token_expired', () => {
    assert.throws(() => processAccept(`{"token":"t","sub":"s","groups":[],"exp":1000,"max_size":9}`, { now: 1060 * 1000 }), { code: 'token_expired' });
    assert.equal(processAccept(`{"token":"t","sub":"s","groups":[],"exp":1000,"max_size":9}`, { now: 1059 * 1000 }).exp, 1000);
    // now is the clock's whole seconds rounded down (spec section "Notation"):
    // 1059.999 s is second 1059, still before exp plus the skew.
    assert.equal(processAccept(`{"token":"t","sub":"s","groups":[],"exp":1000,"max_size":9}`, { now: 1059999 }).exp, 1000);
    // The client checks only that token is a string of 1 to 8192 octets.
    assert.equal(processAccept(`{"token":"${'x'.repeat(8192)}","sub":"s","groups":[],"exp":1000,"max_size":9}`, { now: 0 }).token.length, 8192);
    assert.throws(() => processAccept(`{"token":"${'x'.repeat(8193)}","sub":"s","groups":[],"exp":1000,"max_size":9}`, { now: 0 }), { code: 'malformed' });
    assert.throws(() => processAccept(`{"token":"t","sub":"s","groups":[],"exp":1000,"max_size":9}`, { now: 1000 * 1000, clockSkew: 0 }), { code: 'token_expired' });
  });
});

test('ERRORS is the spec\'s error table', () => {
  const spec = readFileSync(new URL('../../../spec/wsproof-v1.md', import.meta.url), 'utf8');
  const section = spec.slice(spec.indexOf('\n## Errors'), spec.indexOf('**Retry.**'));
  const rows = {};
  for (const line of section.split('\n')) {
    const m = /^\| `([a-z_]+)` \|[^|]*\| (\d{4}|—) \| [^|]* \| (yes|no) \| `([^`]+)` \|$/.exec(line);
    if (m && m[2] !== '—') rows[m[1]] = { close: Number(m[2]), retryable: m[3] === 'yes', reason: m[4] };
  }
  assert.ok(Object.keys(rows).length >= 20, 'could not read the spec table');
  assert.deepEqual({ ...ERRORS }, rows);
});

test('verifyChallenge does not echo peer input in errors', async () => {
  const C = await challengeText({ claims: { iss: 'wss://evil.example/<script>' } });
  const err = await verifyChallenge(C, opts()).then(() => null, (e) => e);
  assert.equal(err.code, 'audience_mismatch');
  assert.doesNotMatch(err.message, /evil|script/);
});

after(() => {});
