/**
 * SQL that fills a migrated database with `conversations` × `perConversation` messages for one
 * owner (a session's stored hash), in a few statements: seeding 100,000 messages through HTTP
 * would take minutes. Each message is about 300 characters. Used by the export volume test and
 * npm run bench:export.
 */
export function bulkSeedSql(dialect: 'sqlite' | 'postgres', { conversations, perConversation, sessionHash }: { conversations: number; perConversation: number; sessionHash: string }): string[] {
  const messages = conversations * perConversation;
  const text = `'message ' || n || ' ${'lorem ipsum dolor sit amet '.repeat(8)}'`;
  if (dialect === 'sqlite') {
    const base = Date.UTC(2024, 0, 1);
    return [
      `insert into sessions (id, created_at, last_seen_at) values ('${sessionHash}', ${base}, ${base})`,
      `with recursive c(i) as (select 1 union all select i + 1 from c where i < ${conversations})
       insert into conversations (id, session_id, title, metadata, last_seq, created_at, updated_at)
       select 'conv-' || printf('%06d', i), '${sessionHash}', 'bulk ' || i, '{"pinned":true}', ${perConversation}, ${base} + i * 1000, ${base} + i * 1000 from c`,
      `with recursive m(n) as (select 0 union all select n + 1 from m where n < ${messages - 1})
       insert into messages (id, conversation_id, role, status, content, seq, created_at, updated_at)
       select 'msg-' || n, 'conv-' || printf('%06d', n / ${perConversation} + 1), case when n % 2 = 0 then 'user' else 'assistant' end, 'final',
              ${text}, n % ${perConversation} + 1, ${base} + n, ${base} + n from m`,
    ];
  }
  return [
    `insert into sessions (id, created_at, last_seen_at) values ('${sessionHash}', '2024-01-01Z', '2024-01-01Z')`,
    `insert into conversations (id, session_id, title, metadata, last_seq, created_at, updated_at)
     select 'conv-' || lpad(i::text, 6, '0'), '${sessionHash}', 'bulk ' || i, '{"pinned":true}', ${perConversation}, timestamptz '2024-01-01Z' + i * interval '1 second', timestamptz '2024-01-01Z' + i * interval '1 second'
     from generate_series(1, ${conversations}) i`,
    `insert into messages (id, conversation_id, role, status, content, seq, created_at, updated_at)
     select 'msg-' || n, 'conv-' || lpad((n / ${perConversation} + 1)::text, 6, '0'), case when n % 2 = 0 then 'user' else 'assistant' end, 'final',
            ${text}, n % ${perConversation} + 1, timestamptz '2024-01-01Z' + n * interval '1 millisecond', timestamptz '2024-01-01Z' + n * interval '1 millisecond'
     from generate_series(0, ${messages - 1}) n`,
  ];
}
