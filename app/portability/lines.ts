/** A line of an uploaded file, numbered from 1: its text, or why it could not be read. */
export type Line =
  | { number: number; text: string }
  /** Longer than allowed: not kept, only its first bytes (to tell what kind of line it was). */
  | { number: number; tooLong: true; bytes: number; head: string }
  | { number: number; notUtf8: true };

/** The body passed its byte limit; `bytes` is the limit. */
export class BodyTooLargeError extends Error {
  override name = 'BodyTooLargeError';
  constructor(readonly limit: number) {
    super(`The body is larger than ${limit} bytes.`);
  }
}

const NEWLINE = 0x0a;
/** What is kept of an overlong line: enough to read its `"type"`. */
const HEAD_BYTES = 256;

/**
 * Splits a byte stream into lines as it arrives, never holding more than one line of at most
 * `maxLineBytes` (plus the chunk being split): a longer line is counted and skipped, not kept.
 * Counts every byte and throws BodyTooLargeError past `maxBytes`. Lines end with \n or \r\n; a
 * last line without one counts; a UTF-8 byte order mark at the start is dropped. The stream is
 * read only as the consumer asks for lines, so a slow consumer slows the upload.
 */
export async function* readLines(body: ReadableStream<Uint8Array>, { maxLineBytes, maxBytes }: { maxLineBytes: number; maxBytes: number }): AsyncGenerator<Line> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let pieces: Uint8Array[] = [];
  let size = 0;
  let head: Uint8Array | null = null;
  let total = 0;
  let number = 0;
  let any = false;

  const take = (part: Uint8Array) => {
    any = true;
    if (head === null && size + part.length > maxLineBytes) head = concat([...pieces, part.subarray(0, HEAD_BYTES)], HEAD_BYTES);
    if (head !== null) pieces = [];
    else if (part.length) pieces.push(part);
    size += part.length;
  };
  const finish = (): Line => {
    number += 1;
    let line: Line;
    if (head !== null) {
      line = { number, tooLong: true, bytes: size, head: new TextDecoder().decode(head) };
    } else {
      let bytes = concat(pieces, size);
      if (bytes.at(-1) === 0x0d) bytes = bytes.subarray(0, -1);
      try {
        // fatal: a byte sequence that is not UTF-8 makes the line unreadable, not quietly different.
        line = { number, text: decoder.decode(bytes) };
      } catch {
        line = { number, notUtf8: true };
      }
    }
    pieces = [];
    size = 0;
    head = null;
    any = false;
    return line;
  };

  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) throw new BodyTooLargeError(maxBytes);
      for (let start = 0; start < value.length; ) {
        const end = value.indexOf(NEWLINE, start);
        take(value.subarray(start, end === -1 ? value.length : end));
        if (end === -1) break;
        yield finish();
        start = end + 1;
      }
    }
    if (any) yield finish();
  } finally {
    // The consumer stopped early (or the body was too large): stop reading the upload.
    reader.cancel().catch(() => {});
  }
}

/** Reads a whole body, refusing past `maxBytes` (BodyTooLargeError) before holding more. */
export async function readAll(body: ReadableStream<Uint8Array>, maxBytes: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) throw new BodyTooLargeError(maxBytes);
      parts.push(value);
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return concat(parts, total);
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1 && parts[0]!.length === size) return parts[0]!;
  const out = new Uint8Array(Math.min(size, parts.reduce((n, p) => n + p.length, 0)));
  let offset = 0;
  for (const p of parts) {
    const part = p.subarray(0, out.length - offset);
    out.set(part, offset);
    offset += part.length;
    if (offset >= out.length) break;
  }
  return out;
}
