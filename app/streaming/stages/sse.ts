/**
 * Server-sent events, read the way the spec says (https://html.spec.whatwg.org/#event-stream-interpretation):
 * lines end with CR LF, LF or CR, and an empty line ends an event. The framer finds event ends
 * on bytes (CR and LF never occur inside a UTF-8 character); `readEvents` reads the fields of
 * whole events. The relay and the recorder both go through here, so they always agree on where
 * an event ends.
 */

const LF = 0x0a;
const CR = 0x0d;

/**
 * Whether an empty line ends at byte `i` (a CR or LF): the line terminator ending there
 * (CR LF, LF or CR) directly follows another one. A CR that may be the first half of a CR LF
 * still to come counts as a terminator: the LF that follows then reads as one more empty line,
 * which dispatches nothing.
 */
function blankLineEndsAt(b: Uint8Array, i: number): boolean {
  const c = b[i];
  let start: number;
  if (c === LF) start = i > 0 && b[i - 1] === CR ? i - 1 : i;
  else if (c === CR && b[i + 1] !== LF) start = i;
  else return false;
  const before = b[start - 1];
  return start > 0 && (before === LF || before === CR);
}

/** Where the last complete event in `b` ends (0 when none does); only bytes from `from` on are looked at as ends. */
export function lastEventEnd(b: Uint8Array, from = 0): number {
  for (let i = b.length - 1; i >= Math.max(1, from); i--) {
    if ((b[i] === LF || b[i] === CR) && blankLineEndsAt(b, i)) return i + 1;
  }
  return 0;
}

/** The end of every complete event in `b`, in order (a tail without its empty line is not one). */
export function eventEnds(b: Uint8Array): number[] {
  const ends: number[] = [];
  for (let i = 1; i < b.length; i++) {
    if ((b[i] === LF || b[i] === CR) && blankLineEndsAt(b, i)) ends.push(i + 1);
  }
  return ends;
}

/** Whether `b` ends exactly at the end of an event (the usual case for a chunk from an upstream). */
export function endsEvent(b: Uint8Array): boolean {
  return b.length >= 2 && blankLineEndsAt(b, b.length - 1);
}

export interface SseEvent {
  /** The `event:` field, '' when absent (a `message`). */
  event: string;
  /** The `data:` lines, joined by LF. */
  data: string;
}

const LINE = /\r\n|\r|\n/;

/**
 * Reads the events in `text`, which holds whole events (what the framer passes on). Comments,
 * `id` and `retry` are not needed here and are skipped; an event without data is not dispatched,
 * as in a browser. A tail without its empty line (the stream ended there) is read as an event
 * when `complete`, else dropped. `onUnknownField` hears of each line with a field SSE does not
 * have (the spec ignores them; they usually mean the upstream sent something that is not SSE).
 */
export function readEvents(
  text: string,
  onEvent: (event: SseEvent) => void,
  { complete = true, onUnknownField }: { complete?: boolean; onUnknownField?: () => void } = {},
): void {
  let data: string[] = [];
  let event = '';
  const lines = text.split(LINE);
  // split leaves '' after the last terminator: a text ending in an empty line ends in ['', ''].
  const last = lines.length - 1;
  for (let i = 0; i <= last; i++) {
    const line = lines[i]!;
    if (line === '') {
      if (i === last) break; // the terminator of the line before, not an empty line of its own
      if (data.length) onEvent({ event, data: data.join('\n') });
      data = [];
      event = '';
      continue;
    }
    if (line.charCodeAt(0) === 0x3a) continue; // ':' comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    // Ignored, as the spec says, but a line that is no SSE at all is worth counting.
    else if (field !== 'id' && field !== 'retry') onUnknownField?.();
  }
  if (complete && data.length) onEvent({ event, data: data.join('\n') });
}
