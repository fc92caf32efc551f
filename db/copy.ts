import { createHash } from 'node:crypto';
import { and, eq, gt, or, sql, type AnyColumn, type SQL } from 'drizzle-orm';
import { createStore } from './index.js';
import type { DbTarget } from './url.js';

/**
 * Copying a whole database between SQLite and Postgres (npm run db:copy): every table, table by
 * table in foreign-key order, in batches by primary key. Rows are inserted if absent and left
 * alone if present, so a copy that stopped (killed, --max-batches) resumes by running it again:
 * batches whose keys are all in the target are read and skipped, not written. At the end both
 * sides are counted and checksummed table by table.
 */

/** The tables copied, parents before children, with their primary keys (property names). */
export const COPY_TABLES = [
  { name: 'users', key: ['id'] },
  { name: 'api_keys', key: ['id'] },
  { name: 'sessions', key: ['id'] },
  { name: 'conversations', key: ['id'] },
  { name: 'messages', key: ['id'] },
  { name: 'conversation_shares', key: ['conversationId', 'userId'] },
  { name: 'share_links', key: ['tokenHash'] },
  { name: 'chat_completions', key: ['id'] },
  { name: 'responses', key: ['id'] },
  { name: 'response_events', key: ['responseId', 'seq'] },
  { name: 'server_settings', key: ['key'] },
] as const;
export type TableName = (typeof COPY_TABLES)[number]['name'];
export type Row = Record<string, unknown>;

/**
 * Columns the database keeps itself and so are not copied as they are: conversations'
 * stored_bytes is counted by a trigger as the messages go in (copied as 0, it ends equal to the
 * source's), and is left out of the checksum.
 */
export const DERIVED: Partial<Record<TableName, string[]>> = { conversations: ['storedBytes'] };

/** One database's tables as the copy reads and writes them, in Drizzle's row shape (the same in both dialects). */
export interface TableAccess {
  /** The table's columns (property names) that hold stored data: generated ones are left out. */
  columns(table: TableName): string[];
  /** Rows after `after` (their primary key values, in order), by primary key, at most `limit`. */
  page(table: TableName, after: unknown[] | null, limit: number): Promise<Row[]>;
  /** The keys (joined with keyOf) among these that the table has. */
  existing(table: TableName, keys: unknown[][]): Promise<Set<string>>;
  /** Inserts the rows, leaving any whose key is already there; one transaction. */
  insert(table: TableName, rows: Row[]): Promise<void>;
  count(table: TableName): Promise<number>;
  close(): Promise<void>;
}

export const keyColumns = (table: TableName): readonly string[] => COPY_TABLES.find((t) => t.name === table)!.key;
export const keyValues = (table: TableName, row: Row): unknown[] => keyColumns(table).map((k) => row[k]);
export const keyOf = (values: unknown[]) => JSON.stringify(values);

/**
 * A checksum of a table's rows that does not depend on their order (the dialects sort text
 * keys differently): the sum, modulo 2^128, of a SHA-256 prefix of each row's canonical JSON
 * (keys sorted, timestamps ISO-8601), derived columns left out.
 */
export class TableChecksum {
  private sum = 0n;
  rows = 0;
  /** `columns`: those both sides have (a column one dialect alone has, such as a search index, is not compared). */
  constructor(
    private readonly table: TableName,
    private readonly columns: string[],
  ) {}
  add(rows: Row[]): void {
    const skip = DERIVED[this.table] ?? [];
    const compared = this.columns.filter((c) => !skip.includes(c));
    for (const row of rows) {
      const kept = Object.fromEntries(compared.map((c) => [c, row[c]]));
      const digest = createHash('sha256').update(canonical(kept)).digest();
      this.sum = (this.sum + digest.readBigUInt64BE(0) * 2n ** 64n + digest.readBigUInt64BE(8)) % 2n ** 128n;
      this.rows += 1;
    }
  }
  get hex(): string {
    return this.sum.toString(16).padStart(32, '0');
  }
}

/** JSON with object keys sorted and dates as ISO-8601: the same row gives the same text from either dialect. */
export function canonical(value: unknown): string {
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Row)[k] ?? null)}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** Rows after a key, in key order: (a > x) or (a = x and b > y)… */
export function keyAfter(columns: AnyColumn[], after: unknown[]): SQL {
  const [first, ...rest] = columns;
  if (!rest.length) return gt(first!, after[0]);
  return or(gt(first!, after[0]), and(eq(first!, after[0]), keyAfter(rest, after.slice(1))))!;
}

/** `(a, b) in ((x, y), …)`, or `a in (x, …)` for one column: row values work in both dialects. */
export function keyIn(columns: AnyColumn[], keys: unknown[][]): SQL {
  const tuple = (values: SQL[]) => (values.length === 1 ? values[0]! : sql`(${sql.join(values, sql`, `)})`);
  return sql`${tuple(columns.map((c) => sql`${c}`))} in (${sql.join(keys.map((k) => tuple(k.map((v, i) => sql`${sql.param(v, columns[i])}`))), sql`, `)})`;
}

