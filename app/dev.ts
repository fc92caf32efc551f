import { startMockUpstream } from '../mock/upstream.js';
import { buildUi, uiBuildIsCurrent } from '../scripts/build-ui.js';
import { boot } from './boot.js';

// `npm run dev`: persistence on (SQLite by default) and, when no real upstream is configured,
// the bundled mock upstream, so the whole flow works on a fresh machine with no keys.
// Logs are human-readable here (LOG_FORMAT=json gives npm start's JSON lines).
const env: Record<string, string | undefined> = { PERSIST_TRANSCRIPTS: 'true', LOG_FORMAT: 'pretty', ...process.env };
// The web page from ui/ as it is now (esbuild, well under a second), so an edit shows on restart.
if (!/^(false|0|no|off)$/.test(env.UI_ENABLED ?? '') && !uiBuildIsCurrent()) {
  const built = await buildUi();
  console.log(`Web page built in ${Math.round(built.ms)} ms.`);
}
let mock: Awaited<ReturnType<typeof startMockUpstream>> | undefined;
if (!env.OPENAI_BASE_URL) {
  mock = await startMockUpstream({ port: Number(env.MOCK_PORT ?? 0), record: false });
  env.OPENAI_BASE_URL = mock.url;
  env.OPENAI_API_KEY ??= 'mock-key';
  env.DEFAULT_MODEL ??= 'mock-model';
  console.log(`No OPENAI_BASE_URL set: using the bundled MOCK upstream at ${mock.url} (answers are generated text, not a model).`);
}

const { config, server } = await boot(env, { afterStop: async () => mock?.close() });
// Named as the README and the default ALLOWED_ORIGIN name it: localhost (a cookie set for
// 127.0.0.1 is not sent to localhost, and the reverse).
const shownUrl = ['0.0.0.0', '::', '127.0.0.1'].includes(config.host) ? server.url.replace('//127.0.0.1:', '//localhost:') : server.url;
console.log(`Chat proxy ready at ${shownUrl} (persistence: ${config.persist ? config.db.dialect : 'off'})`);
