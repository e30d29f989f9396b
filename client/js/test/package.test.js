// The npm package @wsproof/client: the committed TypeScript declarations are
// the ones tsc makes from wsproof.js's JSDoc now (like the Go vectors, they
// are generated, never edited), and "npm pack" ships exactly what a user
// needs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cleanup, tempDir } from '../test-support/wsproof-server.js';

const run = promisify(execFile);
const pkgDir = fileURLToPath(new URL('..', import.meta.url));

test('wsproof.d.ts is what "npm run types" makes from the JSDoc', async () => {
  const out = tempDir();
  try {
    // The project's own settings, written elsewhere. tsc also type-checks
    // the JSDoc (checkJs) and fails on an error.
    await run(join(pkgDir, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json', '--outDir', out], { cwd: pkgDir });
    const want = readFileSync(join(out, 'wsproof.d.ts'), 'utf8');
    const got = readFileSync(join(pkgDir, 'wsproof.d.ts'), 'utf8');
    assert.ok(got === want, 'wsproof.d.ts is stale: run "npm run types" in client/js and commit the result');
  } finally {
    cleanup(out);
  }
});

test('npm pack ships the module, its types, the README and the LICENSE', async () => {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts=false'], { cwd: pkgDir });
  const [info] = JSON.parse(stdout);
  assert.deepEqual(info.files.map((f) => f.path).sort(), ['LICENSE', 'README.md', 'package.json', 'wsproof.d.ts', 'wsproof.js']);
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  assert.equal(pkg.type, 'module');
  assert.deepEqual(pkg.exports['.'], { types: './wsproof.d.ts', default: './wsproof.js' });
});
