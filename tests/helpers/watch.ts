/** One event of a watched answer's SSE stream. */
export interface WatchEvent {
  id: number | null;
  data: string;
  /** The chunk's JSON, when the data is one (not `[DONE]`). */
  json: any;
}

/** The events in an SSE text (comments skipped); a tail without its empty line is left out. */
export function sseEvents(text: string): WatchEvent[] {
  const events: WatchEvent[] = [];
  const blocks = text.split('\n\n');
  blocks.pop();
  for (const block of blocks) {
    let id: number | null = null;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('id: ')) id = Number(line.slice(4));
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (!data.length) continue;
    const joined = data.join('\n');
    let json: any = null;
    try {
      json = JSON.parse(joined);
    } catch {
      json = null;
    }
    events.push({ id, data: joined, json });
  }
  return events;
}

/** The content the events carry, in order. */
export const contentOf = (events: WatchEvent[]) => events.map((e) => e.json?.choices?.[0]?.delta?.content ?? '').join('');

/** Reads a stream's text as it comes, until `until` says it has enough (or the stream ends). */
export async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  until: (text: string) => boolean = () => false,
): Promise<{ text: string; done: boolean }> {
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    if (until(text)) return { text, done: false };
    const { done, value } = await reader.read();
    if (done) return { text: text + decoder.decode(), done: true };
    text += decoder.decode(value, { stream: true });
  }
}

/** A whole watch stream, read to its end. */
export async function readWatch(res: Response): Promise<{ text: string; events: WatchEvent[]; content: string }> {
  const { text } = await readUntil(res.body!.getReader());
  const events = sseEvents(text);
  return { text, events, content: contentOf(events) };
}
