/**
 * Progress on stderr for shell commands, only for work that takes a while: nothing for the
 * first `afterMs`, then a line at most every `everyMs`, and a last one at the end if any was
 * written. Lines go to stderr so stdout stays the command's output (JSON, or an export).
 */
export function progress(label: string, { afterMs = 2_000, everyMs = 2_000, write = (line: string) => process.stderr.write(line) } = {}) {
  const started = Date.now();
  let last = 0;
  let shown = false;
  const seconds = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  return {
    /** `text()` is only called when a line is due. */
    tick(text: () => string) {
      const now = Date.now();
      if (now - started < afterMs || now - last < everyMs) return;
      last = now;
      shown = true;
      write(`${label}: ${text()} (${seconds()})\n`);
    },
    done(text: () => string) {
      if (shown) write(`${label}: ${text()}, done in ${seconds()}\n`);
    },
  };
}