/** A failure of one side of a copy, saying which. */
export class CopySideError extends Error {
  override name = 'CopySideError';
  constructor(
    readonly side: 'from' | 'to',
    readonly target: DbTarget,
    override readonly cause: unknown,
  ) {
    super(`${side === 'from' ? 'reading the source' : 'writing the target'} failed: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

async function onSide<T>(side: 'from' | 'to', db: DbTarget, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw new CopySideError(side, db, err);
  }
}

/** The same tables, their failures marked with their side. */
function sided(side: 'from' | 'to', db: DbTarget, tables: TableAccess): TableAccess {
  return {
    columns: (table) => tables.columns(table),
    page: (...a) => onSide(side, db, () => tables.page(...a)),
    existing: (...a) => onSide(side, db, () => tables.existing(...a)),
    insert: (...a) => onSide(side, db, () => tables.insert(...a)),
    count: (...a) => onSide(side, db, () => tables.count(...a)),
    close: () => tables.close(),
  };
}

/** Opens a database's tables for copying; both dialects are loaded only when used. */
export async function openTables(target: DbTarget): Promise<TableAccess> {
  if (target.dialect === 'sqlite') return (await import('./sqlite/tables.js')).sqliteTables(target.path);
  return (await import('./pg/tables.js')).pgTables(target.url);
}

export interface CopyOptions {
  batchSize: number;
  /** Stop after this many batches that wrote rows (to test resuming); no limit when undefined. */
  maxBatches?: number;
  onProgress?: (p: { phase: 'copy' | 'check'; table: TableName; read: number; copied: number; total: number }) => void;
}

export interface TableReport {
  source_rows: number;
  target_rows: number;
  /** Rows this run inserted (a resumed run counts only what was missing). */
  copied: number;
  source_checksum: string;
  target_checksum: string;
  match: boolean;
}

export type CopyResult =
  | { status: 'stopped'; tables: Partial<Record<TableName, { copied: number }>>; batches: number }
  | { status: 'verified' | 'mismatch'; tables: Record<TableName, TableReport> };

/**
 * Copies every table of `from` into `to` (both migrated first), then verifies: per table, the
 * target must hold exactly the source's rows (count and checksum). A target that held other
 * rows fails the check; rows already there under a key are kept, not overwritten, and a
 * difference shows in the checksum.
 */
export async function copyDatabase(from: DbTarget, to: DbTarget, options: CopyOptions): Promise<CopyResult> {
  for (const [side, db] of [['from', from], ['to', to]] as const) {
    const store = createStore(db, { max: 1 });
    try {
      await onSide(side, db, () => store.migrate());
    } finally {
      await store.close().catch(() => {});
    }
  }
  const source = sided('from', from, await onSide('from', from, () => openTables(from)));
  const target = await onSide('to', to, () => openTables(to)).then(
    (t) => sided('to', to, t),
    async (err) => {
      await source.close();
      throw err;
    },
  );
  const shared = (name: TableName) => {
    const theirs = new Set(target.columns(name));
    return source.columns(name).filter((c) => theirs.has(c));
  };
  try {
    const sums = new Map<TableName, TableChecksum>();
    const copied = new Map<TableName, number>();
    let batches = 0;
    for (const { name } of COPY_TABLES) {
      const total = await source.count(name);
      const sum = new TableChecksum(name, shared(name));
      sums.set(name, sum);
      copied.set(name, 0);
      let after: unknown[] | null = null;
      for (;;) {
        const rows = await source.page(name, after, options.batchSize);
        if (!rows.length) break;
        sum.add(rows);
        const present = await target.existing(name, rows.map((r) => keyValues(name, r)));
        const missing = rows.filter((r) => !present.has(keyOf(keyValues(name, r))));
        if (missing.length) {
          const zeroed = DERIVED[name] ? missing.map((r) => ({ ...r, ...Object.fromEntries(DERIVED[name]!.map((k) => [k, 0])) })) : missing;
          await target.insert(name, zeroed);
          copied.set(name, copied.get(name)! + missing.length);
          batches += 1;
        }
        options.onProgress?.({ phase: 'copy', table: name, read: sum.rows, copied: copied.get(name)!, total });
        if (options.maxBatches !== undefined && batches >= options.maxBatches) {
          return { status: 'stopped', batches, tables: Object.fromEntries([...copied].map(([t, n]) => [t, { copied: n }])) };
        }
        after = keyValues(name, rows.at(-1)!);
        if (rows.length < options.batchSize) break;
      }
    }

    const tables = {} as Record<TableName, TableReport>;
    for (const { name } of COPY_TABLES) {
      const check = new TableChecksum(name, shared(name));
      const total = await target.count(name);
      let after: unknown[] | null = null;
      for (;;) {
        const rows = await target.page(name, after, options.batchSize);
        if (!rows.length) break;
        check.add(rows);
        options.onProgress?.({ phase: 'check', table: name, read: check.rows, copied: 0, total });
        after = keyValues(name, rows.at(-1)!);
        if (rows.length < options.batchSize) break;
      }
      const mine = sums.get(name)!;
      tables[name] = {
        source_rows: mine.rows,
        target_rows: check.rows,
        copied: copied.get(name)!,
        source_checksum: mine.hex,
        target_checksum: check.hex,
        match: mine.rows === check.rows && mine.hex === check.hex && total === check.rows,
      };
    }
    return { status: Object.values(tables).every((t) => t.match) ? 'verified' : 'mismatch', tables };
  } finally {
    await Promise.allSettled([source.close(), target.close()]);
  }
}
