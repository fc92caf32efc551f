// MODEL_ALLOWLIST: model names, each may use `*` for any run of characters (`gpt-4.1*`).
// Kept free of imports: the configuration checks DEFAULT_MODEL against it at start-up.

/** Longer names are never allowed: no model id comes close, and matching stays cheap. */
export const MAX_MODEL_NAME = 256;

/** Whether `model` matches one of the patterns; case matters, as it does to providers. */
export function allowsModel(patterns: readonly string[], model: string): boolean {
  if (model.length > MAX_MODEL_NAME) return false;
  return patterns.some((pattern) => globMatch(pattern, model));
}

/**
 * `*` matches any run of characters, everything else itself. No regular expression: a client's
 * model name must not be able to make an operator's pattern backtrack; this is O(pattern × name).
 */
function globMatch(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let resume = 0;
  while (t < text.length) {
    if (pattern[p] === '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.length && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (star >= 0) {
      // Let the last star swallow one more character and try again from there.
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}
