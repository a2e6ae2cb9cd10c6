import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Keeps the README true: every TypeScript block is preceded by `<!-- snippet: FILE -->` and
 * stands, line for line (indentation aside, imports spelled as a user would), in FILE, which a
 * test runs. Every npm script the README names exists.
 */
const root = resolve(import.meta.dirname, '../..');
const readme = readFileSync(resolve(root, 'README.md'), 'utf8');

const normalize = (text: string) =>
  text
    .replaceAll("'../src/index.js'", "'m2m-guard'")
    .replaceAll("'../../src/index.js'", "'m2m-guard'")
    .replace(/'(?:\.\.\/)+src\/(\w+)\/index\.js'/g, "'m2m-guard/$1'")
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('// In an app'))
    .join('\n');

const blocks = [...readme.matchAll(/(?:<!-- snippet: (\S+) -->\n)?```ts\n([\s\S]*?)```/g)].map(
  ([, file, code]) => ({ file, code: code! }),
);

describe('README', () => {
  it('has TypeScript blocks, each tied to a file that runs it', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    for (const { file, code } of blocks) {
      expect(file, `block without a snippet marker:\n${code}`).toBeDefined();
      const path = resolve(root, file!);
      expect(existsSync(path), `${file} does not exist`).toBe(true);
      expect(normalize(readFileSync(path, 'utf8'))).toContain(normalize(code));
    }
  });

  it('names only npm scripts that exist', () => {
    const { scripts } = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8'));
    const named = [...readme.matchAll(/npm (?:run ([\w:-]+)|(start|test)\b)/g)].map(
      ([, run, short]) => run ?? short,
    );
    expect(named).toContain('start');
    for (const name of named) expect(scripts, `npm script "${name}"`).toHaveProperty(name!);
  });

  it('documents every option of every factory', async () => {
    const { TOKEN_VERIFIER_KEYS } = await import('../../src/index.js');
    for (const option of [
      ...TOKEN_VERIFIER_KEYS,
      'required',
      'getToken',
      'allowQueryToken',
      'realm',
      'skipPreflight',
      'onError',
      'passErrors',
      'refreshBeforeMs',
      'tokenFormat',
      'minRemainingTtlSeconds',
      'commandTimeoutMs',
      'keyPrefix',
      'cluster',
    ]) {
      expect(readme, `option ${option}`).toContain(`\`${option}`);
    }
  });

  it("answers a new user's first questions", () => {
    // The two machineIds, side by side where both appear.
    expect(readme).toMatch(/`req\.m2m\.machineId` is the \*caller\*/);
    expect(readme).toMatch(/The option `machineId` is \*this\s+service\*/);
    // What a machine key needs for JWT-format tokens, and the provider's methods.
    expect(readme).toMatch(/need `machineId` \*\*and\*\* `jwtKey` \/ `CLERK_JWT_KEY`/);
    expect(readme).toContain('`provider.getToken()`');
    expect(readme).toContain('`provider.invalidate()`');
    // How long `npm test` takes, and that the default logger is no longer silent.
    expect(readme).toMatch(/npm test .*\(about \d+ minutes?\b/);
    expect(readme).not.toMatch(/\| `logger` \| silent \|/);
  });
});
