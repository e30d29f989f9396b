// wsproof.js: the client role of wsproof v1 (spec/wsproof-v1.md) for browsers
// and Node.js 20+, with no dependencies: WebCrypto (globalThis.crypto.subtle)
// for every key operation and the platform WebSocket, which Node callers
// inject (the `ws` package).
//
// connect() opens a socket, verifies the server's signed challenge against the
// pinned server key set (spec section "Client: verifying a challenge"), answers
// with a response signed by the client key, processes the accept ("Client:
// processing an accept") and resolves to a Connection that carries binary
// application messages. The server's re-challenges are answered on the live
// socket while the application keeps sending ("Client state machine"). keep()
// reconnects with backoff after the failures the spec's error table marks as
// retryable.
//
// Every failure the client detects closes the socket with the close code and
// fixed reason text of the spec's error table and is reported as a
// ProtocolError whose message never contains peer input.

/**
 * The WebSocket subprotocol of wsproof v1 (spec section "Opening handshake").
 * @type {'wsproof.v1'}
 */
export const SUBPROTOCOL = 'wsproof.v1';

/**
 * The closed list of signature algorithms (spec section "Algorithms"),
 * compared exactly and case-sensitively.
 * @type {readonly ['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA']}
 */
export const ALGORITHMS = Object.freeze(/** @type {const} */ (['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA']));

/**
 * @typedef {{ readonly close: number, readonly retryable: boolean, readonly reason: string }} ErrorInfo
 */

const row = (close, retryable, reason) => Object.freeze({ close, retryable, reason });
const AUTH = 'authentication failed';

/**
 * The spec's error table (section "Errors"), for the codes that are sent in a
 * Close frame: the WebSocket close code, whether a client may reconnect (with
 * backoff), and the fixed reason text.
 * @type {Readonly<Record<string, ErrorInfo>>}
 */
export const ERRORS = Object.freeze({
  malformed: row(4000, false, 'malformed message'),
  unexpected_message: row(4001, false, 'unexpected message'),
  too_large: row(4002, false, 'message too large'),
  unknown_key: row(4003, false, AUTH),
  key_mismatch: row(4003, false, AUTH),
  alg_mismatch: row(4003, false, AUTH),
  bad_signature: row(4003, false, AUTH),
  key_revoked: row(4003, false, AUTH),
  key_not_valid: row(4003, false, AUTH),
  challenge_expired: row(4003, false, AUTH),
  transcript_mismatch: row(4003, false, AUTH),
  socket_mismatch: row(4003, false, AUTH),
  nonce_mismatch: row(4003, false, AUTH),
  audience_mismatch: row(4003, false, AUTH),
  channel_binding_mismatch: row(4003, false, AUTH),
  channel_binding_required: row(4003, false, AUTH),
  access_denied: row(4003, false, AUTH),
  alg_not_allowed: row(4004, false, 'algorithm not allowed'),
  header_not_allowed: row(4005, false, 'header not allowed'),
  wrong_type: row(4006, false, 'wrong message type'),
  handshake_timeout: row(4008, true, 'handshake timed out'),
  token_expired: row(4010, true, 'session expired'),
  session_revoked: row(4011, false, 'session revoked'),
  rate_limited: row(4029, true, 'try again later'),
  internal_error: row(4050, true, 'internal error'),
});

// The codes of the table that have no close code: refusals of the upgrade
// (an HTTP status), key load failures and a token opener's rejections
// (token_invalid), which are never sent.
const NO_CLOSE = Object.freeze({
  origin_not_allowed: { retryable: false, reason: 'origin not allowed' },
  subprotocol_required: { retryable: false, reason: 'subprotocol wsproof.v1 required' },
  bad_key: { retryable: false, reason: 'bad key' },
  token_invalid: { retryable: false, reason: 'invalid token' },
});

// Close codes outside 4000-4999 after which a client may reconnect: going
// away (a server shutting down), abnormal closure (the connection broke),
// server error, service restart, try again later, bad gateway.
const RETRYABLE_WS_CODES = new Set([1001, 1006, 1011, 1012, 1013, 1014]);

// The error code of each close code that belongs to exactly one code. 4003 is
// shared by every authentication failure, so that the server does not reveal
// which check failed; it maps to no single code.
const CODE_BY_CLOSE = (() => {
  const m = new Map();
  for (const [code, info] of Object.entries(ERRORS)) m.set(info.close, m.has(info.close) ? null : code);
  return m;
})();

/**
 * A wsproof failure. `code` is a code of the spec's error table, or null for
 * a closure by the server whose close code stands for several codes (4003) or
 * for none, and for transport failures that have no code. `closeCode` is the
 * WebSocket close code sent or received (null when there was none), and
 * `retryable` tells keep() and applications whether reconnecting may help.
 * `remote` is true when the server ended the socket. The message is built
 * from fixed texts only: it never contains peer input.
 */
