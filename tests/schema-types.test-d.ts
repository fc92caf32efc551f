import type { InferInsertModel, InferSelectModel } from 'drizzle-orm';
import { describe, expectTypeOf, it } from 'vitest';
import * as pg from '../db/pg/schema.js';
import * as sqlite from '../db/sqlite/schema.js';
import type { ChatCompletionRecord, Conversation, Message } from '../db/store.js';

// Both dialects must mean the same thing: the row types they infer are identical, and identical
// to the domain types the rest of the app uses.
describe('schema row types', () => {
  it('sessions are the same in both dialects', () => {
    expectTypeOf<InferSelectModel<typeof sqlite.sessions>>().toEqualTypeOf<InferSelectModel<typeof pg.sessions>>();
    expectTypeOf<InferInsertModel<typeof sqlite.sessions>>().toEqualTypeOf<InferInsertModel<typeof pg.sessions>>();
  });

  it('conversations are the same in both dialects and match the domain type', () => {
    expectTypeOf<InferSelectModel<typeof sqlite.conversations>>().toEqualTypeOf<InferSelectModel<typeof pg.conversations>>();
    expectTypeOf<InferInsertModel<typeof sqlite.conversations>>().toEqualTypeOf<InferInsertModel<typeof pg.conversations>>();
    expectTypeOf<InferSelectModel<typeof pg.conversations>>().toEqualTypeOf<Conversation>();
  });

  it('messages are the same in both dialects and match the domain type', () => {
    expectTypeOf<InferSelectModel<typeof sqlite.messages>>().toEqualTypeOf<InferSelectModel<typeof pg.messages>>();
    expectTypeOf<InferInsertModel<typeof sqlite.messages>>().toEqualTypeOf<InferInsertModel<typeof pg.messages>>();
    expectTypeOf<InferSelectModel<typeof pg.messages>>().toEqualTypeOf<Message>();
  });

  it('chat completion records are the same in both dialects and match the domain type', () => {
    expectTypeOf<InferSelectModel<typeof sqlite.chatCompletions>>().toEqualTypeOf<InferSelectModel<typeof pg.chatCompletions>>();
    expectTypeOf<InferInsertModel<typeof sqlite.chatCompletions>>().toEqualTypeOf<InferInsertModel<typeof pg.chatCompletions>>();
    expectTypeOf<InferSelectModel<typeof pg.chatCompletions>>().toEqualTypeOf<ChatCompletionRecord>();
  });
});
