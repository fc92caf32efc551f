import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, type ModelMessage } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockAnswer } from '../mock/upstream.js';
import { testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { signedInUser } from './helpers/users.js';

/**
 * The Vercel AI SDK's OpenAI provider in Responses mode, `store: true`: it sends earlier
 * answers as item_reference items, which only work if the server resolves them from its store.
 */

const mock = useMockUpstream();
const lastSent = () => (mock.requests.at(-1)!.body.messages as { role: string; content: unknown }[]).map((m) => [m.role, m.content]);

describe.each(dialects)('the AI SDK (Responses mode) on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;
  let provider: ReturnType<typeof createOpenAI>;
  const sent: unknown[] = [];

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
    const { key } = await signedInUser(db.store, 'ai-sdk');
    provider = createOpenAI({
      baseURL: 'http://localhost/v1',
      apiKey: key,
      fetch: async (url, init) => {
        if (typeof init?.body === 'string') sent.push(JSON.parse(init.body));
        return app.request(String(url), init as RequestInit);
      },
    });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  it('holds a multi-turn conversation with store: true, its earlier answers sent as item references', async () => {
    const model = provider.responses('mock-model');
    const options = { providerOptions: { openai: { store: true } } };
    const messages: ModelMessage[] = [{ role: 'user', content: 'first question' }];

    mock.defaults.text = 'first answer';
    const one = await generateText({ model, messages, ...options });
    expect(one.text).toBe('first answer');
    messages.push(...one.response.messages, { role: 'user', content: 'second question' });

    mock.defaults.text = 'second answer';
    const two = streamText({ model, messages, ...options });
    expect(await two.text).toBe('second answer');
    const input = (sent.at(-1) as { input: { type?: string }[] }).input;
    expect(input.some((i) => i.type === 'item_reference')).toBe(true);
    expect(lastSent()).toEqual([
      ['user', [{ type: 'text', text: 'first question' }]],
      ['assistant', 'first answer'],
      ['user', [{ type: 'text', text: 'second question' }]],
    ]);
    messages.push(...(await two.response).messages, { role: 'user', content: 'third question' });

    mock.defaults.text = undefined;
    const three = await generateText({ model, messages, ...options });
    expect(three.text).toBe(mockAnswer({}));
    expect(lastSent().map(([role, content]) => [role, typeof content === 'string' ? content : (content as { text: string }[])[0]!.text])).toEqual([
      ['user', 'first question'],
      ['assistant', 'first answer'],
      ['user', 'second question'],
      ['assistant', 'second answer'],
      ['user', 'third question'],
    ]);
  });
});
