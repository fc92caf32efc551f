import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import type { DbTarget } from '../../db/url.js';

const root = resolve(import.meta.dirname, '../..');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `npm run <script>` as the operator runs it: a child process with only PATH and `env` set. */
export function runScript(script: string, args: string[], env: Record<string, string> = {}, input?: string): Promise<Run> {
  return new Promise((done) => {
    const child = execFile(
      process.execPath,
      ['--import', 'tsx', `scripts/${script}.ts`, ...args],
      { cwd: root, env: { PATH: process.env.PATH, ...env }, maxBuffer: 256 * 1024 * 1024 },
      (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** The DB_URL of a test database. */
export const dbUrlOf = (target: DbTarget) => (target.dialect === 'sqlite' ? `file:${target.path}` : target.url);
