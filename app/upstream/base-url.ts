// OPENAI_BASE_URL as the rest of the server needs it: the endpoint to call, a form safe to log,
// and whether it looks like an API root at all.

const SECRET_PARAM = /^(key|api[_-]?key|token|access[_-]?token|secret|sig|signature|password)$/i;

/** The URL with userinfo and key-like query parameters replaced by `***`, for logs and messages. */
export function maskUrl(raw: string): string {
  if (!URL.canParse(raw)) return raw.replace(/\/\/[^/@\s]*@/, '//***@');
  const url = new URL(raw);
  if (url.username) url.username = '***';
  if (url.password) url.password = '***';
  for (const name of [...url.searchParams.keys()]) if (SECRET_PARAM.test(name)) url.searchParams.set(name, '***');
  return url.toString();
}

const endpoints = new Map<string, string>();

/** `<base>/chat/completions`, keeping a query string (`?api-version=…`) where it belongs. */
export function chatCompletionsUrl(baseUrl: string): string {
  let url = endpoints.get(baseUrl);
  if (url === undefined) {
    url = endpointUrl(baseUrl, 'chat/completions');
    // One base URL per process in practice; the bound keeps a misuse from growing it.
    if (endpoints.size > 16) endpoints.clear();
    endpoints.set(baseUrl, url);
  }
  return url;
}

/** `<base>/<path>`, keeping a query string where it belongs. */
export function endpointUrl(baseUrl: string, path: string): string {
  const u = new URL(baseUrl);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/${path}`;
  return u.toString();
}

/**
 * Whether the path carries an API version segment (`/v1`, `/v1beta`, `/api/v1`,
 * `/v1beta/openai`…). OpenAI-compatible servers serve `…/v1/chat/completions`; a base URL
 * without one (`https://api.openai.com`, `http://localhost:11434`) usually answers 404.
 */
export function hasVersionSegment(baseUrl: string): boolean {
  return new URL(baseUrl).pathname.split('/').some((segment) => /^v\d+[a-z0-9]*$/i.test(segment));
}
