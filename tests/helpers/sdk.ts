import OpenAI from 'openai';
import type { TestApp } from './app.js';

/**
 * The official openai SDK, pointed at the app through `app.request` (no socket), as any client
 * would use it: `apiKey` is the caller's credential (a placeholder for an anonymous session,
 * which then goes in `headers`). `requests` logs what the SDK sent, method, path and query, so
 * tests can read how its paginators ask for the next page.
 */
export function sdk(app: Pick<TestApp, 'request'>, { apiKey = 'sk-placeholder', headers = {} }: { apiKey?: string; headers?: Record<string, string> } = {}) {
  const requests: { method: string; path: string; query: URLSearchParams }[] = [];
  const client = new OpenAI({
    baseURL: 'http://localhost/v1',
    apiKey,
    defaultHeaders: headers,
    maxRetries: 0,
    fetch: async (url, init) => {
      const u = new URL(String(url));
      requests.push({ method: init?.method ?? 'GET', path: u.pathname, query: u.searchParams });
      return app.request(u.toString(), init as RequestInit);
    },
  });
  return { client, requests };
}
