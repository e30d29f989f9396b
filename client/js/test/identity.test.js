// The default server identity (spec section "Server identity") and the
// plaintext rule (spec section "Opening handshake"): identityFromURL and
// plaintextAllowed on a table of URLs, and the same URLs through Go's
// protocol.IdentityFromURL and protocol.PlaintextAllowed, which must agree:
// wherever identityFromURL gives an identity, it is Go's. identityFromURL
// refuses some URLs Go accepts, those whose identity would not name the
// endpoint the WebSocket layer dials (it reads them with the WHATWG URL
// parser), so that a client never expects an identity for another URL than
// the one it connects to.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { identityFromURL, plaintextAllowed } from '../wsproof.js';
import { cleanup, goCommand, repoRoot, tempDir } from '../test-support/wsproof-server.js';

// [url, identity or null for a TypeError, plaintext allowed]
const CASES = [
  // The spec's example, and the forms of the rule.
  ['wss://Plant-3.example:443/ws?region=eu', 'wss://plant-3.example/ws', true],
  ['wss://plant-3.example/ws', 'wss://plant-3.example/ws', true],
  ['WSS://EXAMPLE.COM/WS', 'wss://example.com/WS', true],
  ['ws://example.com:80/', 'ws://example.com/', false],
  ['ws://example.com:8080', 'ws://example.com:8080/', false],
  ['ws://example.com', 'ws://example.com/', false],
  ['wss://example.com:80/x', 'wss://example.com:80/x', true],
  ['ws://example.com:443/x', 'ws://example.com:443/x', false],
  ['wss://h:/x', 'wss://h/x', true],
  ['wss://h/ws?', 'wss://h/ws', true],
  ['wss://h/ws/', 'wss://h/ws/', true],
  ['wss://h//a', 'wss://h//a', true],
  ['wss://h.example./x', 'wss://h.example./x', true],
  // IPv6 in brackets.
  ['ws://[::1]:80', 'ws://[::1]/', true],
  ['ws://[::1]:8080/a', 'ws://[::1]:8080/a', true],
  ['ws://[2001:DB8::1]/', 'ws://[2001:db8::1]/', false],
  // The path as it appears, with Go's escaping of what it does not keep.
  ['wss://h/a b', 'wss://h/a%20b', true],
  ['wss://h/a%20b', 'wss://h/a%20b', true],
  ['wss://h/a%2fb', 'wss://h/a%2fb', true],
  ['wss://h/a%2Fb%2f', 'wss://h/a%2Fb%2f', true],
  ['wss://h/%41', 'wss://h/%41', true],
  ['wss://h/é', 'wss://h/%C3%A9', true],
  ['wss://h/a;b=c', 'wss://h/a;b=c', true],
  ['wss://h/a:b@c', 'wss://h/a:b@c', true],
  ["wss://h/~a!$&'()*+,;=", "wss://h/~a!$&'()*+,;=", true],
  ['wss://h/a[b]', 'wss://h/a[b]', true],
  ['wss://h/a"b', 'wss://h/a%22b', true],
  ['wss://h/a<b>', 'wss://h/a%3Cb%3E', true],
  ['wss://h/a{b}', 'wss://h/a%7Bb%7D', true],
  ['wss://h/a`b', 'wss://h/a%60b', true],
  // Credentials and fragments never.
  ['wss://user@h/', null, true],
  ['wss://user:pw@h/', null, true],
  ['wss://@h/', null, true],
  ['wss://h/ws#frag', null, true],
  ['wss://h/ws#', null, true],
  ['wss://h/ws?a#b', null, true],
  // Not a ws:// or wss:// URL with a host.
  ['https://h/ws', null, false],
  ['ws:h/ws', null, false],
  ['ws:/h/ws', null, false],
  ['wss:///ws', null, true],
  ['wss://:443/ws', null, true],
  ['wss://h:-1/', null, false],
  ['wss://h:8a/', null, false],
  ['wss://exa mple.com/', null, false],
  [' wss://h/', null, false],
  ['wss://h/\t', null, false],
  ['wss://h/%', null, false],
  ['wss://h/a%zzb', null, false],
  ['wss://h\\a', null, false],
  // Go accepts these, but the WebSocket layer would dial another host, port
  // or path than the identity names: refused, give serverIdentity.
  ['wss://h:0443/x', null, true],
  ['wss://h:99999/', null, true],
  ['wss://127.1/', null, true],
  ['wss://0x7f000001/', null, true],
  ['ws://[0:0:0:0:0:0:0:1]/', null, true],
  ['ws://[::FFFF:127.0.0.1]/', null, true],
  ['ws://[fe80::1%25eth0]/', null, false],
  ['wss://ÉXAMPLE.com/', null, true],
  ['wss://h/a/../b', null, true],
  ['wss://h/./a', null, true],
  ['wss://h/a|b', null, true],
  ['wss://h/a^b', null, true],
  // Plaintext: loopback hosts only.
  ['ws://localhost:7700/ws', 'ws://localhost:7700/ws', true],
  ['ws://LOCALHOST/ws', 'ws://localhost/ws', true],
  ['ws://127.0.0.1/', 'ws://127.0.0.1/', true],
  ['ws://127.255.255.254/', 'ws://127.255.255.254/', true],
  ['ws://128.0.0.1/', 'ws://128.0.0.1/', false],
  ['ws://[::1]/', 'ws://[::1]/', true],
  ['ws://foo.localhost/', 'ws://foo.localhost/', false],
  ['ws://[::2]/', 'ws://[::2]/', false],
  ['ws://0.0.0.0/', 'ws://0.0.0.0/', false],
  ['ws://10.0.0.1:7700/ws', 'ws://10.0.0.1:7700/ws', false],
  ['wss://example.com/', 'wss://example.com/', true],
];

