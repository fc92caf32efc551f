// Child process of `npm run soak`, in its own process group: remembers what the soak started
// (processes, temp directories, scratch databases) from JSON lines on stdin, and when stdin
// closes removes whatever is still listed. The soak removes things itself and unlists them;
// this only matters when the soak dies without cleaning up (SIGKILL, or tsx's signal relay
// killing it mid-cleanup).
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import postgres from 'postgres';

type Note =
  | { op: 'add' | 'remove'; kind: 'pid'; pid: number }
  | { op: 'add' | 'remove'; kind: 'dir'; path: string }
  | { op: 'add' | 'remove'; kind: 'db'; name: string; adminUrl: string };

const pids = new Set<number>();
const dirs = new Set<string>();
const dbs = new Map<string, string>();

// Ctrl-C goes to the soak's process group, not this one; ignore stray signals all the same.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

createInterface({ input: process.stdin })
  .on('line', (line) => {
    let n: Note;
    try {
      n = JSON.parse(line);
    } catch {
      return;
    }
    if (n.kind === 'pid') n.op === 'add' ? pids.add(n.pid) : pids.delete(n.pid);
    else if (n.kind === 'dir') n.op === 'add' ? dirs.add(n.path) : dirs.delete(n.path);
    else if (n.kind === 'db') n.op === 'add' ? dbs.set(n.name, n.adminUrl) : dbs.delete(n.name);
  })
  .on('close', () => void sweep().finally(() => process.exit(0)));

async function sweep(): Promise<void> {
  if (!pids.size && !dirs.size && !dbs.size) return;
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      pids.delete(pid);
    }
  }
  for (let i = 0; i < 50 && [...pids].some(alive); i++) await new Promise((r) => setTimeout(r, 100));
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  for (const [name, adminUrl] of dbs) {
    const sql = postgres(adminUrl, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await sql.unsafe(`drop database if exists "${name}" with (force)`);
    } catch {
      // nothing more to do from here
    } finally {
      await sql.end({ timeout: 2 });
    }
  }
  process.stderr.write(`soak janitor: cleaned up ${pids.size} process(es), ${dirs.size} dir(s), ${dbs.size} database(s) left behind\n`);
}
