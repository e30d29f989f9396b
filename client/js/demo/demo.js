// The wsproof demo page, served by "wsproof serve" at /. It keeps one
// non-extractable key in IndexedDB, shows the command that enrolls it, and
// talks to the server's echo and broadcast room over /ws/browser, the
// endpoint that serves the spec's browser profile (no channel binding).
//
// Everything the server or other clients send is shown with textContent,
// never parsed as HTML: script running in this origin could sign with the
// key, which is the browser profile's residual risk.

import {
  ALGORITHMS, ERRORS, connect, generateKey, loadKey, publicJwk, saveKey, supportedAlgorithms,
} from '/wsproof.js';

const KEY_NAME = 'wsproof-demo';
const DEFAULT_ALG = 'ES256';
const ENDPOINT = '/ws/browser';

const $ = (id) => document.getElementById(id);

// What to do after each spec error code, as a person using this page meets
// it. The server sends every authentication failure as the same close code
// 4003, so a refusal of this key cannot be told apart from the others.
const HINTS = {
  malformed: 'a message was not well-formed; the server may not speak wsproof v1 as this page does',
  unexpected_message: 'a message arrived out of order; the server may not speak wsproof v1 as this page does',
  too_large: 'a message was over its size limit; send shorter messages',
  unknown_key: "the server's challenge is signed by a key that is not in /server.pub.jwks; reload the page, and check the server's key files",
  key_mismatch: 'the refresh was signed by another key; reload the page',
  alg_mismatch: "the server's challenge does not match its pinned algorithm; reload the page",
  bad_signature: "the server's challenge does not verify with its pinned key; this may not be the server you expect",
  key_revoked: "the server's operator revoked this key; make a new key and enroll it",
  key_not_valid: "this key is outside its validity window in the server's registry",
  challenge_expired: "check that this computer's clock agrees with the server's, then connect again",
  transcript_mismatch: 'the response did not match the challenge; connect again',
  socket_mismatch: 'the challenge was for another socket; connect again',
  nonce_mismatch: 'the response did not match the challenge; connect again',
  audience_mismatch: "the server's identity is not the one /identity gives; reload the page",
  channel_binding_mismatch: 'the endpoint demands TLS channel binding, which browsers cannot compute; use /ws/browser',
  channel_binding_required: 'channel binding is required, which browsers cannot compute: enroll the key without --cb-required',
  access_denied: 'the server does not accept this key (unknown, revoked, expired or not in a group it requires); enroll it with the command above',
  alg_not_allowed: "the server does not accept this key's algorithm; make a key with another algorithm",
  header_not_allowed: 'a message header had a member wsproof does not allow; the server may not speak wsproof v1',
  wrong_type: 'a message had the wrong type; the server may not speak wsproof v1 as this page does',
  keepalive_timeout: 'nothing arrived from the other side for too long; check the network, then connect again',
  handshake_timeout: 'the handshake did not finish in time; check the network, then connect again',
  slow_reader: 'messages could not be delivered fast enough; connect again, and send less at a time',
  token_expired: "the session expired; check that this computer's clock agrees with the server's, then connect again",
  session_revoked: "the server no longer accepts this key (revoked, removed or its groups changed); ask the server's operator",
  rate_limited: 'the server is busy; try again in a moment',
  internal_error: 'a party failed internally; connect again',
  origin_not_allowed: `the server does not allow this page's Origin; allow it with "wsproof serve --origin ${location.origin}"`,
  subprotocol_required: 'the endpoint wants the wsproof.v1 subprotocol; check that it is a wsproof endpoint',
  bad_key: 'a key could not be loaded; make a new key',
};

// The uniform refusal every authentication failure travels as (spec section
// "Uniform denials and kid enumeration").
const AUTH_FAILED_HINT =
  'the server does not accept this key (unknown, revoked, expired or not in a group it requires); enroll it with the command above';

const state = {
  keyPair: null,
  jwk: null,
  serverKeys: null,
  identity: '',
  conn: null,
  attempt: 0, // bumped by Disconnect, to drop a handshake still running
  t0: 0,
  expiry: null,
};

// ---- small helpers ----------------------------------------------------

function text(el, s) {
  el.textContent = s;
}

// algorithms lists the algorithms this browser's WebCrypto can sign with
// (EdDSA is missing from older browsers).
async function algorithms() {
  try {
    return await supportedAlgorithms();
  } catch {
    return ALGORITHMS.filter((a) => a !== 'EdDSA');
  }
}

