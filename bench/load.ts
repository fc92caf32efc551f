// Load generator: `concurrency` workers on one keep-alive agent, each sending requests back to back.
import http from 'node:http';
import { performance } from 'node:perf_hooks';

export interface LoadResult {
  ok: number;
  failed: number;
  /** first few distinct failure descriptions */
  failureSamples: string[];
  /** time to first body byte of each successful request, ms */
  ttfbMs: number[];
  elapsedMs: number;
}

const STREAM_BODY = Buffer.from(JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: 'hello' }], stream: true }));
const JSON_BODY = Buffer.from(JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: 'hello' }], stream: false }));
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_SAMPLES = 5;

type Outcome = { ok: true; ttfb: number } | { ok: false; why: string };

function once(url: URL, agent: http.Agent, stream: boolean, sessionId: string): Promise<Outcome> {
  const body = stream ? STREAM_BODY : JSON_BODY;
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Outcome) => {
      if (!settled) {
        settled = true;
        resolve(o);
      }
    };
    const t0 = performance.now();
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': body.length,
          accept: stream ? 'text/event-stream' : 'application/json',
          'x-session-id': sessionId,
        },
      },
      (res) => {
        let ttfb: number | undefined;
        // Streams: only the tail matters ([DONE] check), so keep a few bytes, not the whole body.
        let tail = Buffer.alloc(0);
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          ttfb ??= performance.now() - t0;
          if (stream && res.statusCode === 200) tail = Buffer.concat([tail, c]).subarray(-64);
          else parts.push(c);
        });
        res.on('error', (err) => done({ ok: false, why: `response error: ${err.message}` }));
        res.on('aborted', () => done({ ok: false, why: 'response aborted by server' }));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = stream && status === 200 ? tail.toString() : Buffer.concat(parts).toString();
          if (status !== 200) return done({ ok: false, why: `HTTP ${status}: ${text.slice(0, 300)}` });
          if (ttfb === undefined) return done({ ok: false, why: 'HTTP 200 with an empty body' });
          if (stream) {
            if (!text.trimEnd().endsWith('data: [DONE]')) {
              return done({ ok: false, why: `stream did not end with data: [DONE]; tail: ${JSON.stringify(text.slice(-64))}` });
            }
          } else {
            try {
              if (!JSON.parse(text)?.choices?.[0]?.message) throw new Error('no choices[0].message');
            } catch (err) {
              return done({ ok: false, why: `bad JSON answer (${(err as Error).message}): ${text.slice(0, 200)}` });
            }
          }
          done({ ok: true, ttfb });
        });
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no activity for ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', (err) => done({ ok: false, why: `request error: ${err.message}` }));
    req.end(body);
  });
}

export class LoadClient {
  private readonly agent: http.Agent;
  private readonly url: URL;

  constructor(
    endpoint: string,
    private readonly concurrency: number,
    /** [A-Za-z0-9_-]; one session id per worker so per-session limits never bind */
    private readonly sessionPrefix: string,
  ) {
    this.url = new URL(endpoint);
    if (this.url.hostname !== '127.0.0.1') throw new Error(`refusing non-loopback endpoint ${endpoint}`);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  }

  /** `total` requests over min(concurrency, total) workers. */
  async run(total: number, stream: boolean, workers = this.concurrency): Promise<LoadResult> {
    const result: LoadResult = { ok: 0, failed: 0, failureSamples: [], ttfbMs: [], elapsedMs: 0 };
    let issued = 0;
    const worker = async (w: number) => {
      while (issued < total) {
        issued++;
        const o = await once(this.url, this.agent, stream, `${this.sessionPrefix}-w${w}`);
        if (o.ok) {
          result.ok++;
          result.ttfbMs.push(o.ttfb);
        } else {
          result.failed++;
          if (result.failureSamples.length < MAX_SAMPLES && !result.failureSamples.includes(o.why)) result.failureSamples.push(o.why);
        }
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: Math.min(workers, total) }, (_, w) => worker(w)));
    result.elapsedMs = performance.now() - t0;
    return result;
  }

  close(): void {
    this.agent.destroy();
  }
}
