import { expect, it } from 'vitest';
import { mockAnswer } from '../mock/upstream.js';
import { answerEnds, describeInBrowser, fromPage, lastAnswer, openPage, screenshot, sendMessage, useBrowser, useUiServer } from './helpers/browser.js';
import { useMockUpstream } from './helpers/mock.js';
import { waitFor } from './helpers/streams.js';

/*
 * Issue 16 in a real browser, part one: chatting and the history. Sending and watching the answer
 * grow, the list, a reload in the middle of an answer, stop, rename, pin, delete, search. Part
 * two (ui-safety.test.ts): consent, "don't save", hostile markdown, accessibility, sign-in.
 */

const mock = useMockUpstream();
const b = useBrowser();
const s = useUiServer(mock);


describeInBrowser('the web page: chatting', () => {
  it('streams an answer as it arrives, then lists the conversation under its title', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    await screenshot(page, 'empty');
    mock.defaults.text = 'Here is **bold** text and code:\n\n```js\nconsole.log(1);\n```\n\nThe end.';
    mock.defaults.chunks = 12;
    mock.defaults.delay_ms = 60;
    await sendMessage(page, 'Show me some markdown');
    // Part of the answer is on screen while the rest is still coming.
    await page.waitForFunction(() => {
      const a = document.querySelector<HTMLElement>('article.role-assistant');
      return a?.dataset.status === 'streaming' && (a.querySelector('.message-body')?.textContent ?? '').length > 0;
    });
    const partial = await lastAnswer(page);
    expect(partial.text.length).toBeLessThan(mockAnswer(mock.defaults).length - 10);
    await screenshot(page, 'streaming');
    await answerEnds(page, 'final');
    const done = page.locator('article.role-assistant').last();
    expect(await done.locator('strong').textContent()).toBe('bold');
    expect(await done.locator('pre code').textContent()).toContain('console.log(1);');
    // Token counts, as the upstream reported them.
    await done.locator('.message-meta', { hasText: /^Done · \d+ tokens in, \d+ out$/ }).waitFor();
    await page.getByRole('link', { name: 'Show me some markdown' }).waitFor();
    await page.locator('#chat-title', { hasText: /^Show me some markdown$/ }).waitFor();
    expect(page.url()).toMatch(/#\/c\/[0-9a-f-]+$/);
    await screenshot(page, 'answered');
    expect(problems).toEqual([]);
  });

  it('picks an answer up after a reload in its middle, and it finishes on screen', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    Object.assign(mock.defaults, { chunks: 30, chunk_size: 4, delay_ms: 80 });
    const full = mockAnswer(mock.defaults);
    await sendMessage(page, 'A long answer, please');
    await page.waitForFunction(() => (document.querySelector('article.role-assistant .message-body')?.textContent ?? '').length >= 12);
    expect(page.url()).toMatch(/#\/c\//);
    await page.reload();
    // The same conversation, the answer still being written, then whole.
    await page.waitForFunction(() => document.querySelector<HTMLElement>('article.role-assistant')?.dataset.status === 'streaming');
    await screenshot(page, 'resumed');
    await answerEnds(page, 'final', full);
    expect(await page.locator('article.role-user').textContent()).toContain('A long answer, please');
    expect(problems).toEqual([]);
  });

  it('stops an answer: the server stops it and records it as stopped', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    Object.assign(mock.defaults, { chunks: 200, chunk_size: 4, delay_ms: 50 });
    await sendMessage(page, 'Go on and on');
    await page.waitForFunction(() => (document.querySelector('article.role-assistant .message-body')?.textContent ?? '').length >= 8);
    await page.getByRole('button', { name: 'Stop' }).click();
    await answerEnds(page, 'error');
    expect((await lastAnswer(page)).meta).toMatch(/stopped/);
    // What the server kept says so too.
    const id = /#\/c\/(.+)$/.exec(page.url())![1]!;
    const answer = await waitFor(async () => {
      const c = await fromPage(page, `/v1/conversations/${id}`);
      const last = c.messages.at(-1);
      return last.status === 'error' && last;
    });
    expect(answer.finish_reason).toBe('cancelled');
    await screenshot(page, 'stopped');
    expect(problems).toEqual([]);
  });
});