// shellWord quotes s for a POSIX shell, unless it needs no quoting.
function shellWord(s) {
  if (/^[A-Za-z0-9@%+=:,./_-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", "'\\''")}'`;
}

function enrollCommand(jwk, sub) {
  return `wsproof keys add --jwk ${shellWord(JSON.stringify(jwk))} --sub ${shellWord(sub)} --groups broadcast`;
}

// toDate accepts a Date, seconds or milliseconds since the epoch.
function toDate(t) {
  if (t instanceof Date) return t;
  if (typeof t === 'number') return new Date(t < 1e12 ? t * 1000 : t);
  if (typeof t === 'string') return new Date(t);
  return null;
}

function remaining(ms) {
  if (ms <= 0) return 'expired';
  const s = Math.round(ms / 1000);
  return s >= 60 ? `in ${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s` : `in ${s}s`;
}

// STEPS names each onStep step for a person, and says in one line what its
// detail holds.
const STEPS = {
  open: ['socket open', (d) => `subprotocol ${d.protocol}`],
  challenge: ['challenge received', (d) => `${d.size} bytes, a JWS signed by the server`],
  verified: ['challenge verified', (d) => [
    `signed by pinned key ${d.header?.kid} (${d.header?.alg})`,
    `iss ${d.claims?.iss}`,
    `channel binding ${d.claims?.cb}`,
    `expires in ${d.claims ? d.claims.exp - d.claims.iat : '?'}s`,
  ].join(' · ')],
  response: ['response sent', (d) => `${d.message?.length ?? '?'} bytes, signed with this page's key; ` +
    `channel binding ${d.channelBound ? 'on' : 'off'}`],
  accept: ['accepted', (d) => `subject ${d.sub} · groups ${d.groups?.length ? d.groups.join(', ') : 'none'} · ` +
    `expires ${toDate(d.exp)?.toLocaleTimeString()}`],
  refresh: ['session refreshed', (d) => `expires ${toDate(d.expiry)?.toLocaleTimeString()}`],
};

function describe(name, detail) {
  const s = STEPS[name];
  if (!s || !detail) return '';
  try {
    return s[1](detail);
  } catch {
    return '';
  }
}

// codeOfClose is the spec code a close code stands for, or '' when it
// stands for none or for several (4003, every authentication failure).
function codeOfClose(closeCode) {
  const codes = Object.keys(ERRORS).filter((c) => ERRORS[c].close === closeCode);
  return codes.length === 1 ? codes[0] : '';
}

// explain turns any failure into { code, line, hint }: what happened, with
// the spec code or close code, and what to do.
function explain(err) {
  const closeCode = typeof err?.closeCode === 'number' ? err.closeCode : null;
  const code = typeof err?.code === 'string' && (err.code in HINTS) ? err.code : codeOfClose(closeCode);
  if (code) {
    const reason = err.reason ?? ERRORS[code]?.reason ?? code.replaceAll('_', ' ');
    return { code, line: `${reason} (${closeCode ? `${code}, ${closeCode}` : code})`, hint: HINTS[code] };
  }
  switch (closeCode) {
    case 4003:
      return { code: '', line: 'authentication failed (4003)', hint: AUTH_FAILED_HINT };
    case 1001:
      return { code: '', line: 'the server is going away (1001)', hint: 'it is shutting down or restarting; connect again later' };
    case 1006:
      return {
        code: '',
        line: 'the connection failed (1006)',
        hint: `check that "wsproof serve" is running and allows this page's Origin (a browser cannot see an HTTP 403; ` +
          `allow it with "wsproof serve --origin ${location.origin}"), then connect again`,
      };
  }
  if (err?.name === 'NotSupportedError') {
    return { code: '', line: err.message, hint: 'this browser cannot make a key of that algorithm; pick another one' };
  }
  const msg = String(err?.message ?? err).replace(/^wsproof: /, '');
  return { code: '', line: closeCode ? `${msg} (${closeCode})` : msg, hint: 'reload the page, then connect again' };
}

function showError(err, prefix = '') {
  const { code, line, hint } = explain(err);
  const box = $('error');
  box.replaceChildren();
  const what = document.createElement('strong');
  text(what, prefix + line);
  const how = document.createElement('span');
  how.className = 'hint';
  text(how, hint);
  box.append(what, document.createElement('br'), how);
  box.dataset.code = code;
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').replaceChildren();
  delete $('error').dataset.code;
}

function setStatus(s, label) {
  $('status').dataset.state = s;
  text($('status'), label);
  const connected = s === 'connected';
  const busy = s === 'connecting' || connected;
  $('connect').disabled = busy || !state.keyPair || !state.serverKeys;
  $('disconnect').disabled = !busy;
  $('new-key').disabled = busy;
  $('alg').disabled = busy;
  $('message').disabled = !connected;
  $('send').disabled = !connected;
}

function logLine(kind, s) {
  const li = document.createElement('li');
  li.className = kind;
  const time = document.createElement('time');
  text(time, new Date().toLocaleTimeString());
  const body = document.createElement('span');
  text(body, s);
  li.append(time, body);
  $('log').append(li);
  li.scrollIntoView({ block: 'nearest' });
}

function step(name, detail) {
  const li = document.createElement('li');
  li.dataset.step = name;
  const ms = document.createElement('span');
  ms.className = 'ms';
  text(ms, `+${Math.round(performance.now() - state.t0)} ms`);
  const label = document.createElement('span');
  label.className = 'step';
  text(label, (STEPS[name]?.[0] ?? name) + (detail?.refresh ? ' (refresh)' : ''));
  li.append(ms, label);
  const d = describe(name, detail);
  if (d) {
    const det = document.createElement('span');
    det.className = 'detail';
    text(det, d);
    li.append(det);
  }
  $('steps').append(li);
}

function failedStep(line) {
  const li = document.createElement('li');
  li.dataset.step = 'failed';
  li.className = 'failed';
  const ms = document.createElement('span');
  ms.className = 'ms';
  text(ms, `+${Math.round(performance.now() - state.t0)} ms`);
  const label = document.createElement('span');
  label.className = 'step';
  text(label, 'refused');
  const det = document.createElement('span');
  det.className = 'detail';
  text(det, line);
  li.append(ms, label, det);
  $('steps').append(li);
}

// ---- the key ----------------------------------------------------------

async function showKey(keyPair, note) {
  state.keyPair = keyPair;
  state.jwk = await publicJwk(keyPair);
  text($('kid'), state.jwk.kid);
  text($('key-alg'), keyPair.alg ?? state.jwk.alg);
  text($('key-note'), note);
  $('alg').value = keyPair.alg ?? state.jwk.alg;
  updateCommand();
  $('copy').disabled = false;
}

function updateCommand() {
  if (!state.jwk) return;
  const sub = $('sub').value.trim() || 'browser';
  text($('enroll-cmd'), enrollCommand(state.jwk, sub));
}

// The subject is only a suggestion for the command; it is kept across
// reloads like the key.
const SUB_KEY = 'wsproof-demo-subject';

function restoreSubject() {
  try {
    const sub = localStorage.getItem(SUB_KEY);
    if (sub) $('sub').value = sub;
  } catch {
    // storage disabled: keep the default
  }
}

function saveSubject() {
  try {
    localStorage.setItem(SUB_KEY, $('sub').value.trim());
  } catch {
    // storage disabled
  }
}

async function newKey(alg) {
  text($('key-note'), `generating a new ${alg} key…`);
  const keyPair = await generateKey(alg, { extractable: false });
  let note = `new, in IndexedDB as "${KEY_NAME}"`;
  try {
    await saveKey(KEY_NAME, keyPair);
  } catch (err) {
    console.warn('wsproof demo: cannot store the key', err);
    note = 'new, in memory only: IndexedDB refused it, so a reload loses it';
  }
  await showKey(keyPair, note);
}

async function initKey() {
  let keyPair = null;
  try {
    keyPair = await loadKey(KEY_NAME);
  } catch (err) {
    console.warn('wsproof demo: cannot load the stored key', err);
  }
  if (keyPair) {
    await showKey(keyPair, `loaded from IndexedDB ("${KEY_NAME}")`);
  } else {
    await newKey($('alg').value || DEFAULT_ALG);
  }
}

// ---- the server -------------------------------------------------------

async function fetchServer() {
  const [keysRes, idRes] = await Promise.all([
    fetch('/server.pub.jwks', { cache: 'no-store' }),
    fetch('/identity', { cache: 'no-store' }),
  ]);
  if (!keysRes.ok) throw new Error(`GET /server.pub.jwks: HTTP ${keysRes.status}`);
  if (!idRes.ok) throw new Error(`GET /identity: HTTP ${idRes.status}`);
  state.serverKeys = await keysRes.json();
  state.identity = (await idRes.text()).trim();
  text($('identity'), state.identity);
  text($('server-kids'), (state.serverKeys.keys ?? []).map((k) => `${k.kid} (${k.alg})`).join(', '));
}

function endpointURL() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${ENDPOINT}`;
}

// ---- the connection -----------------------------------------------------

function showSession(s) {
  text($('s-subject'), s.subject ?? '—');
  text($('s-groups'), s.groups?.length ? s.groups.join(', ') : 'none');
  text($('s-socket'), s.socketId ?? '—');
  text($('s-cb'), s.channelBound ? 'on (tls-exporter)' : 'off (browser profile)');
  text($('s-server-kid'), s.serverKeyId ?? '—');
  state.expiry = toDate(s.expiry);
  tick();
}

function clearSession() {
  for (const id of ['s-subject', 's-groups', 's-expiry', 's-socket', 's-cb', 's-server-kid']) text($(id), '—');
  state.expiry = null;
}

function tick() {
  if (!state.expiry || !state.conn) return;
  text($('s-expiry'), `${state.expiry.toLocaleTimeString()} (${remaining(state.expiry - Date.now())})`);
}

async function doConnect() {
  clearError();
  clearSession();
  $('steps').replaceChildren();
  state.t0 = performance.now();
  setStatus('connecting', 'connecting…');
  const attempt = ++state.attempt;
  let conn;
  try {
    conn = await connect(endpointURL(), {
      keyId: state.jwk.kid,
      keyPair: state.keyPair,
      serverKeys: state.serverKeys,
      serverIdentity: state.identity,
      onStep: (name, detail) => step(name, detail),
    });
  } catch (err) {
    if (attempt !== state.attempt) return;
    setStatus('failed', 'not connected');
    failedStep(explain(err).line);
    showError(err, 'handshake failed: ');
    $('error').scrollIntoView({ block: 'nearest' });
    return;
  }
  if (attempt !== state.attempt) {
    conn.close();
    return;
  }
  state.conn = conn;
  showSession(conn.session);
  setStatus('connected', `connected as ${conn.session.subject}`);
  logLine('system', `connected as ${conn.session.subject}; socket ${conn.session.socketId}`);
  $('message').focus();

  const decoder = new TextDecoder();
  conn.addEventListener('message', (e) => {
    const msg = typeof e.data === 'string' ? e.data : decoder.decode(e.data);
    const kind = msg.startsWith('echo: ') ? 'echo' : msg.startsWith('denied: ') ? 'denied' : 'broadcast';
    logLine(kind, msg);
  });
  conn.addEventListener('refresh', () => {
    if (state.conn !== conn) return;
    showSession(conn.session);
    logLine('system', `session refreshed in band; expires ${state.expiry?.toLocaleTimeString() ?? '?'}`);
  });
  conn.addEventListener('close', (e) => {
    if (state.conn !== conn) return;
    state.conn = null;
    state.expiry = null;
    if (!e.error) {
      setStatus('idle', 'not connected');
      logLine('system', `closed (${e.code})`);
      return;
    }
    setStatus('failed', 'disconnected');
    showError(e.error, 'session ended: ');
    logLine('error', `closed: ${e.code}${e.reason ? ` ${e.reason}` : ''}${e.retryable ? '; you may connect again' : ''}`);
  });
}

function doDisconnect() {
  const conn = state.conn;
  state.attempt++;
  state.conn = null;
  clearSession();
  setStatus('idle', 'not connected');
  if (conn) {
    conn.close();
    logLine('system', 'disconnected');
  }
}

function doSend(ev) {
  ev.preventDefault();
  const input = $('message');
  const msg = input.value;
  if (!msg || !state.conn) return;
  try {
    state.conn.send(new TextEncoder().encode(msg));
  } catch (err) {
    showError(err, 'send failed: ');
    return;
  }
  logLine('out', msg);
  input.value = '';
}

// ---- start --------------------------------------------------------------

async function main() {
  text($('endpoint'), endpointURL());
  if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) {
    throw Object.assign(new Error('WebCrypto is not available: this page is not a secure context'), {
      hint: `open it over https://, or at http://localhost:${location.port || 80}/ or http://127.0.0.1:${location.port || 80}/`,
    });
  }
  const sel = $('alg');
  for (const alg of await algorithms()) {
    const opt = document.createElement('option');
    opt.value = alg;
    text(opt, alg);
    sel.append(opt);
  }
  sel.value = DEFAULT_ALG;

  restoreSubject();
  $('sub').addEventListener('input', () => {
    saveSubject();
    updateCommand();
  });
  $('new-key').addEventListener('click', async () => {
    if (state.conn) return;
    clearError();
    $('new-key').disabled = true;
    try {
      await newKey(sel.value);
    } catch (err) {
      showError(err, `cannot make a ${sel.value} key: `);
    } finally {
      setStatus($('status').dataset.state, $('status').textContent);
    }
  });
  $('copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('enroll-cmd').textContent);
      text($('copy-note'), 'copied');
    } catch {
      getSelection().selectAllChildren($('enroll-cmd'));
      text($('copy-note'), 'selected: press Ctrl+C');
    }
  });
  $('connect').addEventListener('click', () => { doConnect(); });
  $('disconnect').addEventListener('click', doDisconnect);
  $('send-form').addEventListener('submit', doSend);
  setInterval(tick, 1000);

  await Promise.all([fetchServer(), initKey()]);
  setStatus('idle', 'not connected');
  document.body.dataset.ready = 'true';
}

main().catch((err) => {
  const box = $('fatal');
  box.replaceChildren();
  const what = document.createElement('strong');
  text(what, err?.message || String(err));
  const how = document.createElement('span');
  how.className = 'hint';
  text(how, err?.hint ?? explain(err).hint);
  box.append(what, document.createElement('br'), how);
  box.hidden = false;
  console.error('wsproof demo:', err);
});
