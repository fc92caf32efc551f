import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
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
const dir = mkdtempSync(join(tmpdir(), 'chat-ui-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));


describeInBrowser('the web page: chatting', () => {
  it('streams an answer as it arrives, then lists the conversation under its title', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    await screenshot(page, 'first-visit');
    await page.getByRole('button', { name: 'Allow saving' }).click();
    await page.locator('#privacy-panel').waitFor({ state: 'hidden' });
    mock.defaults.text =
      'Here is **bold** text, a [link](https://example.com/) and code:\n\n```js\nconst answer = await fetch(url);\nconsole.log(1);\n```\n\n| column | value |\n|---|---|\n| a | 1 |\n\nThe end.';
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
    expect(await done.locator('table td').first().textContent()).toBe('a');
    // Token counts, as the upstream reported them.
    await done.locator('.message-meta', { hasText: /^Done · \d+ tokens in, \d+ out Regenerate$/ }).waitFor();
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

    // Stop before the server has even said where the answer is kept: it is stopped once it does.
    await page.getByRole('link', { name: 'New chat' }).click();
    Object.assign(mock.defaults, { first_byte_delay_ms: 400 });
    await sendMessage(page, 'Stop me at once');
    await page.getByRole('button', { name: 'Stop' }).click();
    await answerEnds(page, 'error');
    await page.locator('article.role-assistant .message-meta', { hasText: 'stopped' }).waitFor();
    const early = /#\/c\/(.+)$/.exec(page.url())![1]!;
    expect((await fromPage(page, `/v1/conversations/${early}`)).messages.at(-1)).toMatchObject({ status: 'error', finish_reason: 'cancelled' });
    await screenshot(page, 'stopped');
    expect(problems).toEqual([]);
  });

  it('renames, pins and deletes a conversation', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    mock.defaults.text = 'Noted.';
    await sendMessage(page, 'First topic');
    await answerEnds(page, 'final', 'Noted.');
    await page.getByRole('link', { name: 'First topic' }).waitFor();
    const id = /#\/c\/(.+)$/.exec(page.url())![1]!;

    await page.getByRole('button', { name: 'Rename' }).click();
    await page.getByLabel('Title').fill('Renamed topic');
    await page.getByRole('dialog').getByRole('button', { name: 'Save' }).click();
    await page.getByRole('link', { name: 'Renamed topic' }).waitFor();
    expect(await page.locator('#chat-title').textContent()).toBe('Renamed topic');
    expect((await fromPage(page, `/v1/conversations/${id}`)).title).toBe('Renamed topic');

    await page.getByRole('button', { name: 'Pin' }).click();
    await page.locator('#pinned-list').getByRole('link', { name: 'Renamed topic' }).waitFor();
    expect(await page.getByRole('button', { name: 'Unpin' }).getAttribute('aria-pressed')).toBe('true');
    expect((await fromPage(page, `/v1/conversations/${id}`)).metadata).toEqual({ pinned: true });
    await screenshot(page, 'pinned');

    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('link', { name: 'Renamed topic' }).waitFor({ state: 'detached' });
    expect(await page.locator('#chat-title').textContent()).toBe('New chat');
    expect((await fromPage(page, `/v1/conversations/${id}`)).error.code).toBe('not_found');
    expect(problems).toEqual([]);
  });

  it('searches the history, and pages the list as the API pages it', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    mock.defaults.text = 'A zebra crossing has stripes.';
    await sendMessage(page, 'Road markings');
    await answerEnds(page, 'final');
    // 31 more conversations, made through the API: the list shows 30 at a time, newest first.
    await page.evaluate(async () => {
      for (let i = 0; i < 31; i++) await fetch('/v1/conversations', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title: `Filler ${i}` }) });
    });
    await page.goto(`${s.server.url}/#/`);
    await page.reload();
    await page.getByRole('link', { name: 'Filler 30' }).waitFor();
    expect(await page.locator('#conversation-list li').count()).toBe(30);
    expect(await page.locator('#conversation-list li').first().textContent()).toBe('Filler 30');
    await page.getByRole('button', { name: 'Load more' }).click();
    await page.getByRole('link', { name: 'Road markings' }).waitFor();
    expect(await page.locator('#conversation-list li').count()).toBe(32);
    expect(await page.getByRole('button', { name: 'Load more' }).isHidden()).toBe(true);

    await page.getByRole('searchbox', { name: 'Search conversations' }).fill('zebra');
    const result = page.locator('#search-list a').first();
    await result.waitFor();
    expect(await result.locator('strong').textContent()).toBe('Road markings');
    expect(await result.locator('mark').textContent()).toBe('zebra');
    await screenshot(page, 'search');
    await result.click();
    await answerEnds(page, 'final', 'A zebra crossing has stripes.');
    expect(problems).toEqual([]);
  });

  it('exports a conversation and the whole history, and imports the file in another browser', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    mock.defaults.text = 'Kept for later.';
    await sendMessage(page, 'Something to export');
    await answerEnds(page, 'final');
    await page.getByRole('link', { name: 'Something to export' }).waitFor();

    await page.getByRole('button', { name: 'Export', exact: true }).click();
    const [markdown] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Markdown (to read)' }).click()]);
    expect(readFileSync((await markdown.path())!, 'utf8')).toContain('Kept for later.');

    const [all] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export all' }).click()]);
    expect(all.suggestedFilename()).toMatch(/\.jsonl$/);
    const file = join(dir, all.suggestedFilename());
    await all.saveAs(file);
    expect(readFileSync(file, 'utf8').split('\n')[0]).toContain('"format":"chat-proxy"');

    // Another browser (another session) brings the history in.
    const other = await openPage(b.browser, s.server.url);
    await other.page.locator('#import-file').setInputFiles(file);
    await other.page.getByText('Imported 1 conversation, 0 already here.').waitFor();
    await other.page.getByRole('link', { name: 'Something to export' }).click();
    await answerEnds(other.page, 'final', 'Kept for later.');
    expect([...problems, ...other.problems]).toEqual([]);
  });

  it('regenerates the last answer: a new one beside the old, shown from then on', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    mock.defaults.text = 'First try.';
    await sendMessage(page, 'Say something');
    await answerEnds(page, 'final', 'First try.');
    mock.defaults.text = 'Second try.';
    await page.getByRole('button', { name: 'Regenerate' }).click();
    await answerEnds(page, 'final', 'Second try.');
    await page.getByRole('button', { name: 'Regenerate' }).waitFor();
    expect(await page.locator('article').count()).toBe(2);
    const id = /#\/c\/(.+)$/.exec(page.url())![1]!;
    const tree = await fromPage(page, `/v1/conversations/${id}?view=tree`);
    expect(tree.messages.map((m: any) => [m.role, m.content])).toEqual([
      ['user', 'Say something'],
      ['assistant', 'First try.'],
      ['assistant', 'Second try.'],
    ]);
    await page.reload();
    await answerEnds(page, 'final', 'Second try.');
    expect(problems).toEqual([]);
  });

  it('shows an answer that failed, with its reason', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    Object.assign(mock.defaults, { fault: 'status', status: 429, error_body: { error: { message: 'Slow down, please', type: 'rate_limit_error' } } });
    await sendMessage(page, 'Too fast');
    await answerEnds(page, 'error');
    await page.locator('article.role-assistant .message-meta', { hasText: 'Slow down, please' }).waitFor();
    // The exchange was recorded all the same: the page is in that conversation now.
    await page.getByRole('link', { name: 'Too fast' }).waitFor();
    expect(page.url()).toMatch(/#\/c\//);
    // Cut mid-answer: the text so far stays, marked as failed.
    Object.assign(mock.defaults, { fault: 'drop', drop_after: 3, chunks: 8, status: undefined, error_body: undefined });
    await sendMessage(page, 'Again');
    await answerEnds(page, 'error');
    await page.locator('article.role-assistant .message-meta', { hasText: 'the model provider failed' }).last().waitFor();
    expect((await page.locator('article.role-assistant .message-body').last().textContent())!.length).toBeGreaterThan(0);
    expect(await page.locator('#conversation-list li').count()).toBe(1);
    await screenshot(page, 'failed');
    // The browser logs the 429 as a failed load; nothing else went wrong.
    expect(problems.filter((p) => !/status of 429/.test(p))).toEqual([]);
  });

  it('offers the models of GET /v1/models, and asks for the one picked', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    const picker = page.getByLabel('Model');
    await picker.locator('option[value="mock-model"]').waitFor({ state: 'attached' });
    await picker.selectOption('mock-model');
    mock.defaults.text = 'Picked.';
    await sendMessage(page, 'Which model?');
    await answerEnds(page, 'final', 'Picked.');
    expect(mock.requests.filter((r) => r.path === '/v1/chat/completions').at(-1)!.body.model).toBe('mock-model');
    expect(problems).toEqual([]);
  });
});
