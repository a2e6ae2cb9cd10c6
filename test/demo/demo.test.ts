import { describe, expect, it } from 'vitest';
import { main } from '../../examples/demo.js';

describe('npm start (the demo)', () => {
  it('runs every step as shown against the emulator, and says so', async () => {
    const lines: string[] = [];
    const saved = process.env.CLERK_MACHINE_SECRET_KEY;
    delete process.env.CLERK_MACHINE_SECRET_KEY; // the demo must use the emulator here
    try {
      await expect(main((line) => lines.push(line))).resolves.toBe(true);
    } finally {
      if (saved !== undefined) process.env.CLERK_MACHINE_SECRET_KEY = saved;
    }
    const transcript = lines.join('\n');
    expect(transcript).not.toContain('✘');
    expect(transcript).toContain('status 200 (expected 200)');
    expect(transcript).toContain('0 verify calls reached Clerk for those 200 requests');
    expect(transcript).toContain('status 403 (expected 403): insufficient_scope');
    expect(transcript).toMatch(/status 401 \(expected 401\), logged reason "revoked"/);
    expect(transcript).toContain('status 503 (expected 503)');
    expect(transcript).toContain('Every step behaved as shown.');
    if (process.env.REDIS_URL) {
      expect(transcript).toMatch(/refused by the second within [\d.]+ ms/);
    }
  }, 30_000);
});
