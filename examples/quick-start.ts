/**
 * The README's quick start, as a program: `npx tsx examples/quick-start.ts`.
 *
 * With CLERK_MACHINE_SECRET_KEY set (this service's machine key; CLERK_API_URL too for the
 * emulator, e.g. from `npx m2m-guard emulator`), it serves on PORT (default 3000) until stopped.
 * With no variable set, it starts an emulator, serves as its machine `api`, calls itself with a
 * token of `caller` and without one, prints both answers and exits. test/readme runs it too.
 */
// biome-ignore-all assist/source/organizeImports: the README's block must stay in one piece
// Not needed in an app: starts a local emulator when no CLERK_* variable is set.
import { showOrServe } from './support/local-clerk.js';
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

await showOrServe(server, '/internal/orders');