export class ProtocolError extends Error {
  /**
   * @param {string|null} code error code of the spec's table, or null
   * @param {string} detail fixed text for logs; never peer input
   * @param {{closeCode?: number|null, retryable?: boolean, remote?: boolean, cause?: unknown}} [opts]
   */
  constructor(code, detail, opts = {}) {
    const info = code ? ERRORS[code] ?? NO_CLOSE[code] : undefined;
    super(code ? `wsproof: ${code}: ${detail}` : `wsproof: ${detail}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ProtocolError';
    /** @type {string|null} */
    this.code = code;
    /** @type {number|null} */
    this.closeCode = opts.closeCode !== undefined ? opts.closeCode : (info && 'close' in info ? info.close : null);
    /** @type {boolean} */
    this.retryable = opts.retryable !== undefined ? opts.retryable : !!(info && info.retryable);
    /** @type {string|null} the fixed reason text of the code's row, if it has one */
    this.reason = info ? info.reason : null;
    /** @type {boolean} */
    this.remote = !!opts.remote;
  }
}

const fail = (code, detail) => new ProtocolError(code, detail);

// Whether a client may reconnect after the socket closed with this code.
function closeRetryable(code) {
  if (RETRYABLE_WS_CODES.has(code)) return true;
  const c = CODE_BY_CLOSE.get(code);
  return !!(c && ERRORS[c].retryable);
}

// The error for a closure by the server (or a broken connection).
function remoteClose(code) {
  const c = CODE_BY_CLOSE.get(code) ?? null;
  let detail;
  if (code === 4003) detail = `server closed the socket: ${AUTH} (4003)`;
  else if (c) detail = `server closed the socket (${code})`;
  else if (code === 1006) detail = 'the connection ended without a Close frame (1006)';
  else if (code === 1001) detail = 'server going away (1001)';
  else detail = `server closed the socket with code ${code}`;
  return new ProtocolError(c, detail, { closeCode: code, retryable: closeRetryable(code), remote: true });
}

// ---------------------------------------------------------------------------
// Encodings (spec section "Encodings")

const subtle = () => {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) throw new Error('wsproof: WebCrypto (crypto.subtle) is not available; browsers need a secure context');
  return s;
};

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64VAL = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64VAL[ALPHABET.charCodeAt(i)] = i;

/** Canonical base64url of bytes: no padding, zero unused bits. */
function b64uEncode(bytes) {
  let out = '';
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  if (bytes.length - i === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
  } else if (bytes.length - i === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/**
 * Decodes canonical base64url, or returns null for any other form: padding,
 * whitespace, characters outside the alphabet, a length of 1 modulo 4, or
 * non-zero unused bits in the last character.
 * @returns {Uint8Array|null}
 */
function b64uDecode(s) {
  if (typeof s !== 'string' || s.length % 4 === 1) return null;
  const out = new Uint8Array((s.length * 3) >> 2);
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? B64VAL[c] : -1;
    if (v < 0) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
      acc &= (1 << bits) - 1;
    }
  }
  return acc === 0 ? out : null;
}

const encoder = new TextEncoder();
const utf8 = (s) => encoder.encode(s);

// Octets of the UTF-8 encoding of s, without encoding it.
function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

// Strict JSON (spec section "Encodings"): UTF-8 without BOM; RFC 8259
// grammar; no unpaired surrogates or noncharacters; in every object, no two
// member names equal or equal under ASCII case folding; nothing but
// whitespace after the value. JSON.parse alone keeps the last of two equal
// members, so a checker runs first and JSON.parse only reads what passed.

class JSONError extends Error {}

const MAX_DEPTH = 32;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const isNonchar = (cp) => (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
const foldASCII = (s) => s.replace(/[A-Z]+/g, (m) => m.toLowerCase());

class JSONScanner {
  constructor(text) {
    this.s = text;
    this.i = 0;
    /** @type {Map<string,string>} raw text of each top-level member's value */
    this.raw = new Map();
  }
  bad() {
    throw new JSONError('not strict JSON');
  }
  ws() {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.i++;
    }
  }
  value(depth) {
    if (depth > MAX_DEPTH || this.i >= this.s.length) this.bad();
    const c = this.s[this.i];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return void this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    for (const lit of ['true', 'false', 'null']) {
      if (this.s.startsWith(lit, this.i)) {
        this.i += lit.length;
        return;
      }
    }
    this.bad();
  }
  object(depth) {
    this.i++;
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return;
    }
    const names = new Set();
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.bad();
      const name = this.string();
      const folded = foldASCII(name);
      if (names.has(folded)) this.bad();
      names.add(folded);
      this.ws();
      if (this.s[this.i] !== ':') this.bad();
      this.i++;
      this.ws();
      const start = this.i;
      this.value(depth + 1);
      if (depth === 0) this.raw.set(name, this.s.slice(start, this.i));
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return;
      if (c !== ',') this.bad();
    }
  }
  array(depth) {
    this.i++;
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return;
    }
    for (;;) {
      this.ws();
      this.value(depth + 1);
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return;
      if (c !== ',') this.bad();
    }
  }
  // string scans a string and returns its value with escapes resolved, so
  // that "a" and "\u0061" are the same member name.
  string() {
    const s = this.s;
    this.i++;
    let out = '';
    let start = this.i;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        out += s.slice(start, this.i);
        this.i++;
        return out;
      }
      if (c === 0x5c) {
        out += s.slice(start, this.i);
        out += this.escape();
        start = this.i;
      } else if (c < 0x20) {
        this.bad();
      } else if (c >= 0xd800 && c <= 0xdbff) {
        // The text came from a fatal UTF-8 decoder, so a low surrogate follows.
        const cp = s.codePointAt(this.i);
        if (cp === undefined || cp < 0x10000 || isNonchar(cp)) this.bad();
        this.i += 2;
      } else {
        if ((c & 0xfc00) === 0xdc00 || isNonchar(c)) this.bad();
        this.i++;
      }
    }
    this.bad();
  }
  escape() {
    const s = this.s;
    this.i++;
    const c = s[this.i++];
    switch (c) {
      case '"':
      case '\\':
      case '/':
        return c;
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'u': {
        const hi = this.hex4();
        if (hi >= 0xdc00 && hi <= 0xdfff) this.bad();
        if (hi >= 0xd800 && hi <= 0xdbff) {
          if (s[this.i] !== '\\' || s[this.i + 1] !== 'u') this.bad();
          this.i += 2;
          const lo = this.hex4();
          if (lo < 0xdc00 || lo > 0xdfff) this.bad();
          const cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
          if (isNonchar(cp)) this.bad();
          return String.fromCodePoint(cp);
        }
        if (isNonchar(hi)) this.bad();
        return String.fromCharCode(hi);
      }
    }
    this.bad();
  }
  hex4() {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9A-Fa-f]{4}$/.test(h)) this.bad();
    this.i += 4;
    return parseInt(h, 16);
  }
  number() {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (!m) this.bad();
    this.i += m[0].length;
  }
}

const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses a strict JSON text whose top-level value is an object.
 * @param {Uint8Array|string} input octets, or a string that is already text
 * @returns {{obj: Record<string, unknown>, raw: Map<string,string>}}
 */
function parseStrictObject(input) {
  let text;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = strictDecoder.decode(input);
    } catch {
      throw new JSONError('invalid UTF-8');
    }
  }
  const sc = new JSONScanner(text);
  sc.ws();
  if (text[sc.i] !== '{') throw new JSONError('not an object');
  sc.value(0);
  sc.ws();
  if (sc.i !== text.length) throw new JSONError('data after the value');
  return { obj: JSON.parse(text), raw: sc.raw };
}

// Member readers over a parsed object; every failure is the given code.
class Members {
  constructor(parsed, code) {
    this.o = parsed.obj;
    this.raw = parsed.raw;
    this.code = code;
  }
  has(name) {
    return Object.prototype.hasOwnProperty.call(this.o, name);
  }
  get(name) {
    return this.has(name) ? this.o[name] : undefined;
  }
  bad(name) {
    return fail(this.code, `member ${name} missing or invalid`);
  }
  // str returns a string member of min..max UTF-8 octets.
  str(name, min = 0, max = Infinity) {
    const v = this.get(name);
    if (typeof v !== 'string') throw this.bad(name);
    const n = utf8Length(v);
    if (n < min || n > max) throw this.bad(name);
    return v;
  }
  // b64 returns a string member that is canonical base64url of min..max octets.
  b64(name, min, max) {
    const v = this.str(name);
    const b = b64uDecode(v);
    if (!b || b.length < min || b.length > max) throw this.bad(name);
    return v;
  }
  // date returns a NumericDate: an integer from 0 to 2^53-1 written without
  // fraction, exponent, sign or leading zeros.
  date(name) {
    const r = this.raw.get(name);
    if (r === undefined || !/^(?:0|[1-9][0-9]{0,15})$/.test(r)) throw this.bad(name);
    const n = Number(r);
    if (!Number.isSafeInteger(n)) throw this.bad(name);
    return n;
  }
  // strs returns an array of at most maxN strings of 1..maxLen octets.
  strs(name, maxN, maxLen) {
    const v = this.get(name);
    if (!Array.isArray(v) || v.length > maxN) throw this.bad(name);
    for (const s of v) {
      if (typeof s !== 'string') throw this.bad(name);
      const n = utf8Length(s);
      if (n < 1 || n > maxLen) throw this.bad(name);
    }
    return v.slice();
  }
}

// ---------------------------------------------------------------------------
// Algorithms and keys (spec sections "Algorithms", "Key registry" and
// "Load-time rules")

const ALG = {
  ES256: { kty: 'EC', crv: 'P-256', coord: 32, sigLen: 64, key: { name: 'ECDSA', namedCurve: 'P-256' }, sig: { name: 'ECDSA', hash: 'SHA-256' } },
  ES384: { kty: 'EC', crv: 'P-384', coord: 48, sigLen: 96, key: { name: 'ECDSA', namedCurve: 'P-384' }, sig: { name: 'ECDSA', hash: 'SHA-384' } },
  ES512: { kty: 'EC', crv: 'P-521', coord: 66, sigLen: 132, key: { name: 'ECDSA', namedCurve: 'P-521' }, sig: { name: 'ECDSA', hash: 'SHA-512' } },
  RS256: { kty: 'RSA', key: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sig: { name: 'RSASSA-PKCS1-v1_5' } },
  PS256: { kty: 'RSA', key: { name: 'RSA-PSS', hash: 'SHA-256' }, sig: { name: 'RSA-PSS', saltLength: 32 } },
  EdDSA: { kty: 'OKP', crv: 'Ed25519', coord: 32, sigLen: 64, key: { name: 'Ed25519' }, sig: { name: 'Ed25519' } },
};

const isAlg = (a) => typeof a === 'string' && Object.prototype.hasOwnProperty.call(ALG, a);

// The short Weierstrass curves y^2 = x^3 - 3x + b (mod p) of the table.
const CURVES = {
  'P-256': {
    p: 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
  },
  'P-384': {
    p: 2n ** 384n - 2n ** 128n - 2n ** 96n + 2n ** 32n - 1n,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
  },
  'P-521': {
    p: 2n ** 521n - 1n,
    b: 0x0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00n,
  },
};

const bigOf = (bytes) => bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);

function onCurve(crv, xb, yb) {
  const { p, b } = CURVES[crv];
  const x = bigOf(xb);
  const y = bigOf(yb);
  if (x >= p || y >= p) return false;
  const rhs = (((x * x * x - 3n * x + b) % p) + p) % p;
  return (y * y) % p === rhs;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi'];
const KID_RE = /^[\x21-\x7e]{1,128}$/;

/**
 * Checks a public JWK against the load-time rules and returns the members
 * WebCrypto imports. Throws a ProtocolError with code bad_key.
 * @param {Record<string, unknown>} jwk
 * @param {string} alg
 */
function publicMembers(jwk, alg) {
  const a = ALG[alg];
  const bad = (why) => fail('bad_key', why);
  if (jwk.kty !== a.kty) throw bad('kty does not match alg');
  if (a.kty === 'RSA') {
    const n = b64uDecode(/** @type {string} */ (jwk.n));
    const e = b64uDecode(/** @type {string} */ (jwk.e));
    if (!n || !e || n.length === 0 || n[0] === 0) throw bad('RSA modulus missing or not minimal');
    const bits = (n.length - 1) * 8 + (32 - Math.clz32(n[0]));
    if (bits < 2048 || bits > 4096) throw bad('RSA modulus outside 2048 to 4096 bits');
    if (e.length !== 3 || e[0] !== 1 || e[1] !== 0 || e[2] !== 1) throw bad('RSA exponent is not 65537');
    return { kty: 'RSA', n: jwk.n, e: jwk.e };
  }
  if (jwk.crv !== a.crv) throw bad('crv does not match alg');
  const x = b64uDecode(/** @type {string} */ (jwk.x));
  if (!x || x.length !== a.coord) throw bad('x missing or of the wrong length');
  if (a.kty === 'OKP') return { kty: 'OKP', crv: a.crv, x: jwk.x };
  const y = b64uDecode(/** @type {string} */ (jwk.y));
  if (!y || y.length !== a.coord) throw bad('y missing or of the wrong length');
  if (!onCurve(a.crv, x, y)) throw bad('EC point not on its curve');
  return { kty: 'EC', crv: a.crv, x: jwk.x, y: jwk.y };
}

function isNotSupported(e) {
  return !!e && (e.name === 'NotSupportedError' || /not supported|unrecognized|unsupported/i.test(String(e.message)));
}

/**
 * A pinned server key set, validated and imported.
 * @typedef {{kid: string, alg: string, key: CryptoKey|null, modulusBytes: number}} PinnedKey
 */
class PinnedKeys {
  /** @param {Map<string, PinnedKey>} keys */
  constructor(keys) {
    this.keys = keys;
  }
}

const pinnedCache = new WeakMap();

/**
 * Loads a pinned server key set under the load-time rules. Accepts the set as
 * a JSON text (checked as strict JSON) or as an object, or a set this function
 * returned. Keys of an algorithm the platform's WebCrypto lacks (EdDSA on old
 * browsers) load, but a challenge signed by one fails with internal_error.
 * @param {string | {keys: object[]} | PinnedKeys} set
 * @returns {Promise<PinnedKeys>}
 * @throws {ProtocolError} code bad_key
 */
export async function loadServerKeys(set) {
  if (set instanceof PinnedKeys) return set;
  if (set && typeof set === 'object' && pinnedCache.has(set)) return pinnedCache.get(set);
  let doc = set;
  if (typeof set === 'string') {
    try {
      doc = parseStrictObject(set).obj;
    } catch (e) {
      if (e instanceof JSONError) throw fail('bad_key', 'pinned key set is not strict JSON');
      throw e;
    }
  }
  if (!doc || typeof doc !== 'object' || !Array.isArray(doc.keys)) throw fail('bad_key', 'pinned key set has no keys array');
  if (doc.keys.length === 0) throw fail('bad_key', 'pinned key set is empty');
  const keys = new Map();
  for (const jwk of doc.keys) {
    if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk)) throw fail('bad_key', 'pinned key is not an object');
    if (typeof jwk.kid !== 'string' || !KID_RE.test(jwk.kid)) throw fail('bad_key', 'kid missing or not 1 to 128 printable ASCII characters');
    if (keys.has(jwk.kid)) throw fail('bad_key', 'two pinned keys have one kid');
    if (!['EC', 'RSA', 'OKP'].includes(jwk.kty)) throw fail('bad_key', 'kty is not EC, RSA or OKP');
    if (PRIVATE_MEMBERS.some((m) => Object.prototype.hasOwnProperty.call(jwk, m))) throw fail('bad_key', 'pinned key holds private members');
    if (!isAlg(jwk.alg)) throw fail('bad_key', 'alg missing or not one of the six algorithms');
    if (jwk.use !== undefined && jwk.use !== 'sig') throw fail('bad_key', 'use is not sig');
    const pub = publicMembers(jwk, jwk.alg);
    let key = null;
    try {
      key = await subtle().importKey('jwk', pub, ALG[jwk.alg].key, false, ['verify']);
    } catch (e) {
      if (!isNotSupported(e)) throw new ProtocolError('bad_key', 'WebCrypto refuses the pinned key', { cause: e });
    }
    const modulusBytes = pub.kty === 'RSA' ? /** @type {Uint8Array} */ (b64uDecode(pub.n)).length : 0;
    keys.set(jwk.kid, { kid: jwk.kid, alg: jwk.alg, key, modulusBytes });
  }
  const out = new PinnedKeys(keys);
  if (set && typeof set === 'object') pinnedCache.set(set, out);
  return out;
}

/**
 * A client key pair: the algorithm registered for it and its WebCrypto keys.
 * @typedef {{alg: string, privateKey: CryptoKey, publicKey: CryptoKey}} KeyPair
 */

/**
 * The algorithms this platform's WebCrypto can sign and verify with. Probes
 * Ed25519 once; every other algorithm is in WebCrypto's baseline.
 * @returns {Promise<string[]>}
 */
export async function supportedAlgorithms() {
  const out = ALGORITHMS.filter((a) => a !== 'EdDSA');
  try {
    await subtle().importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' }, { name: 'Ed25519' }, false, ['verify']);
    out.push('EdDSA');
  } catch {
    // not supported by this platform
  }
  return out;
}

/**
 * Generates a client key pair for alg. The private key is non-extractable
 * unless extractable is set: script can then sign with it but never read it,
 * which is what the spec's browser profile relies on. RSA keys have a modulus
 * of modulusLength bits (2048 to 4096) and exponent 65537.
 * @param {string} alg one of ALGORITHMS
 * @param {{extractable?: boolean, modulusLength?: number}} [opts]
 * @returns {Promise<KeyPair>}
 */
export async function generateKey(alg, { extractable = false, modulusLength = 2048 } = {}) {
  if (!isAlg(alg)) throw new TypeError('wsproof: unknown algorithm');
  let params = ALG[alg].key;
  if (ALG[alg].kty === 'RSA') {
    if (!Number.isInteger(modulusLength) || modulusLength < 2048 || modulusLength > 4096) {
      throw new RangeError('wsproof: RSA modulusLength must be 2048 to 4096 bits');
    }
    params = { ...params, modulusLength, publicExponent: new Uint8Array([1, 0, 1]) };
  }
  const kp = /** @type {CryptoKeyPair} */ (await subtle().generateKey(params, !!extractable, ['sign', 'verify']));
  return { alg, privateKey: kp.privateKey, publicKey: kp.publicKey };
}

/**
 * Imports a private JWK as a client key pair. jwk.alg is required (one key,
 * one algorithm) and must match the key type and curve; RSA keys must have a
 * modulus of 2048 to 4096 bits and exponent 65537.
 * @param {Record<string, unknown>} privateJwk
 * @param {{extractable?: boolean}} [opts]
 * @returns {Promise<KeyPair>}
 * @throws {ProtocolError} code bad_key
 */
export async function importKey(privateJwk, { extractable = false } = {}) {
  const jwk = privateJwk;
  if (!jwk || typeof jwk !== 'object') throw fail('bad_key', 'key is not a JWK object');
  if (!isAlg(jwk.alg)) throw fail('bad_key', 'alg missing or not one of the six algorithms');
  if (jwk.use !== undefined && jwk.use !== 'sig') throw fail('bad_key', 'use is not sig');
  if (typeof jwk.d !== 'string') throw fail('bad_key', 'not a private key');
  const alg = /** @type {string} */ (jwk.alg);
  const pub = publicMembers(jwk, alg);
  const priv = { ...pub, d: jwk.d };
  for (const m of ['p', 'q', 'dp', 'dq', 'qi']) if (pub.kty === 'RSA' && jwk[m] !== undefined) priv[m] = jwk[m];
  try {
    const privateKey = await subtle().importKey('jwk', priv, ALG[alg].key, !!extractable, ['sign']);
    const publicKey = await subtle().importKey('jwk', pub, ALG[alg].key, true, ['verify']);
    return { alg, privateKey, publicKey };
  } catch (e) {
    throw new ProtocolError('bad_key', 'WebCrypto refuses the key', { cause: e });
  }
}

/**
 * The RFC 7638 SHA-256 thumbprint of a public JWK, in base64url: the hash of
 * its required members in lexicographic order (spec section "Claims").
 * @param {Record<string, unknown>} jwk
 * @returns {Promise<string>}
 */
export async function thumbprint(jwk) {
  const need = { EC: ['crv', 'kty', 'x', 'y'], RSA: ['e', 'kty', 'n'], OKP: ['crv', 'kty', 'x'] }[/** @type {string} */ (jwk && jwk.kty)];
  if (!need) throw new TypeError('wsproof: thumbprint needs an EC, RSA or OKP JWK');
  const o = {};
  for (const m of need) {
    if (typeof jwk[m] !== 'string') throw new TypeError('wsproof: JWK lacks a required member');
    o[m] = jwk[m];
  }
  return b64uEncode(new Uint8Array(await subtle().digest('SHA-256', utf8(JSON.stringify(o)))));
}

/**
 * The public JWK of a key pair, as the server's registry takes it
 * (`wsproof keys add --jwk '...'`): the key members, alg, use "sig" and the
 * RFC 7638 thumbprint as kid.
 * @param {KeyPair} keyPair
 * @returns {Promise<Record<string, string>>}
 */
export async function publicJwk(keyPair) {
  checkKeyPair(keyPair);
  const e = /** @type {Record<string,string>} */ (await subtle().exportKey('jwk', keyPair.publicKey));
  const a = ALG[keyPair.alg];
  let out;
  if (a.kty === 'RSA') out = { kty: 'RSA', n: e.n, e: e.e };
  else if (a.kty === 'EC') out = { kty: 'EC', crv: a.crv, x: e.x, y: e.y };
  else out = { kty: 'OKP', crv: a.crv, x: e.x };
  return { ...out, alg: keyPair.alg, use: 'sig', kid: await thumbprint(out) };
}

function checkKeyPair(kp) {
  if (!kp || typeof kp !== 'object' || !isAlg(kp.alg) || !kp.privateKey || !kp.publicKey) {
    throw new TypeError('wsproof: keyPair must be {alg, privateKey, publicKey}');
  }
  const want = ALG[kp.alg].key;
  const got = kp.privateKey.algorithm || {};
  if (got.name !== want.name || (want.namedCurve && got.namedCurve !== want.namedCurve) ||
      (want.hash && (got.hash && got.hash.name) !== want.hash)) {
    throw new TypeError('wsproof: the private key does not fit keyPair.alg');
  }
}

// ---------------------------------------------------------------------------
// Key storage (browser profile: non-extractable keys in the origin's
// IndexedDB; structured clone keeps CryptoKey objects without exporting them)

const DB_NAME = 'wsproof';
const STORE = 'keys';

function openDB() {
  if (typeof indexedDB === 'undefined') {
    return Promise.reject(new Error('wsproof: IndexedDB is not available; saveKey and loadKey work in browsers'));
  }
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB_NAME, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

async function withStore(mode, fn) {
  const db = await openDB();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/**
 * Stores a key pair in IndexedDB under name, replacing any previous one.
 * Non-extractable keys are stored as CryptoKey objects and stay
 * non-extractable. Browsers only.
 * @param {string} name
 * @param {KeyPair} keyPair
 * @returns {Promise<void>}
 */
export async function saveKey(name, keyPair) {
  checkKeyPair(keyPair);
  const rec = { alg: keyPair.alg, privateKey: keyPair.privateKey, publicKey: keyPair.publicKey };
  await withStore('readwrite', (s) => s.put(rec, name));
}

/**
 * Loads the key pair stored under name, or null when there is none.
 * Browsers only.
 * @param {string} name
 * @returns {Promise<KeyPair|null>}
 */
export async function loadKey(name) {
  const rec = await withStore('readonly', (s) => s.get(name));
  if (!rec) return null;
  const kp = { alg: rec.alg, privateKey: rec.privateKey, publicKey: rec.publicKey };
  checkKeyPair(kp);
  return kp;
}

/**
 * Deletes the key pair stored under name, if any. Browsers only.
 * @param {string} name
 * @returns {Promise<void>}
 */
export async function deleteKey(name) {
  await withStore('readwrite', (s) => s.delete(name));
}

// ---------------------------------------------------------------------------
// The handshake steps (spec sections "Client: verifying a challenge" and
// "Client: processing an accept"), without I/O

const TYP_CHALLENGE = 'wsproof-challenge+jwt';
const TYP_RESPONSE = 'wsproof-response+jwt';
const MAX_HANDSHAKE = 4096;
const MAX_ACCEPT = 16384;
const MAX_TOKEN = 8192;
const MAX_IDENTITY = 256;
const MAX_CHALLENGE_LIFETIME = 300;

/**
 * @typedef {object} ChallengeOptions
 * @property {string} keyId the client key's id in the server's registry
 * @property {KeyPair} keyPair the client key
 * @property {string | object} serverKeys the pinned server key set (JWK Set JSON or object, or loadServerKeys' result)
 * @property {string} [serverIdentity] when set, the challenge's iss must equal it
 * @property {boolean} [requireChannelBinding=false] refuse challenges whose cb is "none"
 * @property {number} [clockSkew=60] seconds of clock disagreement allowed
 * @property {Uint8Array|null} [exporter] the connection's RFC 9266 tls-exporter value, or null without TLS 1.3
 * @property {string} [sessionSid] for a re-challenge: the live session's socketID
 * @property {number} [now] the current time in milliseconds; default Date.now()
 */

/**
 * @typedef {object} VerifiedChallenge
 * @property {string} response the response message to send
 * @property {{alg: string, kid: string, typ: string}} header the challenge's protected header
 * @property {{iss: string, sid: string, nonce: string, iat: number, exp: number, algs: string[], cb: string}} claims
 * @property {string} serverKeyId the pinned key that signed the challenge
 * @property {boolean} channelBound whether the response carries a tls-exporter binding
 */

/**
 * Runs spec section "Client: verifying a challenge" (steps 1 to 14, in
 * order) on the text message challenge and returns the signed response. The
 * first failing step's code is thrown as a ProtocolError.
 * @param {string} challenge
 * @param {ChallengeOptions} opts
 * @returns {Promise<VerifiedChallenge>}
 */
export async function verifyChallenge(challenge, opts) {
  checkKeyPair(opts.keyPair);
  const pinned = await loadServerKeys(opts.serverKeys);
  const skew = opts.clockSkew === undefined ? 60 : opts.clockSkew;
  const now = Math.floor((opts.now === undefined ? Date.now() : opts.now) / 1000);

  // Step 1.
  if (typeof challenge !== 'string') throw new TypeError('wsproof: the challenge is a text message');
  if (utf8Length(challenge) > MAX_HANDSHAKE) throw fail('too_large', 'challenge too large');

  // Steps 2 to 5: structure, header members, typ, alg.
  const parts = challenge.split('.');
  if (parts.length !== 3) throw fail('malformed', 'not a JWS in compact serialization');
  const headerBytes = b64uDecode(parts[0]);
  const payloadBytes = b64uDecode(parts[1]);
  const sig = b64uDecode(parts[2]);
  if (!headerBytes || !payloadBytes || !sig) throw fail('malformed', 'segment is not canonical base64url');
  let hdr;
  try {
    hdr = parseStrictObject(headerBytes);
  } catch (e) {
    if (e instanceof JSONError) throw fail('malformed', 'header is not a strict JSON object');
    throw e;
  }
  for (const name of Object.keys(hdr.obj)) {
    if (name !== 'alg' && name !== 'kid' && name !== 'typ') throw fail('header_not_allowed', 'header member other than alg, kid and typ');
  }
  const h = new Members(hdr, 'malformed');
  const alg = h.str('alg');
  const kid = h.str('kid');
  const typ = h.str('typ');
  if (typ !== TYP_CHALLENGE) throw fail('wrong_type', 'typ is not wsproof-challenge+jwt');
  if (!isAlg(alg)) throw fail('alg_not_allowed', 'alg is not in the algorithm table');

  // Step 6: the pinned key.
  if (kid === '') throw fail('malformed', 'empty kid');
  const pk = pinned.keys.get(kid);
  if (!pk) throw fail('unknown_key', 'challenge signed by a key that is not pinned');

  // Step 7: one key, one algorithm.
  if (alg !== pk.alg) throw fail('alg_mismatch', 'alg is not the pinned key\'s algorithm');

  // Step 8: the signature, over the signing input exactly as received.
  if (!pk.key) throw fail('internal_error', 'this platform cannot verify the pinned key\'s algorithm');
  const want = ALG[alg].sigLen || pk.modulusBytes;
  if (sig.length !== want) throw fail('bad_signature', 'signature of the wrong length');
  let ok = false;
  try {
    ok = await subtle().verify(ALG[alg].sig, pk.key, sig, utf8(parts[0] + '.' + parts[1]));
  } catch {
    ok = false;
  }
  if (!ok) throw fail('bad_signature', 'signature does not verify');

  // Step 9: the claims.
  let pl;
  try {
    pl = parseStrictObject(payloadBytes);
  } catch (e) {
    if (e instanceof JSONError) throw fail('malformed', 'payload is not a strict JSON object');
    throw e;
  }
  const c = new Members(pl, 'malformed');
  const iss = c.str('iss', 1, MAX_IDENTITY);
  const sid = c.b64('sid', 16, 32);
  const nonce = c.b64('nonce', 32, 32);
  const iat = c.date('iat');
  const exp = c.date('exp');
  if (exp <= iat || exp - iat > MAX_CHALLENGE_LIFETIME) throw fail('malformed', 'challenge lifetime out of range');
  const algs = c.get('algs');
  if (!Array.isArray(algs) || algs.length < 1 || algs.length > ALGORITHMS.length ||
      algs.some((a, i) => !isAlg(a) || algs.indexOf(a) !== i)) {
    throw fail('malformed', 'algs is not 1 to 6 distinct algorithm names');
  }
  const cb = c.get('cb');
  if (cb !== 'tls-exporter' && cb !== 'none') throw fail('malformed', 'cb is not tls-exporter or none');

  // Step 10: the server identity.
  if (opts.serverIdentity !== undefined && opts.serverIdentity !== null && opts.serverIdentity !== '' && iss !== opts.serverIdentity) {
    throw fail('audience_mismatch', 'challenge from another server identity');
  }

  // Step 11: freshness, with the client's skew.
  if (now + skew < iat || now - skew >= exp) throw fail('challenge_expired', 'challenge not fresh');

  // Step 12: channel binding.
  const exporter = opts.exporter == null ? null : opts.exporter;
  const payload = { aud: iss, sid, nonce, cha: '' };
  if (cb === 'tls-exporter') {
    if (!exporter) throw fail('channel_binding_mismatch', 'server demands tls-exporter binding but this connection has none');
    if (!(exporter instanceof Uint8Array) || exporter.length !== 32) throw fail('internal_error', 'tls-exporter value is not 32 bytes');
  } else if (opts.requireChannelBinding) {
    throw fail('channel_binding_required', 'server does not demand channel binding');
  }

  // Step 13: the client's algorithm is offered.
  if (!algs.includes(opts.keyPair.alg)) throw fail('alg_not_allowed', 'server does not accept this client\'s algorithm');

  // Step 14: a re-challenge is for this socket.
  if (opts.sessionSid !== undefined && opts.sessionSid !== null && sid !== opts.sessionSid) {
    throw fail('socket_mismatch', 're-challenge for another socket');
  }

  // The response: header alg/kid/typ, payload aud/sid/nonce/cha(/cb).
  payload.cha = b64uEncode(new Uint8Array(await subtle().digest('SHA-256', utf8(challenge))));
  if (cb === 'tls-exporter') payload.cb = b64uEncode(/** @type {Uint8Array} */ (exporter));
  const response = await signJWS(opts.keyPair, opts.keyId, TYP_RESPONSE, payload);
  return {
    response,
    header: { alg, kid, typ },
    claims: { iss, sid, nonce, iat, exp, algs: algs.slice(), cb },
    serverKeyId: kid,
    channelBound: cb === 'tls-exporter',
  };
}

async function signJWS(keyPair, kid, typ, payload) {
  if (typeof kid !== 'string' || !KID_RE.test(kid)) throw new TypeError('wsproof: keyId must be 1 to 128 printable ASCII characters');
  const input = b64uEncode(utf8(JSON.stringify({ alg: keyPair.alg, kid, typ }))) + '.' + b64uEncode(utf8(JSON.stringify(payload)));
  let sig;
  try {
    sig = new Uint8Array(await subtle().sign(ALG[keyPair.alg].sig, keyPair.privateKey, utf8(input)));
  } catch (e) {
    throw new ProtocolError('internal_error', 'signing failed', { cause: e });
  }
  return input + '.' + b64uEncode(sig);
}

/**
 * @typedef {{token: string, sub: string, groups: string[], exp: number}} Accept
 */

/**
 * Runs spec section "Client: processing an accept" on the text message accept
 * (steps 1 to 3). Unknown members are ignored; the token stays opaque.
 * @param {string} accept
 * @param {{clockSkew?: number, now?: number}} [opts] skew in seconds, now in milliseconds
 * @returns {Accept}
 */
export function processAccept(accept, { clockSkew = 60, now } = {}) {
  if (typeof accept !== 'string') throw new TypeError('wsproof: the accept is a text message');
  if (utf8Length(accept) > MAX_ACCEPT) throw fail('too_large', 'accept too large');
  let parsed;
  try {
    parsed = parseStrictObject(accept);
  } catch (e) {
    if (e instanceof JSONError) throw fail('malformed', 'accept is not a strict JSON object');
    throw e;
  }
  const m = new Members(parsed, 'malformed');
  const token = m.str('token', 1, MAX_TOKEN);
  const sub = m.str('sub', 1, 256);
  const groups = m.strs('groups', 64, 128);
  const exp = m.date('exp');
  const t = Math.floor((now === undefined ? Date.now() : now) / 1000);
  if (exp + clockSkew <= t) throw fail('token_expired', 'accept carries an expired session');
  return { token, sub, groups, exp };
}

// ---------------------------------------------------------------------------
// TLS channel binding in Node

/**
 * The RFC 9266 tls-exporter value of a `ws` package socket: 32 octets
 * exported with the label "EXPORTER-Channel-Binding" and no context, when the
 * socket's TLS version is 1.3; null otherwise (no TLS, TLS 1.2, or not a
 * `ws` socket, as in browsers, which expose no exporter).
 * @param {any} ws
 * @returns {Promise<Uint8Array|null>}
 */
export async function nodeChannelBinding(ws) {
  const s = ws && ws._socket;
  if (!s || typeof s.exportKeyingMaterial !== 'function' || typeof s.getProtocol !== 'function') return null;
  if (s.getProtocol() !== 'TLSv1.3') return null;
  const v = s.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding');
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
}

// ---------------------------------------------------------------------------
// The connection (spec section "Client state machine")

const CONNECTING = 0;
const AWAIT_CHALLENGE = 1;
const AWAIT_ACCEPT = 2;
const OPEN = 3;
const REFRESHING = 4;
const CLOSED = 5;

const LINGER_MS = 1000;

/**
 * The session of the most recent accept. A new object replaces it after each
 * refresh.
 * @typedef {object} Session
 * @property {string} socketId the socketID (sid) the server assigned
 * @property {string} subject the subject of the key's registry entry
 * @property {string[]} groups the groups of the key's registry entry
 * @property {Date} expiry when the session token expires
 * @property {boolean} channelBound whether the last response carried a tls-exporter binding
 * @property {string} token the session token, opaque to the client
 * @property {string} serverKeyId the pinned server key that signed the last challenge
 */

/**
 * @typedef {object} CloseInfo
 * @property {number|null} code the close code: the one the client sent when it closed, else the server's
 * @property {string} reason the reason text of that Close frame; peer input when the server closed
 * @property {boolean} retryable whether a client may reconnect (with backoff)
 * @property {ProtocolError|null} [error] why the socket ended, null after a normal closure
 */

/**
 * @typedef {object} ConnectOptions
 * @property {string} keyId the client key's id in the server's registry (required)
 * @property {KeyPair} keyPair the client key (required)
 * @property {string|object} serverKeys the pinned server key set, a JWK Set as JSON text or object (required)
 * @property {string} [serverIdentity] when set, every challenge's iss must equal it
 * @property {boolean} [requireChannelBinding=false] refuse servers that do not demand tls-exporter binding
 * @property {any} [WebSocket=globalThis.WebSocket] the WebSocket class; in Node, the `ws` package's
 * @property {(ws: any) => Promise<Uint8Array|null>} [channelBinding=nodeChannelBinding] the connection's tls-exporter value
 * @property {number} [clockSkew=60] seconds of clock disagreement allowed when judging challenges and accepts
 * @property {number} [handshakeTimeout=10000] milliseconds from the start to the accept
 * @property {number} [maxMessageSize=65536] largest application message accepted, in octets
 * @property {string} [origin] Node only: the Origin header the `ws` package sends
 * @property {object} [wsOptions] Node only: further options for the `ws` constructor (for example ca, checkServerIdentity)
 * @property {(step: string, detail: object) => void} [onStep] called at 'open', 'challenge', 'verified', 'response', 'accept', 'refresh'
 * @property {() => number} [now=Date.now] the clock, in milliseconds
 */

function validateOptions(url, o) {
  if (!o || typeof o !== 'object') throw new TypeError('wsproof: connect needs options');
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError('wsproof: url is not a URL');
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError('wsproof: url must be ws:// or wss://');
  // Spec section "Opening handshake": credentials never travel in the URL.
  if (u.username || u.password) throw new TypeError('wsproof: url must not carry credentials');
  if (u.hash) throw new TypeError('wsproof: url must not have a fragment');
  if (typeof o.keyId !== 'string' || !KID_RE.test(o.keyId)) throw new TypeError('wsproof: keyId must be 1 to 128 printable ASCII characters');
  checkKeyPair(o.keyPair);
  if (!o.serverKeys) throw new TypeError('wsproof: serverKeys (the pinned server key set) is required');
  const WS = o.WebSocket || globalThis.WebSocket;
  if (typeof WS !== 'function') throw new TypeError('wsproof: no WebSocket; pass options.WebSocket (in Node, the ws package)');
  const num = (v, d, min, max, name) => {
    if (v === undefined) return d;
    if (typeof v !== 'number' || !(v >= min && v <= max)) throw new RangeError(`wsproof: ${name} out of range`);
    return v;
  };
  const hdrs = o.wsOptions && o.wsOptions.headers;
  if (hdrs && Object.keys(hdrs).some((k) => /^(cookie|authorization)$/i.test(k))) {
    throw new TypeError('wsproof: credentials travel in band, never in Cookie or Authorization headers');
  }
  return {
    WS,
    keyId: o.keyId,
    keyPair: o.keyPair,
    serverIdentity: o.serverIdentity,
    requireChannelBinding: !!o.requireChannelBinding,
    channelBinding: o.channelBinding || nodeChannelBinding,
    clockSkew: num(o.clockSkew, 60, 0, 86400, 'clockSkew'),
    handshakeTimeout: num(o.handshakeTimeout, 10000, 1, 600000, 'handshakeTimeout'),
    maxMessageSize: Math.floor(num(o.maxMessageSize, 65536, 1, 2 ** 30, 'maxMessageSize')),
    origin: o.origin,
    wsOptions: o.wsOptions,
    onStep: typeof o.onStep === 'function' ? o.onStep : null,
    now: typeof o.now === 'function' ? o.now : Date.now,
  };
}

// The HTTP status of a refused upgrade, as the ws package reports it.
function upgradeStatus(err) {
  const m = err && /Unexpected server response: (\d{3})/.exec(String(err.message));
  return m ? Number(m[1]) : 0;
}

function isCertError(err) {
  return !!err && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(String(err.code || ''));
}

// The error for a socket that closed before it opened.
function dialError(err) {
  const status = upgradeStatus(err);
  const opts = { cause: err };
  switch (status) {
    case 0:
      if (isCertError(err)) return new ProtocolError(null, 'TLS certificate verification failed', { ...opts, retryable: false });
      // The ws package checks the upgrade response's subprotocol and
      // extensions itself (spec section "Opening handshake").
      if (/subprotocol/i.test(String(err && err.message))) {
        return new ProtocolError(null, 'server did not select subprotocol wsproof.v1', { ...opts, retryable: false });
      }
      if (/extension/i.test(String(err && err.message))) {
        return new ProtocolError(null, 'server accepted a WebSocket extension', { ...opts, retryable: false });
      }
      return new ProtocolError(null, 'connection failed', { ...opts, closeCode: 1006, retryable: true });
    case 429:
    case 503:
      return new ProtocolError('rate_limited', `upgrade refused with HTTP status ${status}`, { ...opts, closeCode: null });
    case 403:
      return new ProtocolError('origin_not_allowed', 'upgrade refused with HTTP status 403', opts);
    case 400:
      return new ProtocolError('subprotocol_required', 'upgrade refused with HTTP status 400', opts);
    case 502:
    case 504:
      return new ProtocolError(null, `upgrade refused with HTTP status ${status}`, { ...opts, retryable: true });
  }
  return new ProtocolError(null, `upgrade refused with HTTP status ${status}`, { ...opts, retryable: false });
}

function toBytes(data) {
  if (typeof data === 'string') return utf8(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  throw new TypeError('wsproof: send takes a string, a Uint8Array or an ArrayBuffer');
}

/**
 * An authenticated wsproof socket. Application data travels in binary
 * messages; re-challenges are answered inside, so `session` changes over time
 * while messages keep flowing both ways.
 *
 * Events (addEventListener): 'message' with event.data a Uint8Array, in the
 * order the server sent them (messages that arrive before the first
 * 'message' listener is added are held for it); 'refresh' with event.session
 * after each successful refresh; 'close' with event.code, event.reason,
 * event.retryable and event.error, once, when the socket has closed.
 */
class Connection {
  /** @type {Session} */
  #session;
  #link;
  #listeners = { message: new Set(), refresh: new Set(), close: new Set() };
  #held = [];

  /** @param {Link} link */
  constructor(link, session) {
    this.#link = link;
    this.#session = session;
    /**
     * Resolves once, when the socket has closed; never rejects.
     * @type {Promise<CloseInfo>}
     */
    this.closed = link.closed;
  }

  /** The session of the most recent accept. @returns {Session} */
  get session() {
    return this.#session;
  }

  /** Octets queued by send and not yet written to the network. @returns {number} */
  get bufferedAmount() {
    return this.#link.ws.bufferedAmount || 0;
  }

  /**
   * Sends one binary application message: a string is sent as its UTF-8
   * octets. The data is copied. Throws when the socket is no longer open.
   * @param {string|Uint8Array|ArrayBuffer} data
   */
  send(data) {
    this.#link.sendData(toBytes(data));
  }

  /**
   * Closes the socket with code (1000, or 3000 to 4999) and no reason. The
   * 'close' event and the closed promise follow when the server has answered.
   * @param {number} [code=1000]
   */
  close(code = 1000) {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new RangeError('wsproof: close code must be 1000 or 3000 to 4999');
    }
    this.#link.closeByApp(code);
  }

  /**
   * @param {'message'|'refresh'|'close'} type
   * @param {EventListenerOrEventListenerObject} listener
   */
  addEventListener(type, listener) {
    const set = this.#listeners[type];
    if (!set || !listener) return;
    set.add(listener);
    if (type === 'message' && this.#held.length) {
      const held = this.#held;
      this.#held = [];
      for (const ev of held) this._emit(ev);
    }
  }

  /**
   * @param {'message'|'refresh'|'close'} type
   * @param {EventListenerOrEventListenerObject} listener
   */
  removeEventListener(type, listener) {
    const set = this.#listeners[type];
    if (set) set.delete(listener);
  }

  /** @internal */
  _setSession(s) {
    this.#session = s;
  }

  /** @internal */
  _emit(ev) {
    const set = this.#listeners[ev.type];
    if (ev.type === 'message' && set.size === 0) {
      this.#held.push(ev);
      return;
    }
    for (const l of [...set]) {
      try {
        if (typeof l === 'function') l.call(this, ev);
        else l.handleEvent(ev);
      } catch (e) {
        // A listener's failure is the application's; report it like
        // EventTarget does, without breaking the protocol.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

// A plain event object: type plus fields, with detail for CustomEvent habits.
function wsEvent(type, fields, detail) {
  return { type, ...fields, detail, timeStamp: Date.now() };
}

// Link drives one socket through the client state machine. Messages are
// processed strictly in arrival order: while a challenge is verified or an
// accept read, later messages wait in the inbox.
class Link {
  constructor(url, cfg, pinned) {
    this.cfg = cfg;
    this.pinned = pinned;
    this.state = CONNECTING;
    this.inbox = [];
    this.busy = false;
    this.exporter = null;
    this.ready = null; // the exporter's promise, awaited before the first message
    this.pending = null; // the verified challenge whose accept is awaited
    this.session = null;
    this.conn = null;
    this.localError = null; // a failure the client detected
    this.appClosed = false;
    this.lastError = null; // the transport's error event, for HTTP statuses
    this.finished = false;
    this.lingerTimer = null;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.opened = new Promise((resolve, reject) => {
      this.resolveOpened = resolve;
      this.rejectOpened = reject;
    });

    const nodeOpts = { ...(cfg.wsOptions || {}), perMessageDeflate: false };
    if (cfg.origin !== undefined) nodeOpts.origin = cfg.origin;
    const ws = new cfg.WS(url, [SUBPROTOCOL], nodeOpts);
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('open', () => this.onOpen());
    ws.addEventListener('message', (ev) => this.onMessage(ev.data));
    ws.addEventListener('error', (ev) => {
      this.lastError = (ev && ev.error) || ev;
    });
    ws.addEventListener('close', (ev) => this.finish(ev.code, ev.reason || ''));
    this.timer = setTimeout(() => this.onHandshakeTimeout(), cfg.handshakeTimeout);
  }

  step(name, detail) {
    if (!this.cfg.onStep) return;
    try {
      this.cfg.onStep(name, detail);
    } catch {
      // a UI callback must not break the protocol
    }
  }

  onOpen() {
    const ws = this.ws;
    // Spec section "Opening handshake": the server must select wsproof.v1
    // and accept no extension; otherwise fail the WebSocket connection.
    if (ws.protocol !== SUBPROTOCOL) return this.drop(new ProtocolError(null, 'server did not select subprotocol wsproof.v1'));
    if (typeof ws.extensions === 'string' && ws.extensions !== '') {
      return this.drop(new ProtocolError(null, 'server accepted a WebSocket extension'));
    }
    this.state = AWAIT_CHALLENGE;
    this.step('open', { protocol: ws.protocol });
    this.ready = Promise.resolve()
      .then(() => this.cfg.channelBinding(ws))
      .then(
        (v) => {
          this.exporter = v == null ? null : v instanceof Uint8Array ? v : new Uint8Array(v);
        },
        (e) => {
          throw new ProtocolError('internal_error', 'computing the channel binding failed', { cause: e });
        },
      );
    this.drain();
  }

  // drop fails the WebSocket connection without a wsproof close code.
  drop(err) {
    if (this.localError) return;
    this.localError = err;
    this.state = CLOSED;
    if (typeof this.ws.terminate === 'function') this.ws.terminate();
    else this.ws.close();
  }

  onHandshakeTimeout() {
    if (this.state === CONNECTING) {
      this.localError = new ProtocolError('handshake_timeout', 'no connection within the handshake timeout', { closeCode: null });
      this.state = CLOSED;
      this.ws.close();
      return;
    }
    this.abort(fail('handshake_timeout', 'no accept within the handshake timeout'));
  }

  onMessage(data) {
    if (this.state === CLOSED) return;
    this.inbox.push(data);
    if (!this.busy) this.drain();
  }

  async drain() {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.ready) {
        await this.ready;
        this.ready = null;
      }
      while (this.inbox.length && this.state !== CLOSED) {
        const p = this.route(this.inbox.shift());
        if (p) await p;
      }
    } catch (e) {
      this.abort(e instanceof ProtocolError ? e : new ProtocolError('internal_error', 'client failure', { cause: e }));
    } finally {
      this.busy = false;
    }
  }

  // route applies the size, type and first-octet columns of the client state
  // machine, in that order (spec section "Messages and framing": the size
  // limit comes before the message type), and returns the promise of the
  // protocol step, if the message starts one.
  route(data) {
    const text = typeof data === 'string';
    if (!text && typeof Blob !== 'undefined' && data instanceof Blob) {
      return data.arrayBuffer().then((b) => this.route(b));
    }
    const bytes = text ? null : data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const size = text ? utf8Length(data) : bytes.byteLength;
    const brace = text && data.charCodeAt(0) === 0x7b;
    switch (this.state) {
      case AWAIT_CHALLENGE:
        if (size > MAX_HANDSHAKE) throw fail('too_large', 'message too large before the challenge');
        if (!text) throw fail('unexpected_message', 'binary message before the challenge');
        if (brace) throw fail('unexpected_message', 'accept before the challenge');
        return this.onChallenge(data);
      case AWAIT_ACCEPT:
        if (size > MAX_ACCEPT) throw fail('too_large', 'message too large before the accept');
        if (!text) throw fail('unexpected_message', 'binary message before the accept');
        if (!brace) throw fail('unexpected_message', 'text message other than the accept');
        return this.onAccept(data);
      case OPEN:
      case REFRESHING:
        if (!text) {
          if (size > this.cfg.maxMessageSize) throw fail('too_large', 'application message too large');
          this.conn._emit(wsEvent('message', { data: bytes }, bytes));
          return null;
        }
        if (this.state === OPEN) {
          if (size > MAX_HANDSHAKE) throw fail('too_large', 're-challenge too large');
          if (brace) throw fail('unexpected_message', 'accept without an outstanding response');
          return this.onChallenge(data);
        }
        if (size > MAX_ACCEPT) throw fail('too_large', 'accept too large');
        if (!brace) throw fail('unexpected_message', 'text message other than the accept');
        return this.onAccept(data);
    }
    return null;
  }

  async onChallenge(C) {
    const refresh = this.state === OPEN;
    this.step('challenge', { refresh, size: utf8Length(C) });
    const v = await verifyChallenge(C, {
      keyId: this.cfg.keyId,
      keyPair: this.cfg.keyPair,
      serverKeys: this.pinned,
      serverIdentity: this.cfg.serverIdentity,
      requireChannelBinding: this.cfg.requireChannelBinding,
      clockSkew: this.cfg.clockSkew,
      exporter: this.exporter,
      sessionSid: refresh ? this.session.socketId : undefined,
      now: this.cfg.now(),
    });
    if (this.state === CLOSED) return;
    this.step('verified', { refresh, header: v.header, claims: v.claims });
    this.ws.send(v.response);
    this.pending = v;
    this.state = refresh ? REFRESHING : AWAIT_ACCEPT;
    this.step('response', { refresh, message: v.response, channelBound: v.channelBound });
  }

  onAccept(A) {
    const refresh = this.state === REFRESHING;
    const a = processAccept(A, { clockSkew: this.cfg.clockSkew, now: this.cfg.now() });
    const v = this.pending;
    this.pending = null;
    this.session = Object.freeze({
      socketId: v.claims.sid,
      subject: a.sub,
      groups: Object.freeze(a.groups),
      expiry: new Date(a.exp * 1000),
      channelBound: v.channelBound,
      token: a.token,
      serverKeyId: v.serverKeyId,
    });
    this.state = OPEN;
    this.step('accept', { refresh, sub: a.sub, groups: a.groups.slice(), exp: new Date(a.exp * 1000) });
    if (!refresh) {
      clearTimeout(this.timer);
      this.conn = new Connection(this, this.session);
      this.resolveOpened(this.conn);
    } else {
      this.conn._setSession(this.session);
      this.step('refresh', this.session);
      this.conn._emit(wsEvent('refresh', { session: this.session }, this.session));
    }
    return null;
  }

  sendData(bytes) {
    if (this.state !== OPEN && this.state !== REFRESHING) throw new Error('wsproof: the connection is not open');
    this.ws.send(bytes);
  }

  closeByApp(code) {
    if (this.state === CLOSED) return;
    this.appClosed = true;
    this.state = CLOSED;
    this.ws.close(code);
    this.lingerTimer = setTimeout(() => this.forceEnd(), 10000);
  }

  // abort ends the socket for a failure the client detected: the Close frame
  // carries the code's close code and fixed reason text (spec section
  // "Closing"), then the client waits briefly for the server's.
  abort(err) {
    if (this.state === CLOSED) return;
    this.localError = err;
    this.state = CLOSED;
    this.inbox = [];
    clearTimeout(this.timer);
    const info = (err.code && ERRORS[err.code]) || ERRORS.internal_error;
    try {
      this.ws.close(info.close, info.reason);
    } catch {
      // the socket is already closing
    }
    this.lingerTimer = setTimeout(() => this.forceEnd(), LINGER_MS);
  }

  forceEnd() {
    if (typeof this.ws.terminate === 'function') this.ws.terminate();
    else this.finish(1006, '');
  }

  finish(code, reason) {
    if (this.finished) return;
    this.finished = true;
    this.state = CLOSED;
    clearTimeout(this.timer);
    clearTimeout(this.lingerTimer);
    let info;
    if (this.localError) {
      // Report the Close frame the client sent, if it sent one.
      const e = this.localError;
      const sent = e.closeCode != null && e.code && ERRORS[e.code];
      info = { code: sent ? e.closeCode : code, reason: sent ? ERRORS[e.code].reason : reason, retryable: e.retryable, error: e };
    } else if (this.appClosed) {
      info = { code, reason, retryable: false, error: null };
    } else if (!this.conn) {
      const e = code === 1006 && this.lastError ? dialError(this.lastError) : remoteClose(code);
      info = { code, reason, retryable: e.retryable, error: e };
    } else {
      info = { code, reason, retryable: closeRetryable(code), error: code === 1000 ? null : remoteClose(code) };
    }
    if (!this.conn) this.rejectOpened(info.error || remoteClose(code));
    else this.conn._emit(wsEvent('close', info, info));
    this.resolveClosed(info);
  }
}

/**
 * Opens a wsproof socket to url and authenticates with options.keyPair. It
 * resolves once the server's accept has arrived, with a Connection whose
 * re-challenges are answered inside. It rejects with a ProtocolError: a
 * failure the client detected (after closing the socket with that code's
 * close code and reason), a closure by the server (remote, with its close
 * code: 4003 for every authentication failure), the handshake timeout
 * (handshake_timeout), an upgrade the server refused (rate_limited,
 * origin_not_allowed, subprotocol_required when the `ws` package reports the
 * HTTP status), a pinned set that does not load (bad_key), or a broken
 * connection (closeCode 1006, retryable). Invalid options reject with a
 * TypeError or RangeError.
 * @param {string} url ws:// or wss://, without credentials
 * @param {ConnectOptions} options
 * @returns {Promise<Connection>}
 */
export async function connect(url, options) {
  const cfg = validateOptions(url, options);
  const pinned = await loadServerKeys(options.serverKeys);
  const link = new Link(url, cfg, pinned);
  return link.opened;
}

/**
 * Keeps a connection to url up: connects, hands each Connection to
 * onConnection, and when the socket ends with a retryable condition (spec
 * section "Errors": handshake_timeout, token_expired, rate_limited,
 * internal_error, 1001 going away, 1006 a broken connection, ...) waits and
 * connects again. The delay starts at initial milliseconds and doubles up to
 * max, of which the fraction jitter is random; it starts again from initial
 * after a connection that lasted a minute. keep stops on a terminal condition
 * (for example 4003 or 4011), when the application closes the Connection
 * itself, when onConnection throws, and on stop().
 * @param {string} url
 * @param {ConnectOptions} options
 * @param {(conn: Connection) => void} onConnection
 * @param {{initial?: number, max?: number, jitter?: number}} [backoff]
 * @returns {{stop: () => void, done: Promise<CloseInfo & {stopped?: boolean}>}}
 *   done resolves with why keep ended: the terminal CloseInfo, or {stopped: true}
 */
export function keep(url, options, onConnection, { initial = 500, max = 30000, jitter = 0.5 } = {}) {
  let stopped = false;
  let timer = null;
  let wake = null;
  let current = null;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const j = Math.min(1, Math.max(0, jitter));
  const delay = (n) => {
    const d = Math.min(max, initial * 2 ** Math.min(n, 30));
    return d - Math.random() * j * d;
  };
  const run = async () => {
    let attempt = 0;
    for (;;) {
      if (stopped) return { stopped: true };
      let outcome;
      try {
        const conn = await connect(url, options);
        if (stopped) {
          conn.close();
          return { stopped: true };
        }
        current = conn;
        const start = Date.now();
        try {
          onConnection(conn);
        } catch (e) {
          conn.close();
          await conn.closed;
          return { code: null, reason: '', retryable: false, error: e };
        }
        outcome = await conn.closed;
        current = null;
        if (Date.now() - start >= 60000) attempt = 0;
      } catch (e) {
        outcome = { code: e.closeCode ?? null, reason: e.reason ?? '', retryable: !!e.retryable, error: e };
      }
      if (stopped) return { stopped: true };
      if (!outcome.retryable) return outcome;
      await new Promise((r) => {
        wake = r;
        timer = setTimeout(r, delay(attempt++));
      });
    }
  };
  run().then(resolveDone, (e) => resolveDone({ code: null, reason: '', retryable: false, error: e }));
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (wake) wake();
      if (current) current.close();
    },
    done,
  };
}
