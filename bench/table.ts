/** Figures per scenario, the ratios between them, and the markdown table. */
import type { LoadResult } from './load.js';

export interface ScenarioResult extends LoadResult {
  name: string;
  description: string;
  /** Server processes that shared the load (their figures combined). */
  instances: number;
  /** Emulator verify calls during the measured window. */
  upstreamCalls: number;
  /** Upstream verify calls per 1 000 requests sent in the window; `null` when none was sent. */
  upstreamPer1000: number | null;
  /** Emulator JWKS calls over the servers' whole life (warming, warm-up, measurement). */
  jwksCalls: number;
  /**
   * The server process's peak RSS over its whole life (start, warm-up, measurement); with
   * several instances, the largest of theirs.
   */
  peakRssMiB: number;
  /**
   * Server CPU time per completed request over the measured window, in microseconds: the cost
   * of a request to the server itself, far steadier on a shared machine than req/s.
   */
  cpuUsPerReq: number | null;
  /** Rounds this scenario ran (`--rounds`); its figures are those of the median round by 2xx req/s. */
  rounds: number;
  /** 2xx req/s of every round, in round order, for ratios paired round by round. */
  roundRates: number[];
  /** Server CPU µs per request of every round, in round order (`null` where none completed). */
  roundCpu: (number | null)[];
  /** The scenario this one is compared with (its own server without auth). */
  bare: string;
  /** Seconds the warming requests (one per token) took, before the warm-up; `null` when cold. */
  touchSec: number | null;
  /** Lines worth reading beside the figures (shown in the table's last column). */
  notes: string[];
  /** Why the harness counts this scenario as failed (its figures are still reported). */
  failure?: string;
  /** 2xx req/s over scenario `none`'s; `null` when `none` was not run. */
  ratioToNone: number | null;
  /** 2xx req/s over scenario `clerk-express`'s; `null` when it was not run. */
  ratioToClerkExpress: number | null;
  /** 2xx req/s over its bare scenario's (paired per round); `null` for a bare one. */
  ratioToBare: number | null;
  /** Server CPU µs per request added over its bare scenario (median of rounds); `null` likewise. */
  cpuAddedUs: number | null;
}

export type MeasuredScenario = Omit<
  ScenarioResult,
  'ratioToNone' | 'ratioToClerkExpress' | 'ratioToBare' | 'cpuAddedUs'
>;

/**
 * The ratio of 2xx req/s to a reference scenario's: with several rounds, the median of the
 * ratios paired round by round (both ran in the same spell of the shared machine), which is
 * far steadier than a ratio of two medians.
 */
function ratio(s: MeasuredScenario, reference: MeasuredScenario | undefined): number | null {
  if (!reference || reference.reqPerSec2xx <= 0) return null;
  const paired = s.roundRates
    .map((rate, i) => rate / (reference.roundRates[i] ?? Number.NaN))
    .filter((r) => Number.isFinite(r))
    .sort((a, b) => a - b);
  if (paired.length < 2) return round(s.reqPerSec2xx / reference.reqPerSec2xx, 3);
  return round(paired[Math.floor((paired.length - 1) / 2)]!, 3);
}

const median = (values: number[]): number | null => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? null : sorted[Math.floor((sorted.length - 1) / 2)]!;
};

/** Server CPU µs per request over the reference's, paired round by round, the median. */
export function cpuAdded(s: MeasuredScenario, reference: MeasuredScenario | undefined) {
  if (!reference) return null;
  const added = median(
    s.roundCpu.map((cpu, i) => (cpu ?? Number.NaN) - (reference.roundCpu[i] ?? Number.NaN)),
  );
  return added === null ? null : round(added, 1);
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Adds the ratios to scenarios `none` and `clerk-express`, and to each one's bare scenario. */
export function withRatios(measured: readonly MeasuredScenario[]): ScenarioResult[] {
  const byName = (name: string) => measured.find((s) => s.name === name);
  const none = byName('none');
  const clerk = byName('clerk-express');
  return measured.map((s) => {
    const bare = s.bare === s.name ? undefined : byName(s.bare);
    return {
      ...s,
      ratioToNone: ratio(s, none),
      ratioToClerkExpress: ratio(s, clerk),
      ratioToBare: ratio(s, bare),
      cpuAddedUs: cpuAdded(s, bare),
    };
  });
}

const COLUMNS: [string, (s: ScenarioResult) => string][] = [
  ['scenario', (s) => (s.failure ? `${s.name} (FAILED)` : s.name)],
  ['2xx req/s', (s) => fmt(s.reqPerSec2xx, 0)],
  ['total req/s', (s) => fmt(s.reqPerSecTotal, 0)],
  ['p50 ms', (s) => fmt(s.p50Ms, 1)],
  ['p99 ms', (s) => fmt(s.p99Ms, 1)],
  ['errors', (s) => String(s.errors)],
  ['non-2xx', (s) => String(s.non2xx)],
  ['upstream / 1k req', (s) => (s.upstreamPer1000 === null ? '–' : fmt(s.upstreamPer1000, 2))],
  ['server CPU µs/req', (s) => (s.cpuUsPerReq === null ? '–' : fmt(s.cpuUsPerReq, 0))],
  ['peak RSS MiB', (s) => fmt(s.peakRssMiB, 1)],
  ['× none', (s) => (s.ratioToNone === null ? '–' : fmt(s.ratioToNone, 2))],
  ['vs bare', (s) => (s.ratioToBare === null ? '–' : `${fmt(s.ratioToBare, 2)} × ${s.bare}`)],
  ['+CPU µs vs bare', (s) => (s.cpuAddedUs === null ? '–' : fmt(s.cpuAddedUs, 1))],
  [
    '× clerk-express',
    (s) => (s.ratioToClerkExpress === null ? '–' : fmt(s.ratioToClerkExpress, 2)),
  ],
  ['notes', (s) => (s.notes.length === 0 ? '' : s.notes.join('; ').replaceAll('|', '\\|'))],
];

export function fmt(value: number, digits: number): string {
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function markdownTable(rows: readonly ScenarioResult[]): string {
  const header = `| ${COLUMNS.map(([name]) => name).join(' | ')} |`;
  // Text columns (the first and the notes) to the left, figures to the right.
  const align = COLUMNS.map(([name], i) => (i === 0 || name === 'notes' ? ' --- ' : ' ---: '));
  const rule = `|${align.join('|')}|`;
  const body = rows.map((row) => `| ${COLUMNS.map(([, cell]) => cell(row)).join(' | ')} |`);
  return [header, rule, ...body].join('\n');
}
