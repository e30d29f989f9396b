// wsproof.js: the client role of wsproof v1 (spec/wsproof-v1.md) for browsers
// and Node.js 20+, with no dependencies: WebCrypto (globalThis.crypto.subtle)
// for every key operation and the platform WebSocket, which Node callers
// inject (the `ws` package).
//
// It has two layers:
//
// - ClientMachine, the client state machine of spec section "State
//   machines" (rows C3 to C29), with no socket, no timer and no clock: the
//   transport reports each input with the time and carries out the actions
//   it returns. It decides everything the protocol decides: the order and
//   outcome of the checks of spec sections "Client: verifying a challenge"
//   and "Client: processing an accept", the deadlines, the keepalive, the
//   close codes and whether to retry. It runs the client scripts of the
//   session vectors (testdata/session-vectors.json) exactly as Go's
//   protocol.ClientConn does.
// - connect() and keep(), the glue: a WebSocket, one timer, Node's Pings,
//   the write deadline, and the Connection the application uses. keep()
//   reconnects with backoff when the machine says the end is retryable.
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
  keepalive_timeout: row(4007, true, 'keepalive timed out'),
  handshake_timeout: row(4008, true, 'handshake timed out'),
  slow_reader: row(4009, true, 'peer too slow'),
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

// Close codes outside 4000-4999 after which a client may reconnect (spec
// section "Retry"): going away (a server shutting down), abnormal closure
// (the connection broke), server error, service restart, try again later,
// bad gateway. 1000, 1005 (no code) and every other code are terminal.
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

/**
 * The reason text a party in diagnostic mode sends with `code` (spec section
 * "Diagnostic reasons"): the code's reason text, a space and the code in
 * brackets, as in "authentication failed [unknown_key]". For conformance
 * tests only: it tells apart the failures that share close code 4003.
 * @param {string} code a code of ERRORS
 * @returns {string}
 */
export function diagnosticReason(code) {
  return `${ERRORS[code].reason} [${code}]`;
}

/**
 * Whether a client may reconnect, with backoff, after the server ended the
 * socket with the WebSocket close code `code` (spec section "Retry"): the
 * codes of the error table whose Retry column says yes (4007 to 4010 but
 * 4011, 4029, 4050), 1001, 1006 and 1011 to 1014. Every other code is
 * terminal: 1000, 1005 (a Close frame without a code), the authentication
 * failures (4003), session_revoked (4011) and codes outside the table,
 * including unknown 4xxx codes.
 * @param {number} code
 * @returns {boolean}
 */
export function closeRetryable(code) {
  if (RETRYABLE_WS_CODES.has(code)) return true;
  const c = CODE_BY_CLOSE.get(code);
  return !!(c && ERRORS[c].retryable);
}

/**
 * The error code whose close code is `code`, or null when it belongs to no
 * code or to several (4003, shared by every authentication failure so that
 * the server does not reveal which check failed).
 * @param {number} code
 * @returns {string|null}
 */
export function codeForClose(code) {
  return CODE_BY_CLOSE.get(code) ?? null;
}

// The error for a closure by the server (or a broken connection). keyId is
// the client's, for the message of a 4003: the server sends the same close
// for each of the fourteen authentication failures (spec section "Uniform
// denials and kid enumeration"), so the client cannot say which check
// failed, but it can say what to check, the key id first, since a key id
// that is not the one the key was enrolled under is the common mistake.
function remoteClose(code, keyId) {
  const c = CODE_BY_CLOSE.get(code) ?? null;
  let detail;
  if (code === 4003) {
    // keyId passed the options check (1 to 128 printable ASCII characters)
    // and is the caller's own input: the message still holds no peer input.
    const key = keyId === undefined ? 'this key' : `key id ${JSON.stringify(keyId)}`;
    detail = `${AUTH} (4003): the server refused ${key}: is the key enrolled under this key id (by default its ` +
      'RFC 7638 thumbprint), not revoked, valid now and in a group the server requires? The server does not say ' +
      'which check failed (spec section "Uniform denials and kid enumeration")';
  }
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
 * @returns {Uint8Array<ArrayBuffer>|null}
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

/** @type {(bytes: Uint8Array) => bigint} big-endian octets as an unsigned integer */
const bigOf = (bytes) => bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);

/** @type {(a: bigint, m: bigint) => bigint} a mod m, in [0, m) */
const mod = (a, m) => ((a % m) + m) % m;

/**
 * @param {bigint} b
 * @param {bigint} e
 * @param {bigint} m
 * @returns {bigint} b^e mod m
 */
function modPow(b, e, m) {
  let r = 1n;
  b = mod(b, m);
  for (; e > 0n; e >>= 1n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
  }
  return r;
}

/**
 * a^-1 mod m, or 0n when a and m are not coprime.
 * @param {bigint} a
 * @param {bigint} m
 * @returns {bigint}
 */
function modInv(a, m) {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return r0 === 1n ? mod(s0, m) : 0n;
}

/**
 * Whether (x, y) is a point of the curve y^2 = x^3 - 3x + b over GF(p).
 * @param {keyof typeof CURVES} crv
 * @param {Uint8Array} xb
 * @param {Uint8Array} yb
 * @returns {boolean}
 */
function onCurve(crv, xb, yb) {
  const { p, b } = CURVES[crv];
  const x = bigOf(xb);
  const y = bigOf(yb);
  if (x >= p || y >= p) return false;
  const rhs = (((x * x * x - 3n * x + b) % p) + p) % p;
  return (y * y) % p === rhs;
}

// Ed25519 (RFC 8032 section 5.1.3). A key is refused unless it is the
// canonical encoding of a point of the curve (y < p; no sign bit on x = 0)
// that is not of small order: the points of order 1, 2, 4 and 8 are those
// with y in {0, 1, p - 1, ±y8}, under which a signature made without any
// private key verifies. Go's keys.CheckKey refuses the same keys.
const ED_P = 2n ** 255n - 19n;
const ED_D = mod(-121665n * modInv(121666n, ED_P), ED_P);
const ED_Y8 = bigOf(Uint8Array.from(hexBytes('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a')).reverse());
const ED_SMALL_ORDER_Y = new Set([0n, 1n, ED_P - 1n, ED_Y8, ED_P - ED_Y8]);

function hexBytes(h) {
  const out = [];
  for (let i = 0; i < h.length; i += 2) out.push(parseInt(h.slice(i, i + 2), 16));
  return out;
}

/** @returns {string|null} why the 32-octet Ed25519 key a is refused, or null */
function ed25519Refusal(a) {
  const sign = a[31] >> 7;
  const le = Uint8Array.from(a);
  le[31] &= 0x7f;
  const y = bigOf(le.reverse());
  if (y >= ED_P) return 'Ed25519 key is not canonically encoded';
  const yy = (y * y) % ED_P;
  const x2 = mod((yy - 1n) * modInv(ED_D * yy + 1n, ED_P), ED_P);
  if (x2 === 0n) {
    if (sign) return 'Ed25519 key is not canonically encoded';
  } else if (modPow(x2, (ED_P - 1n) / 2n, ED_P) !== 1n) {
    return 'Ed25519 key is not a point of the curve';
  }
  if (ED_SMALL_ORDER_Y.has(y)) return 'Ed25519 key is a point of small order';
  return null;
}

// The ROCA fingerprint (CVE-2017-15361; Nemec et al., "The Return of
// Coppersmith's Attack", ACM CCS 2017): an Infineon RSALib modulus is,
// modulo each of these primes, a power of 65537. The primes are those of the
// authors' reference detector; Go's keys.isROCA is the same test.
const ROCA_PRIMES = [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103,
  107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167];
const ROCA_RESIDUES = ROCA_PRIMES.map((p) => {
  const set = new Set();
  for (let r = 1; !set.has(r); r = (r * (65537 % p)) % p) set.add(r);
  return set;
});
const isROCA = (n) => ROCA_PRIMES.every((p, i) => ROCA_RESIDUES[i].has(Number(n % BigInt(p))));

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi'];
const KID_RE = /^[\x21-\x7e]{1,128}$/;

