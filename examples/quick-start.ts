/**
 * The README's quick start, as a program: `PORT=3000 npx tsx examples/quick-start.ts` with
 * CLERK_MACHINE_SECRET_KEY (this service's machine key) and, for the emulator, CLERK_API_URL set,
 * e.g. from `npx m2m-guard emulator`. test/readme runs it against the emulator.
 */
import express from 'express';
// In an app: from 'm2m-guard'.
import { m2mAuth } from '../src/index.js';

const app = express();
// Verifies with this machine's key (CLERK_MACHINE_SECRET_KEY), so Clerk also checks that the
// calling token was granted to this machine.
app.use('/internal', m2mAuth());
app.get('/internal/orders', (req, res) => {
  res.json({ calledBy: req.m2m?.subject, claims: req.m2m?.claims });
});
export const server = app.listen(Number(process.env.PORT ?? 3000));
