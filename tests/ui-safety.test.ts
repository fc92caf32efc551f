import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningServer } from '../app/server.js';
import { answerEnds, axe, describeInBrowser, fromPage, openPage, screenshot, sendMessage, startUiServer, useBrowser, useUiServer } from './helpers/browser.js';
import { useMockUpstream } from './helpers/mock.js';
import { signedInUser } from './helpers/users.js';

/*
 * Issue 16 in a real browser, part two: what the page promises about privacy and safety. Consent
 * asked for and respected, "don't save" keeping a chat out of the database, hostile message
 * content staying inert, the automated accessibility check, signing in.
 */

const mock = useMockUpstream();
const b = useBrowser();
const s = useUiServer(mock);

/** Conversations in the server's database, whoever owns them. */
const stored = async (server: RunningServer) => (await server.store!.counts()).conversations;

describeInBrowser('the web page: privacy and safety', () => {
  let consentServer: RunningServer;
  beforeAll(async () => {
    consentServer = await startUiServer(mock, { CONSENT_REQUIRED: 'true', PRIVACY_NOTICE: 'We keep chats for you only after you say yes.' });
  });
  afterAll(async () => {
    await consentServer?.close();
  });

  it('with consent required, shows the notice and stores nothing until it is given', async () => {
    const { page, problems } = await openPage(b.browser, consentServer.url);
    const panel = page.getByRole('region', { name: 'Your conversations and your privacy' });
    await panel.waitFor();
    expect(await panel.textContent()).toContain('We keep chats for you only after you say yes.');
    expect(await panel.textContent()).toContain('Conversations unused for 30 days are deleted, unless pinned.');
    expect(await page.getByRole('status').first().textContent()).toBe('Nothing is being saved until you allow it in the privacy notice.');
    await screenshot(page, 'consent');

    mock.defaults.text = 'Not kept.';
    await sendMessage(page, 'Before saying yes');
    await answerEnds(page, 'final', 'Not kept.');
    expect(await stored(consentServer)).toBe(0);
    expect(page.url()).not.toMatch(/#\/c\//);

    await panel.getByRole('button', { name: 'Allow saving' }).click();
    await panel.waitFor({ state: 'hidden' });
    expect((await fromPage(page, '/v1/privacy')).consent).toBe('granted');
    expect(await page.locator('#save-status').isHidden()).toBe(true);
    mock.defaults.text = 'Kept.';
    await sendMessage(page, 'After saying yes');
    await answerEnds(page, 'final', 'Kept.');
    await page.getByRole('link', { name: 'Before saying yes' }).waitFor();
    expect(await stored(consentServer)).toBe(1);
    // A choice made is not asked again.
    await page.reload();
    await page.locator('#privacy-panel').waitFor({ state: 'hidden' });
    expect(problems).toEqual([]);
  });

  it('refusing keeps everything out of the database, and the page says so', async () => {
    const { page, problems } = await openPage(b.browser, consentServer.url);
    const before = await stored(consentServer);
    await page.getByRole('button', { name: "Don't save anything" }).click();
    await page.getByText('Nothing is being saved: you chose not to save anything').waitFor();
    mock.defaults.text = 'Gone with the page.';
    await sendMessage(page, 'Refused');
    await answerEnds(page, 'final', 'Gone with the page.');
    expect(await stored(consentServer)).toBe(before);
    expect(problems).toEqual([]);
  });

  it('"Don\'t save this chat" sends x-persist: off: the answer streams, no row is written', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    const before = await stored(s.server);
    await page.getByLabel("Don't save this chat").check();
    expect(await page.locator('#save-status').textContent()).toBe("This chat is not being saved: “Don't save this chat” is on.");
    mock.defaults.text = 'Off the record.';
    await sendMessage(page, 'Just between us');
    await answerEnds(page, 'final', 'Off the record.');
    await screenshot(page, 'not-saved');
    expect(await stored(s.server)).toBe(before);
    expect(mock.requests.at(-1)!.body.messages).toEqual([{ role: 'user', content: 'Just between us' }]);
    // The next turn carries the history, and is not saved either.
    mock.defaults.text = 'Still off.';
    await sendMessage(page, 'And this?');
    await answerEnds(page, 'final', 'Still off.');
    expect(mock.requests.at(-1)!.body.messages).toHaveLength(3);
    expect(await stored(s.server)).toBe(before);
    expect(await page.locator('#conversation-list li').count()).toBe(0);
    expect(problems).toEqual([]);
  });

  it('shows hostile message content as inert text: no script, handler or javascript: URL runs', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    mock.defaults.text = [
      '<script>window.pwned = "script"</script>',
      '<img src=x onerror="window.pwned = \'img\'">',
      '<svg onload="window.pwned = \'svg\'"></svg><iframe src="javascript:window.pwned=\'iframe\'"></iframe>',
      '[click me](javascript:window.pwned=1) and [data](data:text/html,hi) and [ok](https://example.com/)',
      '<a href="javascript:window.pwned=2">raw link</a> <b onmouseover="window.pwned=3">hover</b>',
      '![pixel](https://tracker.example/p.gif)',
      '<style>body{display:none}</style><form action="https://evil.example"><button>go</button></form>',
    ].join('\n\n');
    mock.defaults.chunks = 7;
    await sendMessage(page, '<img src=y onerror="window.pwned=\'user\'"> from me');
    await answerEnds(page, 'final');
    const body = page.locator('article.role-assistant .message-body').last();
    await body.getByText('click me').hover();
    await body.getByText('click me').click();
    await body.getByText('hover').hover();
    const findings = await page.evaluate(() => {
      const bodies = [...document.querySelectorAll('.message-body')];
      const all = bodies.flatMap((b) => [...b.querySelectorAll('*')]);
      return {
        pwned: (window as any).pwned ?? null,
        tags: [...new Set(all.map((e) => e.tagName.toLowerCase()))].sort(),
        handlers: all.flatMap((e) => [...e.attributes].filter((a) => /^on/i.test(a.name)).map((a) => a.name)),
        hrefs: all.filter((e) => e.hasAttribute('href')).map((e) => [e.getAttribute('href'), e.getAttribute('rel'), e.getAttribute('target')]),
        text: bodies.map((b) => b.textContent).join('\n'),
      };
    });
    expect(findings.pwned).toBeNull();
    expect(findings.handlers).toEqual([]);
    for (const tag of ['script', 'img', 'svg', 'iframe', 'style', 'form', 'button']) expect(findings.tags).not.toContain(tag);
    for (const [href, rel, target] of findings.hrefs) {
      expect(href).toMatch(/^https:\/\//);
      expect(rel).toBe('noopener noreferrer nofollow');
      expect(target).toBe('_blank');
    }
    // Raw HTML is shown as the text it is.
    expect(findings.text).toContain('<script>window.pwned = "script"</script>');
    expect(findings.text).toContain('<img src=y onerror="window.pwned=\'user\'"> from me');
    await screenshot(page, 'hostile');
    expect(problems).toEqual([]);
  });

  for (const colorScheme of ['light', 'dark'] as const) {
    it(`passes the automated accessibility check (axe-core), ${colorScheme}`, async () => {
      const context = await b.browser.newContext({ colorScheme, viewport: { width: 1200, height: 800 } });
      try {
        const page = await context.newPage();
        await page.goto(s.server.url);
        await page.waitForFunction(() => document.body.dataset.ready === 'true');
        const serious = (v: { impact: string }[]) => v.filter((x) => x.impact === 'serious' || x.impact === 'critical');
        // The first visit: the privacy notice, an empty chat.
        expect(serious(await axe(page))).toEqual([]);
        mock.defaults.text = 'An answer with `code`, a [link](https://example.com/) and\n\n```\na block\n```';
        await sendMessage(page, 'Check me');
        await answerEnds(page, 'final');
        await page.getByRole('link', { name: 'Check me' }).waitFor();
        expect(serious(await axe(page))).toEqual([]);
        await page.getByRole('button', { name: 'Rename' }).click();
        expect(serious(await axe(page))).toEqual([]);
        if (colorScheme === 'dark') await screenshot(page, 'dark');
      } finally {
        await context.close();
      }
    });
  }

  it('can be used with the keyboard alone', async () => {
    const { page, problems } = await openPage(b.browser, s.server.url);
    const focused = () => page.evaluate(() => ({ id: document.activeElement?.id, text: document.activeElement?.textContent?.trim() }));
    /** Presses `key` until the focus is on an element with this id or text (at most 60 times). */
    const tabTo = async (target: string, key = 'Tab') => {
      for (let i = 0; i < 60; i++) {
        const f = await focused();
        if (f.id === target || f.text === target) return;
        await page.keyboard.press(key);
      }
      throw new Error(`${key} never reached ${target}`);
    };
    // A new chat starts in the message box.
    expect((await focused()).id).toBe('composer-input');
    mock.defaults.text = 'Typed.';
    await page.keyboard.type('By keyboard');
    await page.keyboard.press('Enter');
    await answerEnds(page, 'final', 'Typed.');
    await page.getByRole('link', { name: 'By keyboard' }).waitFor();
    // Rename it: the button, the dialog, its field, Enter.
    await tabTo('rename', 'Shift+Tab');
    await page.keyboard.press('Enter');
    expect((await focused()).id).toBe('rename-input');
    await page.keyboard.press('Control+A');
    await page.keyboard.type('Keyboard only');
    await page.keyboard.press('Enter');
    await page.getByRole('link', { name: 'Keyboard only' }).waitFor();
    // New chat, then back to the conversation through its link.
    await tabTo('New chat', 'Shift+Tab');
    await page.keyboard.press('Enter');
    await page.locator('#chat-title', { hasText: /^New chat$/ }).waitFor();
    await tabTo('Keyboard only');
    await page.keyboard.press('Enter');
    await answerEnds(page, 'final', 'Typed.');
    expect(problems).toEqual([]);
  });
});