// The members that hold key material, for each kty, and every key parameter
// of RFC 7518 section 6 and RFC 8037: one that the JWK's kty does not define
// ("k" on an EC key, "crv" on an RSA key, "oth" anywhere) is refused.
const JWK_KEY_TYPES = {
  EC: { pub: ['crv', 'x', 'y'], priv: ['d'] },
  RSA: { pub: ['n', 'e'], priv: PRIVATE_MEMBERS },
  OKP: { pub: ['crv', 'x'], priv: ['d'] },
};
const JWA_KEY_MEMBERS = ['crv', 'x', 'y', 'd', 'n', 'e', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const present = (o, m) => Object.prototype.hasOwnProperty.call(o, m) && o[m] !== undefined;

/**
 * Checks a JWK, public or private, against the member and key rules of spec
 * section "Load-time rules", the rules Go's keys.ParseJWK applies, and
 * returns what WebCrypto imports: `pub` (the public members), `priv` (with
 * the private members, or null for a public key), and `id`, the key's
 * identity for the set rules (its members are canonical, so equal strings
 * mean equal keys). `alg` is required. Throws a ProtocolError with code
 * bad_key.
 * @param {any} jwk
 * @returns {{alg: string, pub: Record<string,string>, priv: Record<string,string>|null, id: string, modulusBytes: number}}
 */
function checkJwk(jwk) {
  const bad = (why) => fail('bad_key', why);
  if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk)) throw bad('key is not a JWK object');
  const kty = jwk.kty;
  if (kty === 'oct') throw bad('symmetric (oct) keys are not signing keys');
  if (typeof kty !== 'string' || !Object.prototype.hasOwnProperty.call(JWK_KEY_TYPES, kty)) throw bad('kty is not EC, RSA or OKP');
  const kt = JWK_KEY_TYPES[kty];
  for (const m of JWA_KEY_MEMBERS) {
    if (present(jwk, m) && !kt.pub.includes(m) && !kt.priv.includes(m)) throw bad(`member ${m} does not belong to the key type`);
  }
  /** @type {Record<string, Uint8Array>} */
  const oct = {};
  for (const m of [...kt.pub, ...kt.priv]) {
    if (!present(jwk, m)) continue;
    if (typeof jwk[m] !== 'string') throw bad(`member ${m} is not a string`);
    if (m === 'crv') continue;
    const b = b64uDecode(jwk[m]);
    if (!b) throw bad(`member ${m} is not canonical base64url`);
    oct[m] = b;
  }
  const nPriv = kt.priv.filter((m) => present(jwk, m)).length;
  const isPrivate = nPriv > 0;
  if (isPrivate && nPriv !== kt.priv.length) throw bad('some private members but not all');
  for (const m of kt.pub) if (!present(jwk, m)) throw bad(`member ${m} missing`);
  if (present(jwk, 'kid') && typeof jwk.kid !== 'string') throw bad('kid is not a string');
  if (!present(jwk, 'alg') || !isAlg(jwk.alg)) throw bad('alg missing or not one of the six algorithms');
  if (present(jwk, 'use') && jwk.use !== 'sig') throw bad('use is not sig');
  if (present(jwk, 'key_ops')) {
    const ops = jwk.key_ops;
    if (!Array.isArray(ops) || ops.length > 2 || ops.some((o) => typeof o !== 'string' || o.length < 1 || utf8Length(o) > 16)) {
      throw bad('key_ops is not an array of strings');
    }
    const k = ops.join(',');
    if (isPrivate ? !['sign', 'sign,verify', 'verify,sign'].includes(k) : k !== 'verify') throw bad('key_ops does not fit the key');
  }
  const alg = /** @type {string} */ (jwk.alg);
  const a = ALG[alg];
  let pub;
  let id;
  let modulusBytes = 0;
  if (kty === 'EC') {
    if (!['P-256', 'P-384', 'P-521'].includes(jwk.crv)) throw bad('EC curve is not P-256, P-384 or P-521');
    if (a.kty !== 'EC' || jwk.crv !== a.crv) throw bad('kty and crv do not match alg');
    if (oct.x.length !== a.coord || oct.y.length !== a.coord) throw bad('EC coordinate of the wrong length');
    if (!onCurve(a.crv, oct.x, oct.y)) throw bad('EC point not on its curve');
    if (isPrivate && oct.d.length !== a.coord) throw bad('EC d of the wrong length');
    pub = { kty: 'EC', crv: a.crv, x: jwk.x, y: jwk.y };
    id = `EC ${a.crv} ${jwk.x} ${jwk.y}`;
  } else if (kty === 'OKP') {
    if (jwk.crv !== 'Ed25519') throw bad('OKP curve is not Ed25519');
    if (a.kty !== 'OKP') throw bad('kty does not match alg');
    if (oct.x.length !== 32) throw bad('Ed25519 x of the wrong length');
    if (isPrivate && oct.d.length !== 32) throw bad('Ed25519 d of the wrong length');
    const why = ed25519Refusal(oct.x);
    if (why) throw bad(why);
    pub = { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
    id = `OKP ${jwk.x}`;
  } else {
    if (a.kty !== 'RSA') throw bad('kty does not match alg');
    /** @type {Record<string, bigint>} */
    const ints = {};
    for (const [m, b] of Object.entries(oct)) {
      // RFC 7518 section 2, Base64urlUInt: the fewest octets.
      if (b.length === 0 || (b[0] === 0 && b.length > 1)) throw bad(`RSA member ${m} is not a minimal unsigned integer`);
      ints[m] = bigOf(b);
    }
    const n = ints.n;
    const bits = n.toString(2).length;
    if (bits < 2048 || bits > 4096) throw bad('RSA modulus outside 2048 to 4096 bits');
    if ((n & 1n) === 0n) throw bad('RSA modulus is even');
    if (ints.e !== 65537n) throw bad('RSA exponent is not 65537');
    if (isROCA(n)) throw bad('RSA modulus has the ROCA fingerprint (CVE-2017-15361)');
    if (isPrivate) {
      const { d, p, q, dp, dq, qi } = ints;
      if (p <= 1n || q <= 1n || p * q !== n || mod(d * 65537n, p - 1n) !== 1n || mod(d * 65537n, q - 1n) !== 1n) {
        throw bad('inconsistent RSA private key');
      }
      if (dp !== d % (p - 1n) || dq !== d % (q - 1n) || qi !== modInv(q, p)) throw bad('RSA CRT members do not match the primes');
    }
    pub = { kty: 'RSA', n: jwk.n, e: jwk.e };
    id = `RSA ${jwk.n} ${jwk.e}`;
    modulusBytes = oct.n.length;
  }
  let priv = null;
  if (isPrivate) {
    priv = { ...pub };
    for (const m of kt.priv) priv[m] = jwk[m];
  }
  return { alg, pub, priv, id, modulusBytes };
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
 * A pinned server key set: a JWK Set as JSON text, the parsed object, or what
 * loadServerKeys returned for one.
 * @typedef {string | {keys: object[]} | PinnedKeys} ServerKeys
 */

/**
 * Loads a pinned server key set under the load-time rules (the ones Go's
 * keys.ParsePublicSet applies: checkJwk for each key, kids unique even under
 * ASCII case folding, one key under one kid). Accepts the set as
 * a JSON text (checked as strict JSON) or as an object, or a set this function
 * returned. Keys of an algorithm the platform's WebCrypto lacks (EdDSA on old
 * browsers) load, but a challenge signed by one fails with internal_error.
 * @param {ServerKeys} set
 * @returns {Promise<PinnedKeys>}
 * @throws {ProtocolError} code bad_key
 */
export async function loadServerKeys(set) {
  if (set instanceof PinnedKeys) return set;
  if (set && typeof set === 'object' && pinnedCache.has(set)) return pinnedCache.get(set);
  /** @type {unknown} */
  let doc = set;
  if (typeof set === 'string') {
    try {
      doc = parseStrictObject(set).obj;
    } catch (e) {
      if (e instanceof JSONError) throw fail('bad_key', 'pinned key set is not strict JSON');
      throw e;
    }
  }
  const list = doc && typeof doc === 'object' && 'keys' in doc ? doc.keys : undefined;
  if (!Array.isArray(list)) throw fail('bad_key', 'pinned key set has no keys array');
  if (list.length === 0) throw fail('bad_key', 'pinned key set is empty');
  /** @type {Map<string, PinnedKey>} */
  const keys = new Map();
  const foldedKids = new Set();
  const ids = new Set();
  for (const member of list) {
    if (!member || typeof member !== 'object' || Array.isArray(member)) throw fail('bad_key', 'pinned key is not an object');
    const jwk = /** @type {Record<string, unknown>} */ (member);
    if (typeof jwk.kid !== 'string' || !KID_RE.test(jwk.kid)) throw fail('bad_key', 'kid missing or not 1 to 128 printable ASCII characters');
    if (PRIVATE_MEMBERS.some((m) => Object.prototype.hasOwnProperty.call(jwk, m))) throw fail('bad_key', 'pinned key holds private members');
    const k = checkJwk(jwk);
    // One key, one identity: kids unique even under ASCII case folding, and
    // one key under one kid (and so one algorithm).
    const folded = jwk.kid.toLowerCase();
    if (foldedKids.has(folded)) throw fail('bad_key', 'two pinned keys have one kid, or kids that differ only in case');
    if (ids.has(k.id)) throw fail('bad_key', 'one key is pinned under two kids');
    foldedKids.add(folded);
    ids.add(k.id);
    let key = null;
    try {
      key = await subtle().importKey('jwk', k.pub, ALG[k.alg].key, false, ['verify']);
    } catch (e) {
      if (!isNotSupported(e)) throw new ProtocolError('bad_key', 'WebCrypto refuses the pinned key', { cause: e });
    }
    keys.set(jwk.kid, { kid: jwk.kid, alg: k.alg, key, modulusBytes: k.modulusBytes });
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
  /** @type {string[]} */
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
 * Imports a private JWK as a client key pair, under the member and key rules
 * of spec section "Load-time rules" that Go's keys.ParseJWK applies. jwk.alg
 * is required (one key, one algorithm) and must match the key type and
 * curve; every key member is canonical base64url; RSA keys have a modulus of
 * 2048 to 4096 bits without the ROCA fingerprint, exponent 65537 and all of
 * d, p, q, dp, dq, qi, consistent; key_ops, if present, is ["sign"] or
 * ["sign","verify"]; and the private key must match the public key.
 * @param {Record<string, unknown>} privateJwk
 * @param {{extractable?: boolean}} [opts]
 * @returns {Promise<KeyPair>}
 * @throws {ProtocolError} code bad_key
 */
export async function importKey(privateJwk, { extractable = false } = {}) {
  const k = checkJwk(privateJwk);
  if (!k.priv) throw fail('bad_key', 'not a private key');
  const alg = k.alg;
  let kp;
  try {
    const privateKey = await subtle().importKey('jwk', k.priv, ALG[alg].key, !!extractable, ['sign']);
    const publicKey = await subtle().importKey('jwk', k.pub, ALG[alg].key, true, ['verify']);
    kp = { alg, privateKey, publicKey };
  } catch (e) {
    throw new ProtocolError('bad_key', 'WebCrypto refuses the key', { cause: e });
  }
  // The private key must be the public key's: a signature by one verifies
  // under the other (Go compares the halves; WebCrypto does not always).
  const probe = utf8('wsproof key pair check');
  let ok = false;
  try {
    ok = await subtle().verify(ALG[alg].sig, kp.publicKey, await subtle().sign(ALG[alg].sig, kp.privateKey, probe), probe);
  } catch {
    ok = false;
  }
  if (!ok) throw fail('bad_key', 'the public key does not match the private key');
  return kp;
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
const MAX_MESSAGE_SIZE_LIMIT = 2 ** 30;

/**
 * @typedef {object} ChallengeOptions
 * @property {string} keyId the client key's id in the server's registry
 * @property {KeyPair} keyPair the client key
 * @property {ServerKeys} serverKeys the pinned server key set (JWK Set JSON or object, or loadServerKeys' result)
 * @property {string} serverIdentity the expected server identity: the challenge's iss must equal it (step 10)
 * @property {boolean} [tls] whether the connection is TLS; default: whether exporter is set. On a TLS
 *   connection a challenge whose cb is "none" is refused with channel_binding_required unless allowUnbound
 * @property {boolean} [allowUnbound=false] accept cb "none" on a TLS connection (a server behind a
 *   TLS-terminating proxy, or the browser profile)
 * @property {number} [clockSkew=60] seconds of clock disagreement allowed
 * @property {Uint8Array|null} [exporter] the connection's RFC 9266 tls-exporter value, or null (no TLS, TLS 1.2, browsers)
 * @property {string} [sessionSid] for a re-challenge: the live session's socketID (step 14)
 * @property {number} [sessionExp] for a re-challenge: the live session token's exp, a NumericDate (step 15)
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

const REMOVED_CB_OPTION = 'wsproof: requireChannelBinding was removed: a client on a TLS connection requires ' +
  'channel binding unless allowUnbound is set (spec section "When channel binding is required")';

/**
 * Runs spec section "Client: verifying a challenge" (steps 1 to 15, in
 * order) on the text message challenge and returns the signed response. The
 * first failing step's code is thrown as a ProtocolError.
 * @param {string} challenge
 * @param {ChallengeOptions} opts
 * @returns {Promise<VerifiedChallenge>}
 */
export async function verifyChallenge(challenge, opts) {
  if ('requireChannelBinding' in opts) throw new TypeError(REMOVED_CB_OPTION);
  checkKeyPair(opts.keyPair);
  checkIdentity(opts.serverIdentity);
  if (typeof challenge !== 'string') throw new TypeError('wsproof: the challenge is a text message');
  const exporter = opts.exporter == null ? null : opts.exporter;
  return checkChallenge(challenge, {
    keyId: opts.keyId,
    keyPair: opts.keyPair,
    pinned: await loadServerKeys(opts.serverKeys),
    serverIdentity: opts.serverIdentity,
    tls: opts.tls === undefined ? exporter !== null : !!opts.tls || exporter !== null,
    allowUnbound: !!opts.allowUnbound,
    clockSkew: opts.clockSkew === undefined ? 60 : opts.clockSkew,
    exporter,
    sessionSid: opts.sessionSid ?? null,
    sessionExp: opts.sessionExp ?? null,
    now: Math.floor((opts.now === undefined ? Date.now() : opts.now) / 1000),
  });
}

function checkIdentity(id) {
  if (typeof id !== 'string' || id === '' || utf8Length(id) > MAX_IDENTITY) {
    throw new TypeError('wsproof: serverIdentity must be a string of 1 to 256 octets');
  }
}

/**
 * The procedure of verifyChallenge on checked inputs: ctx.pinned is loaded,
 * ctx.now is the spec's *now* (whole seconds).
 * @returns {Promise<VerifiedChallenge>}
 */
async function checkChallenge(challenge, ctx) {
  const { pinned, now } = ctx;

  // Step 1.
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

  // Step 10: the server identity, always.
  if (iss !== ctx.serverIdentity) throw fail('audience_mismatch', 'challenge from another server identity');

  // Step 11: freshness, with the client's skew.
  if (now + ctx.clockSkew < iat || now - ctx.clockSkew >= exp) throw fail('challenge_expired', 'challenge not fresh');

  // Step 12: channel binding. A TLS connection requires it unless the
  // client is configured for a deployment without it.
  const exporter = ctx.exporter;
  const payload = { aud: iss, sid, nonce, cha: '' };
  if (cb === 'tls-exporter') {
    if (!exporter) throw fail('channel_binding_mismatch', 'server demands tls-exporter binding but this connection has none');
    if (!(exporter instanceof Uint8Array) || exporter.length !== 32) throw fail('internal_error', 'tls-exporter value is not 32 bytes');
  } else if ((ctx.tls || exporter) && !ctx.allowUnbound) {
    throw fail('channel_binding_required', 'challenge without channel binding on a TLS connection');
  }

  // Step 13: the client's algorithm is offered.
  if (!algs.includes(ctx.keyPair.alg)) throw fail('alg_not_allowed', 'server does not accept this client\'s algorithm');

  // Step 14: a re-challenge is for this socket.
  if (ctx.sessionSid != null && sid !== ctx.sessionSid) throw fail('socket_mismatch', 're-challenge for another socket');

  // Step 15: a re-challenge does not outlive the current token.
  if (ctx.sessionExp != null && exp > ctx.sessionExp) throw fail('malformed', 're-challenge expires after the session\'s token');

  // The response: header alg/kid/typ, payload aud/sid/nonce/cha(/cb).
  payload.cha = b64uEncode(new Uint8Array(await subtle().digest('SHA-256', utf8(challenge))));
  if (cb === 'tls-exporter') payload.cb = b64uEncode(/** @type {Uint8Array} */ (exporter));
  const response = await signJWS(ctx.keyPair, ctx.keyId, TYP_RESPONSE, payload);
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
 * @typedef {{token: string, sub: string, groups: string[], exp: number, maxSize: number}} Accept
 */

/**
 * Runs spec section "Client: processing an accept" on the text message accept
 * (steps 1 to 3). Unknown members are ignored; the token stays opaque.
 * `maxSize` is the accept's max_size: the largest application message the
 * server accepts, 1 to 2^30 octets (REQUIRED; written as a NumericDate).
 * @param {string} accept
 * @param {{clockSkew?: number, now?: number}} [opts] skew in seconds, now in milliseconds
 * @returns {Accept}
 */
export function processAccept(accept, { clockSkew = 60, now } = {}) {
  if (typeof accept !== 'string') throw new TypeError('wsproof: the accept is a text message');
  return checkAccept(accept, clockSkew, Math.floor((now === undefined ? Date.now() : now) / 1000));
}

function checkAccept(accept, clockSkew, now) {
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
  const maxSize = m.date('max_size');
  if (maxSize < 1 || maxSize > MAX_MESSAGE_SIZE_LIMIT) throw m.bad('max_size');
  if (exp + clockSkew <= now) throw fail('token_expired', 'accept carries an expired session');
  return { token, sub, groups, exp, maxSize };
}

// ---------------------------------------------------------------------------
// Server identity and plaintext (spec sections "Server identity" and
// "Opening handshake")

// splitURL splits a ws:// or wss:// URL the way Go's net/url reads it (the
// parser of protocol.IdentityFromURL), for the forms this module accepts: it
// returns null for anything else, including control characters, spaces and
// bad percent-escapes, which Go's parser refuses as well.
const URL_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/s;
const HOST_RE = /^[A-Za-z0-9._~!$&'()*+,;=\u0080-\uffff-]+$/;

function splitURL(raw) {
  if (typeof raw !== 'string' || /[\x00-\x1f\x7f]/.test(raw)) return null;
  const m = URL_RE.exec(raw);
  if (!m) return null;
  const [, scheme, authority, path, query, fragment] = m;
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : null;
  const hostport = at >= 0 ? authority.slice(at + 1) : authority;
  let host;
  let port = '';
  if (hostport.startsWith('[')) {
    const end = hostport.indexOf(']');
    if (end < 0) return null;
    host = hostport.slice(1, end);
    const rest = hostport.slice(end + 1);
    if (rest !== '' && !/^:[0-9]*$/.test(rest)) return null;
    port = rest.slice(1);
    if (!/^[0-9A-Fa-f:.]+$/.test(host)) return null; // no zone: it has no identity form
  } else {
    const colon = hostport.lastIndexOf(':');
    host = colon >= 0 ? hostport.slice(0, colon) : hostport;
    port = colon >= 0 ? hostport.slice(colon + 1) : '';
    if (!/^[0-9]*$/.test(port)) return null;
    if (host !== '' && !HOST_RE.test(host)) return null;
  }
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) return null;
  return { scheme: scheme.toLowerCase(), userinfo, host, ipv6: hostport.startsWith('['), port, path, query, fragment };
}

// Go's shouldEscape(c, encodePath) and validEncoded(s, encodePath): the
// octets a path keeps as written, and the form Go's EscapedPath gives it.
const PATH_KEEP = /^[A-Za-z0-9\-_.~$&+,/:;=@!'()*[\]%]*$/;
function goEscapedPath(raw) {
  if (PATH_KEEP.test(raw)) return raw;
  const bytes = [];
  for (let i = 0; i < raw.length;) {
    if (raw[i] === '%') {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 3;
      continue;
    }
    const ch = String.fromCodePoint(/** @type {number} */ (raw.codePointAt(i)));
    bytes.push(...utf8(ch));
    i += ch.length;
  }
  let out = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    out += b < 0x80 && /[A-Za-z0-9\-_.~$&+,/:;=@]/.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/**
 * The server identity a client expects by default when it dials url (spec
 * section "Server identity"): the ws:// or wss:// URL with its scheme and
 * host in lowercase, an IPv6 address in brackets, the port only when it is not
 * the scheme's default (80 for ws, 443 for wss), and the path as it appears in
 * the URL, or "/" when there is none; no query or fragment. For example
 * `wss://Plant-3.example:443/ws?region=eu` gives `wss://plant-3.example/ws`.
 * It is the identity protocol.IdentityFromURL computes for the same URL.
 *
 * Throws a TypeError for a URL with user information or a fragment
 * (credentials never travel in a URL), one that is not ws:// or wss://, and
 * one whose identity would not name the endpoint actually dialed, because the
 * WebSocket layer (the WHATWG URL parser) reads its host, port or path
 * otherwise: a non-ASCII host, IPv4 shorthand such as 127.1, an IPv6 address
 * not in its shortest form, a port with leading zeros or above 65535, "." or
 * ".." path segments, or characters the two parsers escape differently. Such
 * a server's identity must be given as serverIdentity.
 * @param {string} url
 * @returns {string}
 */
export function identityFromURL(url) {
  const p = splitURL(url);
  if (!p) throw new TypeError('wsproof: the server URL does not parse');
  if (p.scheme !== 'ws' && p.scheme !== 'wss') throw new TypeError('wsproof: the server URL must be ws:// or wss://');
  if (p.userinfo !== null) throw new TypeError('wsproof: the server URL must not carry credentials');
  if (p.fragment !== undefined) throw new TypeError('wsproof: the server URL must not have a fragment');
  if (p.host === '') throw new TypeError('wsproof: the server URL has no host');
  const host = p.ipv6 ? `[${p.host.toLowerCase()}]` : p.host.toLowerCase();
  const port = (p.scheme === 'ws' && p.port === '80') || (p.scheme === 'wss' && p.port === '443') ? '' : p.port;
  const path = p.path === '' ? '/' : goEscapedPath(p.path);
  const id = `${p.scheme}://${host}${port ? `:${port}` : ''}${path}`;
  // What the WebSocket layer dials must be what the identity names.
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError('wsproof: the server URL does not parse');
  }
  if (u.hostname !== host || u.port !== port || u.pathname !== path) {
    throw new TypeError('wsproof: the server URL is not in a form whose identity is unambiguous; give serverIdentity');
  }
  if (utf8Length(id) > MAX_IDENTITY) throw new TypeError('wsproof: the server URL is longer than a server identity may be');
  return id;
}

// parseIPv6 returns the 16 octets of an IPv6 address in text form, or null.
function parseIPv6(s) {
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (part) => {
    if (part === '') return [];
    const out = [];
    const g = part.split(':');
    for (let i = 0; i < g.length; i++) {
      if (i === g.length - 1 && g[i].includes('.')) {
        const v4 = parseIPv4(g[i]);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9A-Fa-f]{1,4}$/.test(g[i])) return null;
        out.push(parseInt(g[i], 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return null;
  const n = head.length + tail.length;
  if (halves.length === 2 ? n > 7 : n !== 8) return null;
  const all = [...head, ...Array(8 - n).fill(0), ...tail];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

// parseIPv4 returns the octets of a dotted-quad IPv4 address (decimal, no
// leading zeros, as Go's netip.ParseAddr requires), or null.
function parseIPv4(s) {
  const p = s.split('.');
  if (p.length !== 4 || p.some((x) => !/^(0|[1-9][0-9]{0,2})$/.test(x) || Number(x) > 255)) return null;
  return p.map(Number);
}

/**
 * Whether a client may dial url without being configured to allow plaintext
 * (spec section "Opening handshake"): wss:// always; ws:// only to a loopback
 * host (the host localhost, an address in 127.0.0.0/8, or ::1), where no
 * network carries the unencrypted session. It is protocol.PlaintextAllowed.
 * @param {string} url
 * @returns {boolean}
 */
export function plaintextAllowed(url) {
  const p = splitURL(url);
  if (!p) return false;
  if (p.scheme === 'wss') return true;
  if (p.scheme !== 'ws') return false;
  const host = p.host.toLowerCase();
  if (host === 'localhost') return true;
  const v4 = parseIPv4(host);
  if (v4) return v4[0] === 127;
  const v6 = p.ipv6 ? parseIPv6(host) : null;
  if (!v6) return false;
  const zero = (a, b) => v6.slice(a, b).every((x) => x === 0);
  if (zero(0, 15) && v6[15] === 1) return true; // ::1
  return zero(0, 10) && v6[10] === 0xff && v6[11] === 0xff && v6[12] === 127; // ::ffff:127.0.0.0/104
}

// ---------------------------------------------------------------------------
// TLS channel binding in Node

/**
 * The RFC 9266 tls-exporter value of a `ws` package socket: 32 octets
 * exported with the label "EXPORTER-Channel-Binding" and no context, when the
 * socket's TLS version is 1.3; null otherwise (no TLS, TLS 1.2, or not a
 * `ws` socket, as in browsers, which expose no exporter).
 * @param {object} ws
 * @returns {Promise<Uint8Array|null>}
 */
export async function nodeChannelBinding(ws) {
  // The ws package keeps its net.Socket (a tls.TLSSocket for wss://) in _socket.
  const s = ws && /** @type {{_socket?: any}} */ (ws)._socket;
  if (!s || typeof s.exportKeyingMaterial !== 'function' || typeof s.getProtocol !== 'function') return null;
  if (s.getProtocol() !== 'TLSv1.3') return null;
  const v = s.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding');
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
}

// ---------------------------------------------------------------------------
// The client state machine (spec section "State machines"), without I/O

/**
 * The states of spec section "Client state machine" after the upgrade.
 * @typedef {'AWAIT_CHALLENGE'|'AWAIT_ACCEPT'|'OPEN'|'REFRESHING'|'CLOSED'} State
 */
const AWAIT_CHALLENGE = 'AWAIT_CHALLENGE';
const AWAIT_ACCEPT = 'AWAIT_ACCEPT';
const OPEN = 'OPEN';
const REFRESHING = 'REFRESHING';
const CLOSED = 'CLOSED';

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
 * @property {number} maxSize the accept's max_size: the largest application message the server accepts, in octets
 */

/**
 * One thing the machine asks its transport to do; the transport carries out
 * the actions an input returns in their order.
 *
 * - `{type: 'send', text: true, data: string}`: send a control message (the
 *   response) as a text message.
 * - `{type: 'send', text: false, data: Uint8Array}`: send an application
 *   message as a binary message.
 * - `{type: 'ping'}`: send a WebSocket Ping frame.
 * - `{type: 'deliver', data: Uint8Array}`: hand an application message to the
 *   application.
 * - `{type: 'accepted', session, refresh}`: an accept was processed; `session`
 *   is the new Session, `refresh` false for the first one.
 * - `{type: 'timer', at}`: call timer() at `at` (milliseconds), or later,
 *   replacing any timer set before; `at` null cancels it. Calling timer()
 *   early is harmless. The machine's `timerAt` is always the current value.
 * - `{type: 'close', code, closeCode, reason, retry, peerCode, error}`: the
 *   socket has ended and the machine is CLOSED. `code` is the spec's error
 *   code, or null when the end is not a failure (1000, a peer's Close frame
 *   whose close code stands for no single code, a lost connection).
 *   `closeCode` and `reason` are the Close frame to send, or null when none
 *   is sent (the peer's Close frame is answered as RFC 6455 requires, which
 *   is not an action). `retry` says whether the client may reconnect, with
 *   backoff (spec section "Retry"). `peerCode` is the close code of the
 *   peer's Close frame (1005: none; 1006: the connection was lost), else
 *   null. `error` is a ProtocolError saying why, or null after a normal
 *   closure.
 * @typedef {{type: 'send', text: boolean, data: string|Uint8Array} | {type: 'ping'} |
 *   {type: 'deliver', data: Uint8Array} | {type: 'accepted', session: Session, refresh: boolean} |
 *   {type: 'timer', at: number|null} | CloseAction} Action
 */

/**
 * The action that ends a socket: see Action.
 * @typedef {{type: 'close', code: string|null, closeCode: number|null, reason: string|null, retry: boolean,
 *   peerCode: number|null, error: ProtocolError|null}} CloseAction
 */

/**
 * @typedef {object} MachineConfig
 * @property {string} keyId the client key's id in the server's registry
 * @property {KeyPair} keyPair the client key
 * @property {PinnedKeys} serverKeys the pinned server key set, as loadServerKeys returns it
 * @property {string} serverIdentity the expected server identity, 1 to 256 octets
 * @property {boolean} [tls=false] whether the connection is TLS (true also when exporter is set)
 * @property {Uint8Array|null} [exporter=null] the connection's RFC 9266 tls-exporter value (TLS 1.3 only)
 * @property {boolean} [allowUnbound=false] accept challenges without channel binding (cb "none") on a TLS connection
 * @property {number} [clockSkew=60] seconds of clock disagreement allowed
 * @property {number} [handshakeTimeout=10000] milliseconds from the upgrade to the accept
 * @property {number} [handshakeDeadline] an earlier absolute deadline (milliseconds) for the handshake, for a
 *   transport whose own bound started before the upgrade
 * @property {number} [pingInterval=30000] milliseconds between Pings in OPEN and REFRESHING; nothing received for
 *   twice that closes with keepalive_timeout. 0 turns rows C13 and C14 off, for transports that cannot send
 *   Pings or see control frames (browsers)
 * @property {number} [maxMessageSize=65536] the largest application message accepted, in octets (1 to 2^30)
 * @property {(step: string, detail: object) => void} [onStep] called at 'challenge', 'verified', 'response',
 *   'accept' and 'refresh', for UIs; its exceptions are ignored
 * @property {boolean} [diagnosticReasons=false] send diagnosticReason(code) instead of the plain reason text in
 *   every Close frame for a failure, for conformance tests only (spec section "Diagnostic reasons")
 */

const notOpen = (actions) => Object.assign(new Error('wsproof: the connection is not open'), { actions });

/**
 * The client's side of one socket from the upgrade to the close: the state
 * machine of spec section "Client state machine", rows C3 to C29, as
 * protocol.ClientConn implements it in Go. It performs no I/O, arms no timer
 * and reads no clock: the transport reports what happens on the socket, each
 * time with `now`, and carries out the returned actions in order.
 *
 * Time is in milliseconds since 1970-01-01T00:00:00Z, as Date.now() gives it
 * (the spec's *now* for NumericDate comparisons is that divided by 1000 and
 * rounded down). Per the spec's Time rule, every input first applies every
 * timed row due at `now` (the handshake deadline, the keepalive timeout, a
 * Ping), in table order.
 *
 * Verifying a challenge and signing the response use WebCrypto, which is
 * asynchronous: message() returns a Promise of the actions when the message
 * needs it, and also while an earlier message is still being processed, so
 * that messages are processed strictly in arrival order (a message queued
 * behind a challenge waits for it). Every other input is applied at once,
 * even while a message is being verified: it is about the connection at that
 * instant (a deadline, a Pong, the application's send or close, the peer's
 * Close frame). If such an input ends the socket, the pending message's
 * Promise resolves to no actions.
 */
export class ClientMachine {
  #c;
  /** @type {State} */
  #state = AWAIT_CHALLENGE;
  /** @type {Session|null} */
  #session = null;
  #sessionExp = 0;
  /** @type {Action|null} */
  /** @type {CloseAction|null} */
  #end = null;
  /** @type {VerifiedChallenge|null} the verified challenge whose accept is awaited */
  #pending = null;
  #deadline;
  #heard = 0;
  #nextPing = 0;
  /** @type {number|null} */
  #timerAt = null;
  #inflight = 0;
  /** @type {Promise<Action[]>} */
  #tail = Promise.resolve([]);

  /**
   * Starts the client's side of a socket whose upgrade has just succeeded
   * (state AWAIT_CHALLENGE, rows C3): the handshake must end by now plus
   * handshakeTimeout, or by handshakeDeadline if that is earlier. The timer
   * the transport must arm is `timerAt`.
   * @param {MachineConfig} config
   * @param {number} now milliseconds
   */
  constructor(config, now) {
    if (!config || typeof config !== 'object') throw new TypeError('wsproof: ClientMachine needs a config');
    if (typeof config.keyId !== 'string' || !KID_RE.test(config.keyId)) throw new TypeError('wsproof: keyId must be 1 to 128 printable ASCII characters');
    checkKeyPair(config.keyPair);
    if (!(config.serverKeys instanceof PinnedKeys)) throw new TypeError('wsproof: serverKeys must be a set loadServerKeys returned');
    checkIdentity(config.serverIdentity);
    const exporter = config.exporter == null ? null : config.exporter;
    if (exporter !== null && !(exporter instanceof Uint8Array)) throw new TypeError('wsproof: exporter must be a Uint8Array or null');
    const num = (v, d, min, max, name) => {
      if (v === undefined || v === null) return d;
      if (typeof v !== 'number' || !(v >= min && v <= max)) throw new RangeError(`wsproof: ${name} out of range`);
      return v;
    };
    if (typeof now !== 'number' || !Number.isFinite(now)) throw new TypeError('wsproof: now must be milliseconds');
    this.#c = {
      keyId: config.keyId,
      keyPair: config.keyPair,
      pinned: config.serverKeys,
      serverIdentity: config.serverIdentity,
      tls: !!config.tls || exporter !== null,
      exporter,
      allowUnbound: !!config.allowUnbound,
      clockSkew: Math.floor(num(config.clockSkew, 60, 0, 86400 * 365, 'clockSkew')),
      pingInterval: num(config.pingInterval, 30000, 0, 2 ** 31 - 1, 'pingInterval'),
      maxMessageSize: Math.floor(num(config.maxMessageSize, 65536, 1, MAX_MESSAGE_SIZE_LIMIT, 'maxMessageSize')),
      onStep: typeof config.onStep === 'function' ? config.onStep : null,
      diagnosticReasons: !!config.diagnosticReasons,
    };
    let d = now + num(config.handshakeTimeout, 10000, 0, 2 ** 31 - 1, 'handshakeTimeout');
    if (typeof config.handshakeDeadline === 'number' && config.handshakeDeadline < d) d = config.handshakeDeadline;
    this.#deadline = d;
    this.#arm([]);
  }

  /** The current state. @returns {State} */
  get state() {
    return this.#state;
  }

  /** The session of the most recent accept, or null before the first. @returns {Session|null} */
  get session() {
    return this.#session;
  }

  /** The close action that ended the socket, or null while it has not ended. @returns {CloseAction|null} */
  get end() {
    return this.#end;
  }

  /** When the transport must call timer() next (milliseconds), or null for never. @returns {number|null} */
  get timerAt() {
    return this.#timerAt;
  }

  /** Whether a message is being processed asynchronously. @returns {boolean} */
  get busy() {
    return this.#inflight > 0;
  }

  /**
   * A WebSocket data message arrived (rows C5 to C21). The rows apply, in
   * order, the size limit of the state and type, then the type, then the
   * first octet, which tells an accept ('{') from a challenge. data is the
   * text (a string, or its UTF-8 octets) or the binary payload (a Uint8Array
   * or ArrayBuffer).
   * @param {number} now milliseconds
   * @param {boolean} isText
   * @param {string|Uint8Array|ArrayBuffer} data
   * @returns {Action[]|Promise<Action[]>}
   */
  message(now, isText, data) {
    if (this.#inflight === 0) {
      const r = this.#onMessage(now, isText, data);
      return Array.isArray(r) ? r : this.#track(r);
    }
    return this.#track(this.#tail.then(() => this.#onMessage(now, isText, data)));
  }

  #track(p) {
    this.#inflight++;
    const q = p.then(
      (acts) => {
        this.#inflight--;
        return acts;
      },
      (e) => {
        this.#inflight--;
        const acts = [];
        this.#closeFor(e, acts);
        return acts;
      },
    );
    this.#tail = q;
    return q;
  }

  #onMessage(now, isText, data) {
    const acts = [];
    this.#begin(now, acts);
    let text = null;
    let bytes = null;
    let size;
    let brace;
    if (isText && typeof data === 'string') {
      text = data;
      size = utf8Length(data);
      brace = data.charCodeAt(0) === 0x7b;
    } else {
      bytes = asBytes(data);
      size = bytes.byteLength;
      brace = isText && bytes[0] === 0x7b;
    }
    const st = this.#state;
    if (st === AWAIT_CHALLENGE || st === AWAIT_ACCEPT) {
      const limit = st === AWAIT_CHALLENGE ? MAX_HANDSHAKE : MAX_ACCEPT;
      if (size > limit) this.#fail('too_large', 'message over the limit before authentication', acts);
      else if (!isText) this.#fail('unexpected_message', 'binary message before authentication', acts);
      else if (st === AWAIT_CHALLENGE && brace) this.#fail('unexpected_message', 'accept before the challenge', acts);
      else if (st === AWAIT_CHALLENGE) return this.#readChallenge(now, text ?? bytes, AWAIT_ACCEPT, acts);
      else if (!brace) this.#fail('unexpected_message', 'text message other than the accept', acts);
      else this.#readAccept(now, text ?? bytes, acts);
    } else if (st === OPEN || st === REFRESHING) {
      this.#heard = Math.max(this.#heard, now);
      const limit = st === REFRESHING ? MAX_ACCEPT : MAX_HANDSHAKE; // an accept, or a re-challenge
      if (!isText && size > this.#c.maxMessageSize) this.#fail('too_large', 'application message over the limit', acts);
      else if (!isText) acts.push({ type: 'deliver', data: /** @type {Uint8Array} */ (bytes) });
      else if (size > limit) this.#fail('too_large', 'control message over the limit', acts);
      else if (st === OPEN && brace) this.#fail('unexpected_message', 'accept with no response outstanding', acts);
      else if (st === OPEN) return this.#readChallenge(now, text ?? bytes, REFRESHING, acts);
      else if (!brace) this.#fail('unexpected_message', 'text message other than the accept', acts);
      else this.#readAccept(now, text ?? bytes, acts);
    }
    return acts;
  }

  #step(name, detail) {
    if (!this.#c.onStep) return;
    try {
      this.#c.onStep(name, detail);
    } catch {
      // a UI callback must not break the protocol
    }
  }

  // readChallenge runs rows C8 and C19: verify, then send the response.
  async #readChallenge(now, data, next, acts) {
    const refresh = this.#state === OPEN;
    const text = typeof data === 'string' ? data : decodeText(data);
    if (text === null) {
      this.#fail('malformed', 'text message is not UTF-8', acts);
      return acts;
    }
    this.#step('challenge', { refresh, size: utf8Length(text) });
    const c = this.#c;
    let v;
    try {
      v = await checkChallenge(text, {
        keyId: c.keyId,
        keyPair: c.keyPair,
        pinned: c.pinned,
        serverIdentity: c.serverIdentity,
        tls: c.tls,
        allowUnbound: c.allowUnbound,
        clockSkew: c.clockSkew,
        exporter: c.exporter,
        sessionSid: refresh ? /** @type {Session} */ (this.#session).socketId : null,
        sessionExp: refresh ? this.#sessionExp : null,
        now: Math.floor(now / 1000),
      });
    } catch (e) {
      if (this.#state === CLOSED) return []; // ended meanwhile
      this.#closeFor(e, acts);
      return acts;
    }
    if (this.#state === CLOSED) return [];
    this.#step('verified', { refresh, header: v.header, claims: v.claims });
    this.#pending = v;
    this.#state = next;
    acts.push({ type: 'send', text: true, data: v.response });
    this.#step('response', { refresh, message: v.response, channelBound: v.channelBound });
    return acts;
  }

  // readAccept runs rows C12 and C21.
  #readAccept(now, data, acts) {
    const refresh = this.#state === REFRESHING;
    const text = typeof data === 'string' ? data : decodeText(data);
    let a;
    try {
      if (text === null) throw fail('malformed', 'accept is not UTF-8');
      a = checkAccept(text, this.#c.clockSkew, Math.floor(now / 1000));
    } catch (e) {
      this.#closeFor(e, acts);
      return;
    }
    const v = /** @type {VerifiedChallenge} */ (this.#pending);
    this.#pending = null;
    if (!this.#session) {
      this.#heard = now;
      this.#nextPing = now + this.#c.pingInterval;
    }
    const session = Object.freeze({
      socketId: v.claims.sid,
      subject: a.sub,
      groups: Object.freeze(a.groups),
      expiry: new Date(a.exp * 1000),
      channelBound: v.channelBound,
      token: a.token,
      serverKeyId: v.serverKeyId,
      maxSize: a.maxSize,
    });
    this.#session = session;
    this.#sessionExp = a.exp;
    this.#state = OPEN;
    acts.push({ type: 'accepted', session, refresh });
    this.#step('accept', { refresh, sub: a.sub, groups: a.groups.slice(), exp: new Date(a.exp * 1000) });
    if (refresh) this.#step('refresh', session);
    this.#arm(acts);
  }

  /**
   * Time passed (the timer armed by a timer action fired): applies whatever
   * is due at now (rows C4, C13, C14).
   * @param {number} now milliseconds
   * @returns {Action[]}
   */
  timer(now) {
    const acts = [];
    this.#timerAt = null;
    this.#due(now, acts);
    return acts;
  }

  // begin starts an input at now: it applies the timed rows whose time has
  // come.
  #begin(now, acts) {
    if (this.#timerAt !== null && now >= this.#timerAt) {
      this.#timerAt = null;
      this.#due(now, acts);
    }
  }

  // due applies, in table order, the timed rows whose time has come, then
  // arms the timer for the next one.
  #due(now, acts) {
    switch (this.#state) {
      case AWAIT_CHALLENGE:
      case AWAIT_ACCEPT:
        if (now >= this.#deadline) {
          this.#fail('handshake_timeout', 'handshake deadline passed', acts);
          return;
        }
        break;
      case OPEN:
      case REFRESHING: {
        const p = this.#c.pingInterval;
        if (p > 0) {
          if (now >= this.#heard + 2 * p) {
            this.#fail('keepalive_timeout', 'nothing received for two ping intervals', acts);
            return;
          }
          if (now >= this.#nextPing) {
            acts.push({ type: 'ping' });
            this.#nextPing = now + p;
          }
        }
        break;
      }
      default:
        return;
    }
    this.#arm(acts);
  }

  #arm(acts) {
    let at;
    switch (this.#state) {
      case AWAIT_CHALLENGE:
      case AWAIT_ACCEPT:
        at = this.#deadline;
        break;
      case OPEN:
      case REFRESHING: {
        const p = this.#c.pingInterval;
        at = p > 0 ? Math.min(this.#heard + 2 * p, this.#nextPing) : null;
        break;
      }
      default:
        return;
    }
    if (at !== this.#timerAt) {
      this.#timerAt = at;
      acts.push({ type: 'timer', at });
    }
  }

  /**
   * A Ping or Pong frame arrived (row C22): the peer is alive.
   * @param {number} now milliseconds
   * @returns {Action[]}
   */
  pong(now) {
    const acts = [];
    this.#begin(now, acts);
    if (this.#state === OPEN || this.#state === REFRESHING) this.#heard = Math.max(this.#heard, now);
    return acts;
  }

  /**
   * The application sends data as one application message (rows C23, C24).
   * Throws, leaving the socket as it is, an Error when the socket is not
   * OPEN or REFRESHING, and a RangeError when data is longer than the
   * accept's max_size; either error's `actions` holds the actions of the
   * timed rows the input applied, which the transport must still carry out.
   * @param {number} now milliseconds
   * @param {Uint8Array} data
   * @returns {Action[]}
   */
  send(now, data) {
    const acts = [];
    this.#begin(now, acts);
    if (this.#state !== OPEN && this.#state !== REFRESHING) throw notOpen(acts);
    const bytes = asBytes(data);
    if (bytes.byteLength > /** @type {Session} */ (this.#session).maxSize) {
      throw Object.assign(new RangeError(`wsproof: message longer than the server accepts (max_size ${this.#session?.maxSize})`), { actions: acts });
    }
    acts.push({ type: 'send', text: false, data: bytes });
    return acts;
  }

  /**
   * A write did not complete within the transport's write deadline: the
   * server is not reading (row C25, slow_reader, retryable).
   * @param {number} now milliseconds
   * @returns {Action[]}
   */
  writeTimeout(now) {
    const acts = [];
    this.#begin(now, acts);
    this.#fail('slow_reader', 'write deadline passed', acts);
    return acts;
  }

  /**
   * The application closes the socket (row C26): close with 1000, and do not
   * reconnect.
   * @param {number} now milliseconds
   * @returns {Action[]}
   */
  close(now) {
    const acts = [];
    this.#begin(now, acts);
    this.#close({ type: 'close', code: null, closeCode: 1000, reason: '', retry: false, peerCode: null, error: null }, acts);
    return acts;
  }

  /**
   * The server's Close frame arrived with close code `code` (1005 for none)
   * (row C27): the socket ends, and the action's retry follows spec section
   * "Retry" for that code.
   * @param {number} now milliseconds
   * @param {number} code
   * @returns {Action[]}
   */
  peerClose(now, code) {
    const acts = [];
    this.#begin(now, acts);
    this.#close({
      type: 'close', code: codeForClose(code), closeCode: null, reason: null, retry: closeRetryable(code), peerCode: code,
      error: code === 1000 ? null : remoteClose(code, this.#c.keyId),
    }, acts);
    return acts;
  }

  /**
   * The connection ended without a Close frame (row C28): retryable, as
   * 1006.
   * @param {number} now milliseconds
   * @returns {Action[]}
   */
  lost(now) {
    const acts = [];
    this.#begin(now, acts);
    this.#close({ type: 'close', code: null, closeCode: null, reason: null, retry: true, peerCode: 1006, error: remoteClose(1006) }, acts);
    return acts;
  }

  #fail(code, detail, acts) {
    this.#closeFor(fail(code, detail), acts);
  }

  // closeFor ends the socket for a failure: a ProtocolError of a code with a
  // close code, or else internal_error.
  #closeFor(e, acts) {
    let err = e;
    if (!(e instanceof ProtocolError) || !e.code || !ERRORS[e.code]) {
      err = new ProtocolError('internal_error', 'client failure', { cause: e });
    }
    const info = ERRORS[/** @type {string} */ (err.code)];
    const reason = this.#c.diagnosticReasons ? diagnosticReason(/** @type {string} */ (err.code)) : info.reason;
    this.#close({ type: 'close', code: err.code, closeCode: info.close, reason, retry: info.retryable, peerCode: null, error: err }, acts);
  }

  /**
   * @param {CloseAction} a
   * @param {Action[]} acts
   */
  #close(a, acts) {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    this.#pending = null;
    this.#end = a;
    acts.push(a);
  }
}

const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeText(bytes) {
  try {
    return textDecoder.decode(bytes);
  } catch {
    return null;
  }
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('wsproof: a message is a string, a Uint8Array or an ArrayBuffer');
}

// ---------------------------------------------------------------------------
// The transport: a WebSocket around the machine

const LINGER_MS = 1000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Whether this module runs in Node (or a runtime that presents itself as
 * Node): there the client reads the TLS exporter from the `ws` package's
 * socket and a TLS connection requires channel binding. Everywhere else it
 * runs the spec's browser profile, because a page's WebSocket exposes
 * neither the TLS connection nor control frames. A Node process that cannot
 * read the exporter (TLS 1.2, a WebSocket class without a socket) is still on
 * TLS, so it refuses unbound challenges unless allowUnbound is set: it never
 * falls back to the browser profile by itself.
 * @returns {boolean}
 */
function inNode() {
  const p = /** @type {any} */ (globalThis).process;
  return !!(p && p.versions && typeof p.versions.node === 'string');
}

/**
 * @typedef {object} CloseInfo
 * @property {number|null} code the close code: the one the client sent when it closed for a failure, else the
 *   one the server sent (1005: none; 1006: the connection was lost)
 * @property {string} reason the reason text of that Close frame; peer input when the server closed
 * @property {boolean} retryable whether a client may reconnect (with backoff): spec section "Retry"
 * @property {ProtocolError|null} [error] why the socket ended, null after a normal closure
 */

/**
 * @typedef {object} ConnectOptions
 * @property {string} keyId the client key's id in the server's registry (required)
 * @property {KeyPair} keyPair the client key (required)
 * @property {ServerKeys} serverKeys the pinned server key set, a JWK Set as JSON text or object (required)
 * @property {string} [serverIdentity] the server identity every challenge's iss must equal; default: the URL dialed,
 *   normalized as identityFromURL says (spec section "Server identity")
 * @property {boolean} [allowUnbound=false] Node: accept challenges without channel binding (cb "none") on a wss://
 *   connection, for a server behind a proxy that terminates TLS, or TLS 1.2. Without it such a server is refused
 *   with channel_binding_required: whatever terminates the client's TLS could otherwise relay the handshake and
 *   use the session. Browsers always accept them (the browser profile)
 * @property {boolean} [insecurePlaintext=false] allow ws:// to a host that is not loopback (testing only: the
 *   session token and every message then cross the network in the clear)
 * @property {new (url: string, protocols: string[], options?: object) => object} [WebSocket=globalThis.WebSocket]
 *   the WebSocket class; in Node, the `ws` package's
 * @property {(ws: object) => Promise<Uint8Array|null>} [channelBinding=nodeChannelBinding] Node: the connection's
 *   tls-exporter value
 * @property {number} [clockSkew=60] seconds of clock disagreement allowed when judging challenges and accepts
 * @property {number} [handshakeTimeout=10000] milliseconds from the start to the accept
 * @property {number} [pingInterval=30000] Node: milliseconds between WebSocket Pings on an authenticated socket;
 *   nothing received for twice that closes with keepalive_timeout (retryable). 0 turns it off. Browsers cannot
 *   send Pings or see Pongs: there the server's keepalive detects a dead client
 * @property {number} [writeTimeout=10000] milliseconds that queued outgoing data may make no progress before the
 *   client closes with slow_reader (retryable); 0 turns it off
 * @property {number} [maxMessageSize=65536] largest application message accepted, in octets
 * @property {string} [origin] Node only: the Origin header the `ws` package sends
 * @property {object} [wsOptions] Node only: further options for the `ws` constructor (for example ca, checkServerIdentity)
 * @property {(step: string, detail: object) => void} [onStep] called at 'open', 'challenge', 'verified', 'response', 'accept', 'refresh'
 * @property {boolean} [diagnosticReasons=false] name the spec code in the reason of every Close frame the client
 *   sends for a failure, for conformance tests only (spec section "Diagnostic reasons")
 * @property {() => number} [now=Date.now] the clock, in milliseconds
 */

function validateOptions(url, o) {
  if (!o || typeof o !== 'object') throw new TypeError('wsproof: connect needs options');
  if ('requireChannelBinding' in o) throw new TypeError(REMOVED_CB_OPTION);
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError('wsproof: url is not a URL');
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError('wsproof: url must be ws:// or wss://');
  // Spec section "Opening handshake": credentials never travel in the URL.
  if (u.username || u.password || /^[^?#]*@/.test(url.replace(/^[a-z]+:\/\//i, '').split('/')[0])) {
    throw new TypeError('wsproof: url must not carry credentials');
  }
  if (url.includes('#')) throw new TypeError('wsproof: url must not have a fragment');
  if (!o.insecurePlaintext && !plaintextAllowed(url)) {
    throw new TypeError('wsproof: ws:// only to a loopback host (localhost, 127.0.0.0/8, ::1); use wss://, or insecurePlaintext for tests');
  }
  if (typeof o.keyId !== 'string' || !KID_RE.test(o.keyId)) throw new TypeError('wsproof: keyId must be 1 to 128 printable ASCII characters');
  checkKeyPair(o.keyPair);
  if (!o.serverKeys) throw new TypeError('wsproof: serverKeys (the pinned server key set) is required');
  const serverIdentity = o.serverIdentity === undefined || o.serverIdentity === null ? identityFromURL(url) : o.serverIdentity;
  checkIdentity(serverIdentity);
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
    tls: u.protocol === 'wss:',
    keyId: o.keyId,
    keyPair: o.keyPair,
    serverIdentity,
    allowUnbound: !!o.allowUnbound,
    channelBinding: o.channelBinding || nodeChannelBinding,
    clockSkew: num(o.clockSkew, 60, 0, 86400, 'clockSkew'),
    handshakeTimeout: num(o.handshakeTimeout, 10000, 1, 600000, 'handshakeTimeout'),
    pingInterval: num(o.pingInterval, 30000, 0, MAX_TIMER_MS, 'pingInterval'),
    writeTimeout: num(o.writeTimeout, 10000, 0, MAX_TIMER_MS, 'writeTimeout'),
    maxMessageSize: Math.floor(num(o.maxMessageSize, 65536, 1, MAX_MESSAGE_SIZE_LIMIT, 'maxMessageSize')),
    origin: o.origin,
    wsOptions: o.wsOptions,
    onStep: typeof o.onStep === 'function' ? o.onStep : null,
    diagnosticReasons: !!o.diagnosticReasons,
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

// The error for a socket that closed before it opened (row C1): an upgrade
// refused with 429 or 503 is rate_limited, 502 and 504 are retryable, every
// other status is terminal; a connection that failed before the upgrade is
// retryable as 1006.
function dialError(err) {
  const status = upgradeStatus(err);
  const opts = { cause: err };
  switch (status) {
    case 0:
      if (isCertError(err)) return new ProtocolError(null, 'TLS certificate verification failed', { ...opts, retryable: false });
      // The ws package checks the upgrade response's subprotocol and
      // extensions itself (row C2).
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
      return new ProtocolError('origin_not_allowed', 'upgrade refused with HTTP status 403: the server does not allow ' +
        'the Origin header sent (options.origin)', opts);
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
 * The events of a Connection: plain objects with the fields below, plus
 * `detail` (the same data, for CustomEvent habits) and `timeStamp`.
 * @typedef {object} ConnectionEvents
 * @property {{type: 'message', data: Uint8Array, detail: Uint8Array, timeStamp: number}} message an application
 *   message, in the order the server sent them
 * @property {{type: 'refresh', session: Session, detail: Session, timeStamp: number}} refresh a refresh succeeded
 * @property {CloseInfo & {type: 'close', detail: CloseInfo, timeStamp: number}} close the socket has closed
 */

/**
 * A listener: a function, or an object with handleEvent, as EventTarget takes them.
 * @template E
 * @typedef {((event: E) => void) | {handleEvent(event: E): void}} Listener
 */

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
 *
 * The class is exported for its type and for instanceof; connect() and keep()
 * make its instances.
 */
export class Connection {
  /** @type {Session} */
  #session;
  /** @type {Link} */
  #link;
  #listeners = { message: new Set(), refresh: new Set(), close: new Set() };
  #held = [];

  /**
   * @internal
   * @param {unknown} link
   * @param {Session} session
   */
  constructor(link, session) {
    if (!(link instanceof Link)) throw new TypeError('wsproof: a Connection comes from connect() or keep()');
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
   * octets. The data is copied. Throws a RangeError, leaving the socket
   * open, when the message is longer than the server accepts (the accept's
   * max_size, session.maxSize), and an Error when the socket is no longer
   * open.
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
   * @template {keyof ConnectionEvents} K
   * @param {K} type
   * @param {Listener<ConnectionEvents[K]>} listener
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
   * @template {keyof ConnectionEvents} K
   * @param {K} type
   * @param {Listener<ConnectionEvents[K]>} listener
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

// Link is the glue between one WebSocket and a ClientMachine: it reports
// what happens on the socket to the machine, with the time, and carries out
// the actions the machine returns. Before the upgrade (state CONNECTING, rows
// C1 and C2) it works alone.
class Link {
  constructor(url, cfg, pinned) {
    this.cfg = cfg;
    this.url = url;
    this.wasOpen = false; // the WebSocket opened: a later failure is not the upgrade's
    this.pinned = pinned;
    /** @type {ClientMachine|null} */
    this.m = null;
    this.early = []; // messages that arrived before the machine existed, with their times
    this.blobs = null; // the Blob being read, which later messages wait for
    this.conn = null;
    this.localError = null; // a failure before the machine existed
    this.appCloseCode = null;
    this.lastError = null; // the transport's error event, for HTTP statuses
    this.finished = false;
    this.timer = null;
    this.lingerTimer = null;
    this.writeWatch = null; // the write deadline's check, while messages are queued
    this.sent = 0; // octets of messages sent
    this.wEnd = []; // for each queued message, the octets sent up to its end ...
    this.wAt = []; // ... and when it was sent
    this.start = cfg.now();
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
    // Node's ws package reports control frames as events; browsers hide them.
    if (typeof ws.on === 'function') {
      ws.on('pong', () => this.input((m, now) => m.pong(now)));
      ws.on('ping', () => this.input((m, now) => m.pong(now)));
    }
    this.timer = setTimeout(() => this.onConnectTimeout(), cfg.handshakeTimeout);
  }

  onOpen() {
    const ws = this.ws;
    // Row C2: the server must select wsproof.v1 and accept no extension;
    // otherwise fail the WebSocket connection.
    if (ws.protocol !== SUBPROTOCOL) return this.drop(new ProtocolError(null, 'server did not select subprotocol wsproof.v1'));
    if (typeof ws.extensions === 'string' && ws.extensions !== '') {
      return this.drop(new ProtocolError(null, 'server accepted a WebSocket extension'));
    }
    this.wasOpen = true;
    this.step('open', { protocol: ws.protocol });
    const node = inNode();
    Promise.resolve()
      .then(() => (node ? this.cfg.channelBinding(ws) : null))
      .then(
        (v) => this.startMachine(node, v == null ? null : v instanceof Uint8Array ? v : new Uint8Array(v)),
        (e) => this.drop(new ProtocolError('internal_error', 'computing the channel binding failed', { cause: e }), true),
      );
  }

  step(name, detail) {
    if (!this.cfg.onStep) return;
    try {
      this.cfg.onStep(name, detail);
    } catch {
      // a UI callback must not break the protocol
    }
  }

  // startMachine runs row C3 once the connection's exporter value is known:
  // the machine starts in AWAIT_CHALLENGE with the handshake deadline that
  // started with connect().
  startMachine(node, exporter) {
    if (this.finished || this.localError) return;
    const cfg = this.cfg;
    const ws = this.ws;
    // Rows C13 and C14 need Pings and the sight of control frames, which only
    // the ws package gives; a browser page has neither.
    const keepalive = node && typeof ws.ping === 'function' && typeof ws.on === 'function';
    try {
      this.m = new ClientMachine({
        keyId: cfg.keyId,
        keyPair: cfg.keyPair,
        serverKeys: this.pinned,
        serverIdentity: cfg.serverIdentity,
        tls: cfg.tls,
        exporter,
        // The browser profile accepts unbound challenges: a page cannot read
        // the exporter (spec section "Browser profile").
        allowUnbound: cfg.allowUnbound || !node,
        clockSkew: cfg.clockSkew,
        handshakeTimeout: cfg.handshakeTimeout,
        handshakeDeadline: this.start + cfg.handshakeTimeout,
        pingInterval: keepalive ? cfg.pingInterval : 0,
        maxMessageSize: cfg.maxMessageSize,
        onStep: cfg.onStep,
        diagnosticReasons: cfg.diagnosticReasons,
      }, cfg.now());
    } catch (e) {
      this.drop(new ProtocolError('internal_error', 'the client machine refused its configuration', { cause: e }), true);
      return;
    }
    this.arm();
    const early = this.early;
    this.early = [];
    for (const [t, data] of early) this.feed(t, data);
  }

  // drop fails the connection before the machine took over: without a
  // wsproof close code (row C2), or with the error's when the socket is open.
  drop(err, open = false) {
    if (this.localError || this.finished) return;
    this.localError = err;
    clearTimeout(this.timer);
    const info = open && err.code ? ERRORS[err.code] : null;
    try {
      if (info) this.ws.close(info.close, this.cfg.diagnosticReasons ? diagnosticReason(err.code) : info.reason);
      else if (typeof this.ws.terminate === 'function') this.ws.terminate();
      else this.ws.close();
    } catch {
      // already closing
    }
    if (info) this.lingerTimer = setTimeout(() => this.forceEnd(), LINGER_MS);
  }

  onConnectTimeout() {
    if (this.m) return;
    const open = this.ws.readyState === 1;
    this.drop(new ProtocolError('handshake_timeout', 'no connection within the handshake timeout', open ? {} : { closeCode: null }), open);
  }

  onMessage(data) {
    const now = this.cfg.now();
    if (!this.m) {
      if (!this.localError) this.early.push([now, data]);
      return;
    }
    this.feed(now, data);
  }

  feed(now, data) {
    if (this.blobs || (typeof Blob !== 'undefined' && data instanceof Blob)) {
      // binaryType is 'arraybuffer', so a Blob comes only from platforms
      // that ignore it; while one is read, later messages wait behind it.
      const p = (this.blobs || Promise.resolve())
        .then(() => (typeof Blob !== 'undefined' && data instanceof Blob ? data.arrayBuffer() : data))
        .then((d) => {
          if (this.blobs === p) this.blobs = null;
          this.feedNow(now, d);
        });
      this.blobs = p;
      return;
    }
    this.feedNow(now, data);
  }

  feedNow(now, data) {
    if (typeof data === 'string') return this.input((m) => m.message(now, true, data));
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return this.input((m) => m.message(now, false, bytes));
  }

  // input reports something to the machine and carries out its actions, now
  // or, for a message that needs WebCrypto, when they are known. The machine
  // resolves its promises in input order.
  input(fn) {
    const m = this.m;
    if (!m) return;
    let r;
    try {
      r = fn(m, this.cfg.now());
    } catch (e) {
      if (e && Array.isArray(e.actions)) this.perform(e.actions);
      throw e;
    }
    if (Array.isArray(r)) this.perform(r);
    else {
      r.then((acts) => this.perform(acts), (e) => setTimeout(() => {
        throw e; // the machine's promises do not reject: a bug, reported like an uncaught error
      }));
    }
  }

  perform(acts) {
    for (const a of acts) {
      switch (a.type) {
        case 'send':
          try {
            this.ws.send(a.data);
          } catch {
            // the socket is closing; its close event ends the machine
          }
          this.noteWrite(a.text ? utf8Length(a.data) : a.data.byteLength);
          break;
        case 'ping':
          try {
            this.ws.ping();
          } catch {
            // the socket is closing
          }
          break;
        case 'deliver':
          if (this.conn) this.conn._emit(wsEvent('message', { data: a.data }, a.data));
          break;
        case 'accepted':
          if (!this.conn) {
            this.conn = new Connection(this, a.session);
            this.resolveOpened(this.conn);
          } else {
            this.conn._setSession(a.session);
            this.conn._emit(wsEvent('refresh', { session: a.session }, a.session));
          }
          break;
        case 'timer':
          this.arm();
          break;
        case 'close':
          this.onEnd(a);
          break;
      }
    }
  }

  // arm keeps the one timer at the machine's timerAt.
  arm() {
    clearTimeout(this.timer);
    this.timer = null;
    const at = this.m && this.m.state !== 'CLOSED' ? this.m.timerAt : null;
    if (at === null) return;
    const ms = Math.min(MAX_TIMER_MS, Math.max(0, at - this.cfg.now()));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.input((m, now) => m.timer(now));
    }, ms);
  }

  // noteWrite implements the write deadline (row C25) over the WebSocket
  // API, which reports only the octets still queued (bufferedAmount): each
  // message that is queued rather than written at once is remembered with
  // its time and the running total of octets sent; it is written once
  // bufferedAmount says fewer octets are queued than were sent after it. A
  // message still queued after writeTimeout means the server is not reading.
  noteWrite(n) {
    const wt = this.cfg.writeTimeout;
    if (!wt) return;
    this.sent += n;
    if ((this.ws.bufferedAmount || 0) === 0) return; // written already, with all before it
    this.wEnd.push(this.sent);
    this.wAt.push(this.cfg.now());
    if (this.writeWatch) return;
    this.writeWatch = setInterval(() => this.checkWrites(), Math.max(10, Math.min(1000, Math.floor(wt / 4))));
  }

  checkWrites() {
    const written = this.sent - (this.ws.bufferedAmount || 0);
    let i = 0;
    while (i < this.wEnd.length && this.wEnd[i] <= written) i++;
    if (i > 0) {
      this.wEnd.splice(0, i);
      this.wAt.splice(0, i);
    }
    if (this.wEnd.length === 0 || !this.m || this.m.state === 'CLOSED') {
      this.stopWatch();
      return;
    }
    if (this.cfg.now() - this.wAt[0] >= this.cfg.writeTimeout) {
      this.stopWatch();
      this.input((m, now) => m.writeTimeout(now));
    }
  }

  stopWatch() {
    clearInterval(this.writeWatch);
    this.writeWatch = null;
    this.wEnd = [];
    this.wAt = [];
  }

  sendData(bytes) {
    if (!this.m) throw new Error('wsproof: the connection is not open');
    this.input((m, now) => m.send(now, bytes));
  }

  closeByApp(code) {
    if (!this.m || this.m.state === 'CLOSED') return;
    this.appCloseCode = code;
    this.input((m, now) => m.close(now));
  }

  // onEnd carries out the machine's close action: the Close frame, when the
  // client sends one, and a bounded wait for the server's.
  onEnd(a) {
    clearTimeout(this.timer);
    this.timer = null;
    this.stopWatch();
    if (a.closeCode === null) return; // the peer closed, or the connection is gone
    const app = this.appCloseCode !== null;
    try {
      if (app) this.ws.close(this.appCloseCode);
      else this.ws.close(a.closeCode, a.reason);
    } catch {
      // the socket is already closing
    }
    this.lingerTimer = setTimeout(() => this.forceEnd(), app ? 10000 : LINGER_MS);
  }

  forceEnd() {
    if (typeof this.ws.terminate === 'function') this.ws.terminate();
    else this.finish(1006, '');
  }

  finish(code, reason) {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    clearTimeout(this.lingerTimer);
    this.stopWatch();
    const m = this.m;
    if (m && m.state !== 'CLOSED') {
      // Rows C27 and C28: the server's Close frame, or none.
      this.perform(code === 1006 ? m.lost(this.cfg.now()) : m.peerClose(this.cfg.now(), code));
    }
    let info;
    const a = m && m.end;
    if (this.localError) {
      const e = this.localError;
      const sent = e.closeCode != null && e.code && ERRORS[e.code];
      info = { code: sent ? e.closeCode : code, reason: sent ? (this.cfg.diagnosticReasons ? diagnosticReason(e.code) : ERRORS[e.code].reason) : reason, retryable: e.retryable, error: e };
    } else if (!a) {
      const e = code === 1006 && this.lastError ? dialError(this.lastError) : remoteClose(code, this.cfg.keyId);
      info = { code, reason, retryable: e.retryable, error: e };
    } else if (this.appCloseCode !== null && a.closeCode !== null) {
      info = { code, reason, retryable: false, error: null };
    } else if (a.closeCode !== null) {
      info = { code: a.closeCode, reason: a.reason, retryable: a.retry, error: a.error };
    } else {
      info = { code, reason, retryable: a.retry, error: a.error };
    }
    const settle = (i) => {
      if (!this.conn) this.rejectOpened(i.error || remoteClose(code, this.cfg.keyId));
      else this.conn._emit(wsEvent('close', i, i));
      this.resolveClosed(i);
    };
    // A browser reports a refused upgrade as a failed connection, which is
    // retryable; ask the endpoint whether this page's Origin is the reason
    // (spec section "Opening handshake"), so that keep() does not retry a
    // refusal forever. Node's ws package reports the status itself.
    if (!a && !this.localError && code === 1006 && !this.wasOpen && !inNode() && typeof fetch === 'function') {
      originRefused(this.url).then(
        (refused) => settle(refused ? {
          ...info,
          retryable: false,
          error: new ProtocolError('origin_not_allowed', `the server does not allow this page's origin (${globalThis.location ? globalThis.location.origin : 'unknown'}) ` +
            'on this endpoint: add it to the server\'s allow-list ("wsproof serve --origin"), or use an endpoint that allows it', { closeCode: null }),
        } : info),
        () => settle(info),
      );
      return;
    }
    settle(info);
  }
}

/**
 * Whether the WebSocket endpoint at url refuses this page's Origin: its
 * answer to a plain request, readable from any page, is 403 with the
 * origin_not_allowed reason text as the body's first line (spec section
 * "Opening handshake"). False when the endpoint does not say so, or does not
 * answer within 5 seconds.
 * @param {string} url a ws:// or wss:// URL
 * @returns {Promise<boolean>}
 */
async function originRefused(url) {
  const u = new URL(url);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  // POST: a browser sends Origin with every POST, but not with a GET to
  // its own origin (Fetch standard), and the answer depends on it.
  const init = { method: 'POST', mode: 'cors', credentials: 'omit', cache: 'no-store', redirect: 'error' };
  if (typeof AbortSignal !== 'undefined' && typeof AbortSignal.timeout === 'function') init.signal = AbortSignal.timeout(5000);
  const r = await fetch(u.href, /** @type {RequestInit} */ (init));
  if (r.status !== 403) return false;
  const body = await r.text();
  return body.split('\n')[0] === NO_CLOSE.origin_not_allowed.reason;
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
 * TypeError or RangeError, and so does ws:// to a host that is not loopback
 * unless options.insecurePlaintext is set.
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
 * A failure that keep() reports with a 'failure' event: one for each
 * connection attempt that failed and each connection that ended for a
 * reason other than the application's close, the server's normal close or
 * stop(). The fields are those of `error` and of keep's decision.
 * @typedef {object} FailureInfo
 * @property {string|null} code the spec's error code, or null when the close code stands for several (4003) or
 *   none (a broken connection, 1006; an HTTP status of no code; an error that is not a ProtocolError)
 * @property {number|null} closeCode the WebSocket close code sent or received, or null (an HTTP refusal)
 * @property {boolean} retryable whether spec section "Retry" allows connecting again
 * @property {boolean} willRetry whether keep will connect again (after delay), which it does exactly when the
 *   failure is retryable, unless stop() is called
 * @property {number|null} delay milliseconds until the next attempt, or null when keep gives up
 * @property {ProtocolError|Error} error why; the same object done rejects with when keep gives up
 */

/**
 * A 'failure' event of keep(): the FailureInfo, again as `detail` (for
 * CustomEvent habits), and `timeStamp`, Date.now() when it happened.
 * @typedef {FailureInfo & {type: 'failure', detail: FailureInfo, timeStamp: number}} FailureEvent
 */

/**
 * What keep() returns.
 * @typedef {object} Keeper
 * @property {() => void} stop stops reconnecting and closes the current connection (1000); done then resolves
 *   with {stopped: true}
 * @property {Promise<{stopped: true} | CloseInfo>} done resolves when keep ends without a failure: after stop()
 *   ({stopped: true}), or when the application closed its Connection or the server closed it normally (1000), with
 *   that Connection's CloseInfo. Rejects when keep gives up on a terminal failure, with the error: a ProtocolError
 *   (its code, closeCode, retryable false, and cause when there is one), or whatever onConnection threw, or the
 *   TypeError or RangeError of invalid options. Await it or catch it: an ignored rejection is an unhandled one
 * @property {(type: 'failure', listener: Listener<FailureEvent>) => void} addEventListener listens for 'failure'
 *   events, each failure as it happens, retryable or not
 * @property {(type: 'failure', listener: Listener<FailureEvent>) => void} removeEventListener
 */

/**
 * Keeps a connection to url up: connects, hands each Connection to
 * onConnection, and when the socket ends in a way spec section "Retry" marks
 * as retryable (handshake_timeout, keepalive_timeout, slow_reader,
 * token_expired, rate_limited, internal_error, 1001 going away, 1006 a broken
 * connection, 1011 to 1014, HTTP 429, 502, 503, 504) waits and connects again.
 * The delay starts at initial milliseconds and doubles up to max, of which
 * the fraction jitter is random; it starts again from initial after a
 * connection that lasted a minute.
 *
 * Every failure is reported, as it happens, to the 'failure' listeners (a
 * FailureEvent: code, close code, whether keep will retry, the error). keep
 * gives up on a terminal failure (for example 4003, 4011, an HTTP 403, an
 * unknown close code, onConnection throwing, invalid options) and done
 * rejects with its error. It ends without a failure, and done resolves, on
 * stop(), when the application closes the Connection itself, and when the
 * server closes it normally (1000).
 * @param {string} url
 * @param {ConnectOptions} options
 * @param {(conn: Connection) => void} onConnection
 * @param {{initial?: number, max?: number, jitter?: number}} [backoff]
 * @returns {Keeper}
 */
export function keep(url, options, onConnection, { initial = 500, max = 30000, jitter = 0.5 } = {}) {
  let stopped = false;
  let timer = null;
  let wake = null;
  /** @type {Connection|null} */
  let current = null;
  /** @type {Set<Listener<FailureEvent>>} */
  const listeners = new Set();
  const j = Math.min(1, Math.max(0, jitter));
  /** @param {number} n */
  const delay = (n) => {
    const d = Math.min(max, initial * 2 ** Math.min(n, 30));
    return Math.round(d - Math.random() * j * d);
  };
  // report tells the listeners about one failure, before keep acts on it; a
  // listener's exception is the application's and is reported like
  // EventTarget does, without stopping keep.
  const report = (error, closeCode, retryable, wait) => {
    /** @type {FailureInfo} */
    const info = {
      code: error instanceof ProtocolError ? error.code : null,
      closeCode, retryable, willRetry: wait !== null, delay: wait, error,
    };
    const ev = /** @type {FailureEvent} */ (wsEvent('failure', info, info));
    for (const l of [...listeners]) {
      try {
        if (typeof l === 'function') l(ev);
        else l.handleEvent(ev);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  };
  /** @returns {Promise<{stopped: true} | CloseInfo>} */
  const run = async () => {
    let attempt = 0;
    for (;;) {
      if (stopped) return { stopped: true };
      /** @type {CloseInfo} */
      let outcome;
      /** @type {Connection|null} */
      let conn = null;
      try {
        conn = await connect(url, options);
      } catch (e) {
        // Invalid options (TypeError, RangeError): nothing to retry.
        if (!(e instanceof ProtocolError)) {
          report(e, null, false, null);
          throw e;
        }
        outcome = { code: e.closeCode, reason: e.reason ?? '', retryable: e.retryable, error: e };
      }
      if (conn) {
        if (stopped) {
          conn.close();
          return { stopped: true };
        }
        current = conn;
        const start = Date.now();
        try {
          onConnection(conn);
        } catch (e) {
          // The application's own failure: not the protocol's to retry.
          conn.close();
          await conn.closed;
          current = null;
          report(e, null, false, null);
          throw e;
        }
        outcome = await conn.closed;
        current = null;
        if (Date.now() - start >= 60000) attempt = 0;
      }
      if (stopped) return { stopped: true };
      // An end without an error is the application's close or the server's
      // 1000: keep is done, and nothing failed.
      if (!outcome.error) return outcome;
      const wait = outcome.retryable ? delay(attempt++) : null;
      report(outcome.error, outcome.code, outcome.retryable, wait);
      if (wait === null) throw outcome.error;
      if (stopped) return { stopped: true };
      await new Promise((r) => {
        wake = r;
        timer = setTimeout(r, wait);
      });
    }
  };
  const done = run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (wake) wake();
      if (current) current.close();
    },
    done,
    addEventListener(type, listener) {
      if (type === 'failure' && listener) listeners.add(listener);
    },
    removeEventListener(type, listener) {
      if (type === 'failure') listeners.delete(listener);
    },
  };
}