const js = (url) => {
  try {
    return identityFromURL(url);
  } catch (e) {
    assert.ok(e instanceof TypeError, `${url}: ${e}`);
    return null;
  }
};

test('identityFromURL and plaintextAllowed on the table', () => {
  for (const [url, id, plain] of CASES) {
    assert.equal(js(url), id, `identity of ${JSON.stringify(url)}`);
    assert.equal(plaintextAllowed(url), plain, `plaintext to ${JSON.stringify(url)}`);
  }
  assert.throws(() => identityFromURL(`wss://h/${'a'.repeat(249)}`), /longer than a server identity/);
  assert.equal(identityFromURL(`wss://h/${'a'.repeat(248)}`).length, 256);
});

// Go's side: a tiny program added to the module through go's -overlay (the
// source tree is not touched) that prints what protocol.IdentityFromURL and
// protocol.PlaintextAllowed say for each URL.
const GO_PROGRAM = `package main

import (
	"encoding/json"
	"os"

	"github.com/wsproof/wsproof/protocol"
)

func main() {
	var in []string
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	type result struct {
		ID        string \`json:"id"\`
		Err       bool   \`json:"err"\`
		Plaintext bool   \`json:"plaintext"\`
	}
	out := []result{}
	for _, s := range in {
		id, err := protocol.IdentityFromURL(s)
		out = append(out, result{id, err != nil, protocol.PlaintextAllowed(s)})
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
`;

let dir;
after(() => dir && cleanup(dir));

test('identityFromURL agrees with protocol.IdentityFromURL, plaintextAllowed with protocol.PlaintextAllowed', async (t) => {
  dir = tempDir();
  const src = join(dir, 'main.go');
  writeFileSync(src, GO_PROGRAM);
  const overlay = join(dir, 'overlay.json');
  writeFileSync(overlay, JSON.stringify({ Replace: { [join(repoRoot, 'internal', 'jsidentitycheck', 'main.go')]: src } }));
  const urls = CASES.map((c) => c[0]);
  const stdout = await new Promise((resolve, reject) => {
    const child = execFile(goCommand(), ['run', '-overlay', overlay, './internal/jsidentitycheck'], { cwd: repoRoot, maxBuffer: 1 << 20 },
      (err, out, errOut) => (err ? reject(new Error(`go run: ${err.message}\n${errOut}`)) : resolve(out)));
    child.stdin.end(JSON.stringify(urls));
  });
  const go = JSON.parse(stdout);
  assert.equal(go.length, urls.length);
  let refusedByJSOnly = 0;
  for (const [i, url] of urls.entries()) {
    const g = go[i];
    const j = js(url);
    if (j !== null) {
      assert.equal(g.err, false, `${JSON.stringify(url)}: Go refuses what wsproof.js accepts`);
      assert.equal(j, g.id, `${JSON.stringify(url)}: identity`);
    } else if (!g.err) {
      refusedByJSOnly++;
    }
    assert.equal(plaintextAllowed(url), g.plaintext, `${JSON.stringify(url)}: plaintext`);
  }
  t.diagnostic(`${urls.length} URLs: ${urls.filter((u) => js(u) !== null).length} identities equal Go's; ` +
    `${refusedByJSOnly} refused by wsproof.js only (ambiguous for the WebSocket layer)`);
});
