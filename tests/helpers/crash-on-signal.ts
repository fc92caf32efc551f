/**
 * Test-only preload (`node --import`) for a server process: on SIGUSR2 it fails the way
 * CHAT_PROXY_TEST_CRASH says (`unhandled-rejection`, the default, or `uncaught-exception`), with
 * an error shaped like the one postgres.js raises for a killed connection. Production code
 * carries no hook for this; the test sends the signal once the server listens.
 */
process.on('SIGUSR2', () => {
  const err = Object.assign(new Error('terminating connection due to administrator command'), { name: 'PostgresError', code: '57P01' });
  if (process.env.CHAT_PROXY_TEST_CRASH === 'uncaught-exception') {
    setImmediate(() => {
      throw err;
    });
  } else {
    void Promise.reject(err);
  }
});
