import { describe, expect, it } from 'vitest';
import { buildUpstreamRequest } from '../app/chat/request.js';
import { ApiError } from '../app/errors.js';
import { testConfig } from './helpers/app.js';

const messages = [{ role: 'user' as const, content: 'hi' }];

describe('buildUpstreamRequest', () => {
  const config = testConfig({ DEFAULT_MODEL: 'default-model', MAX_OUTPUT_TOKENS: '1000' });
  it.each<[string, Record<string, unknown>, boolean, Record<string, unknown>, boolean]>([
    // [case, request, recording, what the upstream gets (subset), strip usage?]
    ['fills the model and the token cap', { messages }, false, { model: 'default-model', max_tokens: 1000 }, false],
    ['keeps the client model and a limit within the cap', { messages, model: 'm', max_tokens: 10 }, false, { model: 'm', max_tokens: 10 }, false],
    ['drops conversation_id', { messages, conversation_id: 'c1' }, true, { conversation_id: undefined }, false],
    ['passes unknown fields through', { messages, temperature: 0.2, tools: [{ type: 'function' }] }, false, { temperature: 0.2, tools: [{ type: 'function' }] }, false],
    ['asks for usage on a recorded stream, to strip it again', { messages, stream: true }, true, { stream_options: { include_usage: true } }, true],
    ['keeps other stream_options when adding usage', { messages, stream: true, stream_options: { foo: 1 } }, true, { stream_options: { foo: 1, include_usage: true } }, true],
    ['leaves usage the client asked for', { messages, stream: true, stream_options: { include_usage: true } }, true, { stream_options: { include_usage: true } }, false],
    ['asks nothing when not recording', { messages, stream: true }, false, { stream_options: undefined }, false],
    ['asks nothing for a plain request', { messages }, true, { stream_options: undefined }, false],
  ])('%s', (_, request, recording, upstream, stripUsage) => {
    const built = buildUpstreamRequest(request as never, config, { recording });
    const body = JSON.parse(built.body);
    for (const [k, v] of Object.entries(upstream)) expect(body[k], k).toEqual(v);
    expect(built.stripUsage).toBe(stripUsage);
    expect(built.stream).toBe(request.stream === true);
  });

  it('refuses what is over the operator limits, naming the field', () => {
    for (const [request, param] of [
      [{ messages, max_tokens: 1001 }, 'max_tokens'],
      [{ messages, n: 2 }, 'n'],
    ] as const) {
      let error: unknown;
      try {
        buildUpstreamRequest(request as never, config, { recording: false });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ApiError);
      expect((error as ApiError).param).toBe(param);
    }
  });
});
