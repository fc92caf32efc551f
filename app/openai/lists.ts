import { z } from 'zod';
import { intParam } from '../validate.js';

/*
 * OpenAI's list conventions, shared by its stored completions and conversation items:
 * `{object: "list", data, first_id, last_id, has_more}`, paged with `after` (the id of the last
 * item seen, as the SDKs' cursor pages send it), `limit` and `order`.
 */

export const orderParam = (fallback: 'asc' | 'desc') => z.enum(['asc', 'desc'], { error: "must be 'asc' or 'desc'" }).default(fallback);
export const limitParam = intParam(1, 100).default(20).describe('1 to 100');
export const afterParam = z.string().min(1).max(256).optional().describe('The id of the last item of the previous page');

/**
 * Query strings as OpenAI's SDKs write them: objects as `name[key]=value` (metadata filters) and
 * arrays as `name[]=value` (include). Folds them into `name: {key: value}` and `name: [value]`
 * for the schema to check; a key given twice is a list of values, which a map refuses.
 */
export function foldQuery(raw: unknown): unknown {
  if (!raw || typeof raw !== 'object') return raw;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw as Record<string, string | string[]>)) {
    const array = /^([^[\]]+)\[\]$/.exec(key);
    const member = /^([^[\]]+)\[([^[\]]*)\]$/.exec(key);
    if (array) {
      const name = array[1]!;
      const prior = out[name];
      out[name] = [...(Array.isArray(prior) ? prior : prior === undefined ? [] : [prior]), ...(Array.isArray(value) ? value : [value])];
    } else if (member) {
      const map = out[member[1]!];
      const into = map && typeof map === 'object' && !Array.isArray(map) ? (map as Record<string, unknown>) : {};
      into[member[2]!] = value;
      out[member[1]!] = into;
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** A page of items in OpenAI's list shape. */
export function listJson<T extends { id: string }>(data: T[], hasMore: boolean) {
  return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore };
}

/** The list shape, for the API reference. */
export const listSchema = (item: z.ZodType) =>
  z.object({
    object: z.literal('list'),
    data: z.array(item),
    first_id: z.string().nullable(),
    last_id: z.string().nullable().describe("The cursor: pass it as `after` for the next page"),
    has_more: z.boolean(),
  });

/** `{id, object: "<kind>.deleted", deleted: true}`, OpenAI's answer to a delete. */
export const deletedJson = <K extends string>(id: string, object: K) => ({ id, object, deleted: true as const });
export const deletedSchema = (object: string) => z.object({ id: z.string(), object: z.literal(object), deleted: z.literal(true) });