describeInBrowser('the web page: a server without persistence', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startUiServer(mock, { PERSIST_TRANSCRIPTS: 'false' });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('chats, says plainly that nothing is saved, and offers no history', async () => {
    const { page, problems } = await openPage(b.browser, server.url);
    expect(await page.locator('#save-status').textContent()).toBe('Nothing is saved: this server keeps no history. This chat lasts until you leave the page.');
    expect(await page.locator('#history-note').textContent()).toBe('This server keeps no history.');
    for (const name of ['Export all', 'Import…']) expect(await page.getByRole('button', { name }).isHidden()).toBe(true);
    expect(await page.getByRole('searchbox').isHidden()).toBe(true);
    mock.defaults.text = 'Gone tomorrow.';
    await sendMessage(page, 'Hello');
    await answerEnds(page, 'final', 'Gone tomorrow.');
    expect(problems).toEqual([]);
  });
});

describeInBrowser('the web page: signing in', () => {
  let server: RunningServer;
  let key: string;
  beforeAll(async () => {
    server = await startUiServer(mock, { ANONYMOUS_ACCESS: 'false' });
    ({ key } = await signedInUser(server.store!, 'Ada'));
  });
  afterAll(async () => {
    await server?.close();
  });

  it('asks for an API key when the server needs one, keeps it, and sends it as a bearer', async () => {
    const { page, problems } = await openPage(b.browser, server.url);
    const dialog = page.getByRole('dialog', { name: 'Sign in' });
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain('This server needs you to sign in');
    await screenshot(page, 'sign-in');
    await dialog.getByLabel('API key').fill(key);
    await dialog.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('button', { name: 'Account: Ada' }).waitFor();
    mock.defaults.text = 'Hello, Ada.';
    await sendMessage(page, 'Who am I?');
    await answerEnds(page, 'final', 'Hello, Ada.');
    await page.getByRole('link', { name: 'Who am I?' }).waitFor();
    expect(await page.evaluate(() => localStorage.getItem('chat-proxy.api-key'))).toBe(key);
    // The 401s before signing in were the page asking, not faults.
    expect(problems.filter((p) => !/status of 401/.test(p))).toEqual([]);
  });

  it('takes a token the host page passes in the address (#token=), and takes it out of the address', async () => {
    const { page, problems } = await openPage(b.browser, server.url, { path: `/#token=${encodeURIComponent(key)}` });
    await page.getByRole('button', { name: 'Account: Ada' }).waitFor();
    expect(page.url()).not.toContain(key);
    expect(await page.evaluate(() => localStorage.getItem('chat-proxy.api-key'))).toBeNull();
    expect(problems).toEqual([]);
  });
});
