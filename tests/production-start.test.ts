import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'chat-proxy-start-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The commands of the processes below `pid`, read from /proc. */
function descendants(pid: number): string[] {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid=,args='], { encoding: 'utf8' });
  const rows = out.trim().split('\n').map((l) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l)!).filter(Boolean);
  const found: string[] = [];
  const walk = (parent: number) => {
    for (const [, p, pp, args] of rows) {
      if (Number(pp) === parent) {
        found.push(args!);
        walk(Number(p));
      }
    }
  };
  walk(pid);
  return found;
}

it('npm start builds once and runs the compiled server with plain node: no tsx, no esbuild', async () => {
  const child = spawn('npm', ['start'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', PERSIST_TRANSCRIPTS: 'true', DB_URL: `file:${join(dir, 'start.db')}`, HOST: '127.0.0.1', PORT: '0', SESSION_SECRET: 'production-start-test-secret-0123456789' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  try {
    const port = await new Promise<string>((resolvePort, reject) => {
      const check = () => {
        const m = /"port":(\d+)[^\n]*"msg":"listening"/.exec(output);
        if (m) resolvePort(m[1]!);
      };
      child.stdout!.on('data', check);
      child.once('exit', (code) => reject(new Error(`npm start exited (${code}):\n${output}`)));
    });
    // The compiled server found the migrations and opened the database.
    const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { persistence: { ok: boolean } };
    expect(health.persistence.ok).toBe(true);
    const tree = descendants(child.pid!);
    expect(tree.some((args) => /node .*dist\/app\/index\.js/.test(args))).toBe(true);
    expect(tree.filter((args) => /tsx|esbuild/.test(args))).toEqual([]);
  } finally {
    // The whole group: npm, its shell and the server.
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {}
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
  }
}, 120_000);
