/** Where a command writes; `process.stdout`/`process.stderr` in the real CLI. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}
