import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startMockUpstream, type MockUpstream } from '../../mock/upstream.js';

/**
 * One mock upstream per test file: started before its tests, reset (recorded requests and
 * defaults) before each, closed after. The returned handle forwards to it once it is up.
 */
export function useMockUpstream(): MockUpstream {
  let mock: MockUpstream | undefined;
  beforeAll(async () => {
    mock = await startMockUpstream();
  });
  afterAll(async () => {
    await mock?.close();
  });
  beforeEach(() => mock?.reset());
  return new Proxy({} as MockUpstream, {
    get(_, key) {
      if (!mock) throw new Error('the mock upstream is used before beforeAll started it');
      const value = Reflect.get(mock, key);
      return typeof value === 'function' ? value.bind(mock) : value;
    },
  });
}
