import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe } from 'vitest';
import { createLogger } from '../../app/logger.js';
import { startServer, type RunningServer } from '../../app/server.js';
import type { MockUpstream } from '../../mock/upstream.js';
import { testConfig } from './app.js';

/*
 * The web page in a real browser: Debian's chromium driven by playwright-core (never a browser
 * it downloads). Without chromium the browser tests are skipped with a loud notice, except under
 * CI, where they fail. The server runs in this process on SQLite in memory: the page only calls
 * the HTTP API, which is tested on both dialects elsewhere.
 */

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const hasBrowser = existsSync(CHROMIUM);
if (!hasBrowser && !process.env.CI) {
  console.warn(`\n${'!'.repeat(78)}\n!! ${CHROMIUM} is missing: the web page's browser tests are SKIPPED.\n!! Install it (apt-get install chromium) or set CHROMIUM_PATH; under CI this fails.\n${'!'.repeat(78)}\n`);
}
/** `describe`, skipped when there is no browser (unless CI is set: then the tests fail). */
export const describeInBrowser = hasBrowser || process.env.CI ? describe : describe.skip;

const root = resolve(import.meta.dirname, '../..');
export const SCREENSHOTS = resolve(root, 'test-results/ui');

/** One chromium for the file; each test takes a fresh context (no cookies, no storage). */
export function useBrowser(): { readonly browser: Browser } {
  let browser: Browser | undefined;
  beforeAll(async () => {
    // Missing under CI: each test fails on its own (a failing hook would only mark them skipped).
    if (!hasBrowser) return;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(SCREENSHOTS, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
  });
  return {
    get browser() {
      if (!hasBrowser) throw new Error(`${CHROMIUM} is missing: install chromium (apt-get install chromium) to run the web page's tests`);
      if (!browser) throw new Error('the browser is used before beforeAll launched it');
      return browser;
    },
  };
}

/** A server on a real port with the mock upstream, started for the file (or per call). */
export function useUiServer(mock: MockUpstream, env: Record<string, string> = {}): { readonly server: RunningServer } {
  let server: RunningServer | undefined;
  beforeAll(async () => {
    server = await startUiServer(mock, env);
  });
  afterAll(async () => {
    await server?.close();
  });
  return {
    get server() {
      return server!;
    },
  };
}

export function startUiServer(mock: MockUpstream, env: Record<string, string> = {}): Promise<RunningServer> {
  const config = testConfig({ OPENAI_BASE_URL: mock.url, HOST: '127.0.0.1', PORT: '0', HISTORY_BATCH_FLUSH_MS: '20', SHUTDOWN_GRACE_MS: '0', ...env });
  return startServer(config, { logger: createLogger('silent') });
}

export interface OpenedPage {
  page: Page;
  /** Errors the page logged or threw, and Content-Security-Policy violations: none expected. */
  problems: string[];
  close(): Promise<void>;
}

const opened: OpenedPage[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((p) => p.close()));
});

/** The page in a fresh browser context, closed after the test. */
export async function openPage(browser: Browser, url: string, { path = '/', waitReady = true }: { path?: string; waitReady?: boolean } = {}): Promise<OpenedPage> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, acceptDownloads: true });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.type()} ${d.message()}`);
    void d.dismiss();
  });
  const result = { page, problems, close: () => context.close() };
  opened.push(result);
  await page.goto(url + path);
  if (waitReady) await ready(page);
  return result;
}

/** The page has talked to the server: the privacy state is known. */
export async function ready(page: Page) {
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
}

export async function screenshot(page: Page, name: string) {
  await page.screenshot({ path: resolve(SCREENSHOTS, `${name}.png`) });
}

/** Types a message and sends it with Enter, as a person would. */
export async function sendMessage(page: Page, text: string) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByLabel('Message', { exact: true }).press('Enter');
}

/** The last answer on screen: its text and status. */
export async function lastAnswer(page: Page) {
  const answer = page.locator('article.role-assistant').last();
  return { text: (await answer.locator('.message-body').textContent()) ?? '', status: await answer.getAttribute('data-status'), meta: (await answer.locator('.message-meta').textContent()) ?? '' };
}

/** Waits until the last answer's status is `status` (and, when given, its text is `text`). */
export async function answerEnds(page: Page, status: string, text?: string) {
  await page.waitForFunction(
    ([status, text]) => {
      const answers = document.querySelectorAll<HTMLElement>('article.role-assistant');
      const last = answers[answers.length - 1];
      return last?.dataset.status === status && (text === null || last.querySelector('.message-body')?.textContent?.trim() === text.trim());
    },
    [status, text ?? null] as const,
  );
}

/** A GET of the API as the page's browser: its session cookie, its API key (read from outside the page). */
export async function fromPage(page: Page, path: string): Promise<any> {
  const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  const key = await page.evaluate(() => localStorage.getItem('chat-proxy.api-key'));
  const res = await fetch(new URL(path, page.url()), { headers: { cookie, ...(key && { authorization: `Bearer ${key}` }) } });
  return res.json();
}

/** axe-core, from the installed package, run in the page. */
export async function axe(page: Page): Promise<{ id: string; impact: string; help: string; nodes: string[] }[]> {
  // Evaluated through the browser's debugging protocol: the page's policy refuses inline scripts.
  await page.evaluate(readFileSync(resolve(root, 'node_modules/axe-core/axe.min.js'), 'utf8'));
  return page.evaluate(async () => {
    const result = await (window as any).axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v: any) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n: any) => n.target.join(' ')) }));
  });
}
