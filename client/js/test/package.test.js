// The npm package @wsproof/client as a user gets it (issue 14, items 3 and
// 4): "npm pack" ships exactly what a user needs; the committed TypeScript
// declarations are the ones tsc makes from wsproof.js's JSDoc now (like the
// Go vectors, generated and never edited); and the Node example of the
// repository's README.md, taken verbatim from between its node-example
// markers, type-checks against the packed declarations and runs in a fresh
// "npm init -y" project that installed the tarball, against a live
// "wsproof serve": it prints the echo and exits 0 with an enrolled key, and
// exits 1 with the 4003 hint with a key the server does not know.
//
// Nothing here skips: without go, npm or the registry's packages (which
// "npm ci" put in npm's cache) the tests fail.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildWsproof, cleanup, repoRoot, startServer, stopAll, tempDir } from '../test-support/wsproof-server.js';

const exec = promisify(execFile);
const pkgDir = fileURLToPath(new URL('..', import.meta.url));
const devDependency = (name) => JSON.parse(readFileSync(join(pkgDir, 'node_modules', name, 'package.json'), 'utf8')).version;

// npm runs this file under "npm test", whose environment describes this
// package (npm_package_*, npm_config_local_prefix, ...): the npm commands
// below run as a user would run them, without it, except for where npm's
// cache is.
const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || /^npm_config_(cache|cafile|registry|userconfig)$/i.test(k)));
const npm = (args, cwd) => exec('npm', args, { cwd, env: npmEnv, maxBuffer: 16 << 20 });

// run runs a command to its end and returns its exit code and output, also
// when it fails.
async function run(file, args, opts) {
  try {
    const { stdout, stderr } = await exec(file, args, { maxBuffer: 16 << 20, ...opts });
    return { code: 0, stdout, stderr };
  } catch (e) {
    if (typeof e.code !== 'number') throw e;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

// The one block between <!-- node-example ... --> and <!-- /node-example -->
// in README.md, exactly as written there.
function readmeExample() {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^<!-- node-example\b[^\n]*-->\n```js\n([\s\S]*?)^```\n<!-- \/node-example -->$/gm)];
  assert.equal(blocks.length, 1, 'README.md has one ```js block between <!-- node-example --> and <!-- /node-example -->');
  return blocks[0][1];
}

let work, project, state, bin, srv, packed;

before(async () => {
  // The project lives outside the repository, so that Node's module
  // resolution cannot fall back on client/js/node_modules: whatever the
  // example imports must come from its own install.
  work = mkdtempSync(join(tmpdir(), 'wsproof-npm-'));
  project = join(work, 'project');
  state = join(work, 'state');
  mkdirSync(project);
  const [built, pack] = await Promise.all([
    buildWsproof(work),
    npm(['pack', '--json', '--pack-destination', work, '--ignore-scripts=false'], pkgDir),
  ]);
  bin = built;
  [packed] = JSON.parse(pack.stdout);

  // A default project, as the issue had it: "npm init -y" makes it CommonJS,
  // which is why the example is an .mjs file.
  await npm(['init', '-y'], project);
  // The versions client/js tests with, which "npm ci" put in npm's cache.
  await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, packed.filename),
    `ws@${devDependency('ws')}`, `@types/node@${devDependency('@types/node')}`, `@types/ws@${devDependency('@types/ws')}`], project);
  writeFileSync(join(project, 'example.mjs'), readmeExample());

  // The walk-through: a key from "wsproof keygen --jwk", enrolled with
  // "wsproof keys add", and another that is never enrolled.
  await exec(bin, ['keygen', '--jwk', '--out', join(project, 'alice.jwk'), '--sub', 'alice']);
  await exec(bin, ['keygen', '--jwk', '--out', join(project, 'stranger.jwk'), '--sub', 'stranger']);
  await exec(bin, ['keys', 'add', '--key', join(project, 'alice.jwk'), '--sub', 'alice', '--state', state]);
  srv = await startServer(bin, { state, registry: join(state, 'registry.jwks') });
});

after(async () => {
  await stopAll();
  if (work) cleanup(work);
});

// example runs the README's example in the project, as "node example.mjs
// URL KEY_FILE", with the server's state folder in WSPROOF_STATE as the
// example reads it. The timeout ends an example that would retry forever.
const example = (keyFile) => run(process.execPath, ['example.mjs', srv.url, keyFile], {
  cwd: project, env: { ...process.env, WSPROOF_STATE: state }, timeout: 60000,
});

describe('the npm package', () => {
  test('npm pack ships the module, its types, the README and the LICENSE, and nothing else', () => {
    assert.deepEqual(packed.files.map((f) => f.path).sort(), ['LICENSE', 'README.md', 'package.json', 'wsproof.d.ts', 'wsproof.js']);
    assert.equal(packed.name, '@wsproof/client');
    const pkg = JSON.parse(readFileSync(join(project, 'node_modules', '@wsproof', 'client', 'package.json'), 'utf8'));
    assert.equal(pkg.type, 'module');
    assert.deepEqual(pkg.exports['.'], { types: './wsproof.d.ts', default: './wsproof.js' });
    assert.equal(readFileSync(join(project, 'node_modules', '@wsproof', 'client', 'LICENSE'), 'utf8'), readFileSync(join(repoRoot, 'LICENSE'), 'utf8'));
  });

  test('wsproof.d.ts is what "npm run types" makes from the JSDoc', async () => {
    const out = tempDir();
    try {
      // The project's own settings, written elsewhere. tsc also type-checks
      // the JSDoc (checkJs) and fails on an error.
      await exec(join(pkgDir, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json', '--outDir', out], { cwd: pkgDir });
      const want = readFileSync(join(out, 'wsproof.d.ts'), 'utf8');
      const got = readFileSync(join(pkgDir, 'wsproof.d.ts'), 'utf8');
      assert.ok(got === want, 'wsproof.d.ts is stale: run "npm run types" in client/js and commit the result');
    } finally {
      cleanup(out);
    }
  });

  test('the README example type-checks, strictly, against the packed declarations', async () => {
    const r = await run(join(pkgDir, 'node_modules', '.bin', 'tsc'), [
      '--noEmit', '--strict', '--allowJs', '--checkJs', '--module', 'nodenext', '--target', 'es2022', '--types', 'node', 'example.mjs',
    ], { cwd: project });
    assert.equal(r.code, 0, `tsc:\n${r.stdout}${r.stderr}`);
  });

  test('the README example, verbatim: an enrolled key gets its message echoed and exits 0', async () => {
    const r = await example('alice.jwk');
    assert.equal(r.code, 0, `exit ${r.code}:\n${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, 'echo: hello\n');
    assert.equal(r.stderr, '');
  });

  test('the README example, verbatim: a key the server does not know exits 1 with the 4003 hint', async () => {
    const r = await example('stranger.jwk');
    const kid = JSON.parse(readFileSync(join(project, 'stranger.jwk'), 'utf8')).kid;
    assert.equal(r.code, 1, `exit ${r.code}:\n${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, '');
    // Terminal at once: no retry was announced before the final message.
    assert.equal(r.stderr, 'wsproof: authentication failed (4003): the server refused key id ' +
      `${JSON.stringify(kid)}: is the key enrolled under this key id (by default its RFC 7638 thumbprint), not revoked, ` +
      'valid now and in a group the server requires? The server does not say which check failed (spec section ' +
      '"Uniform denials and kid enumeration")\n');
  });
});
