/** Where the conversations live, decided once from DB_URL. */
export type DbTarget =
  | { dialect: 'sqlite'; path: string } // ':memory:' or a file path
  | { dialect: 'postgres'; url: string };

export function parseDbUrl(raw: string): DbTarget {
  const url = raw.trim();
  if (url === 'file::memory:') return { dialect: 'sqlite', path: ':memory:' };
  if (url.startsWith('file:')) {
    const path = url.slice('file:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw new Error('file: URL needs a path, e.g. file:./data/dev.db or file::memory:');
    return { dialect: 'sqlite', path };
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    if (/^postgres(ql)?:\/\/$/.test(url) || !URL.canParse(url)) {
      throw new Error('is not a valid postgres URL; expected postgres://user:password@host:5432/database');
    }
    return { dialect: 'postgres', url };
  }
  throw new Error(
    'must start with file: (SQLite, e.g. file:./data/dev.db or file::memory:) or postgres:// / postgresql://',
  );
}

/** The URL with any password hidden, for logs. */
export function describeDbTarget(target: DbTarget): string {
  if (target.dialect === 'sqlite') return `sqlite:${target.path}`;
  const u = new URL(target.url);
  if (u.password) u.password = '***';
  return u.toString();
}
